"""A tiny calculator with one bug for the quickstart."""


def add(a, b):
    return a + b


def subtract(a, b):
    return a + b
