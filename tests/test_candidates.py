"""Choosing among candidates, with no Docker: the ranking the issue orders (gate > designed tests >
agreement > lines > cost > number), suspect designed tests, and the settings that ask for candidates."""

from __future__ import annotations

import pytest

from agent_cli.candidates.render import markdown_table
from agent_cli.candidates.runner import models_of, plan_candidates
from agent_cli.candidates.selection import Candidate, choose, output_of
from agent_cli.errors import UsageError
from agent_cli.settings import load_settings

DESIGNED = "tests/test_designed.py"
HIGH, INSIDE, EDGE = (f"{DESIGNED}::test_{name}" for name in ("high", "inside", "edge"))


def attempt(number: int, category: str = "succeeded", **outputs: str) -> Candidate:
    """A finished attempt; `outputs` maps high/inside/edge to its output on that designed test."""
    candidate = Candidate(number, f"model-{number}", None, category=category, lines_changed=2, cost=0.01)
    candidate.designed = {f"{DESIGNED}::test_{name}": output for name, output in outputs.items()}
    candidate.judged = bool(outputs)
    return candidate


ALL_PASS = {"high": "passed", "inside": "passed", "edge": "passed"}


def test_the_gate_comes_before_the_designed_tests():
    regression = attempt(1, "tests_failed", **ALL_PASS)
    clean = attempt(2, high="failed: assert 50 == 10", inside="passed", edge="passed")
    choice = choose([regression, clean], [DESIGNED])
    assert choice.winner is clean
    assert clean.why == "the only one with a change the gate accepted"
    assert regression.why.startswith("tests_failed")


def test_most_designed_tests_passed_wins_among_accepted_ones():
    wrong = attempt(1, high="failed: assert 50 == 10", inside="passed", edge="passed")
    right = attempt(2, **ALL_PASS)
    choice = choose([wrong, right], [DESIGNED])
    assert choice.winner is right
    assert (right.designed_passed, right.designed_total, wrong.designed_passed) == (3, 3, 2)
    assert right.why == "most designed tests passed (3 of 3; #1: 2)"
    assert wrong.why == "fewer designed tests passed (2 of 3; #2: 3)"


def test_agreement_with_the_majority_breaks_a_tie_on_designed_tests():
    # Each passes two of three designed tests; two of them fail the same one, with the same value.
    odd = attempt(1, high="passed", inside="failed: assert 4 == 5", edge="passed")
    twin_a = attempt(2, high="failed: assert 50 == 10", inside="passed", edge="passed")
    twin_b = attempt(3, high="failed: assert 50 == 10", inside="passed", edge="passed")
    twin_a.lines_changed = twin_b.lines_changed = 9  # more lines: agreement must come before them
    choice = choose([odd, twin_a, twin_b], [DESIGNED])
    assert choice.winner is twin_a
    assert (odd.agreement, twin_a.agreement) == (1, 2)
    assert "agree with the most candidates" in twin_a.why


def test_then_fewest_lines_then_cheapest_then_the_lower_number():
    big, small = attempt(1), attempt(2)
    big.lines_changed = 30
    assert choose([big, small], []).winner is small
    dear, cheap = attempt(1), attempt(2)
    dear.cost = 0.5
    assert choose([dear, cheap], []).winner is cheap
    unknown, known = attempt(1), attempt(2)
    unknown.cost = None  # a model with no price is taken as the dearest
    assert choose([unknown, known], []).winner is known
    first, second = attempt(1), attempt(2)
    choice = choose([second, first], [])
    assert choice.winner is first and first.why == "tied with #2; the lower number wins"


def test_a_candidate_that_changed_nothing_is_never_applied():
    idle = attempt(1, "no_change")
    failed = attempt(2, "tests_failed")
    choice = choose([idle, failed], [])
    assert choice.winner is None and choice.closest is idle


def test_when_every_candidate_fails_none_is_applied_and_the_closest_is_named():
    limit = attempt(1, "limit_reached")
    tests_failed = attempt(2, "tests_failed", high="passed", inside="passed", edge="failed: x")
    choice = choose([limit, tests_failed], [DESIGNED])
    assert choice.winner is None
    assert choice.closest is tests_failed and "closest" in tests_failed.why


def test_a_designed_test_no_candidate_passes_is_suspect_and_counts_for_no_one():
    a = attempt(1, high="failed: assert 1 == 2", inside="passed", edge="passed")
    b = attempt(2, high="failed: assert 1 == 2", inside="failed: boom", edge="passed")
    choice = choose([a, b], [DESIGNED])
    assert choice.suspect == {HIGH: "no candidate passed it"}
    assert (a.designed_passed, a.designed_total) == (2, 2)
    assert choice.winner is a


def test_a_designed_file_that_fails_to_collect_or_gives_nothing_is_suspect():
    broken = attempt(1)
    broken.designed, broken.judged = {DESIGNED: "error: collecting this module failed: SyntaxError"}, True
    other = attempt(2)
    other.designed, other.judged = {DESIGNED: "error: collecting this module failed: SyntaxError"}, True
    choice = choose([broken, other], [DESIGNED, "tests/test_silent.py"])
    assert choice.suspect == {
        DESIGNED: "it failed to collect",
        "tests/test_silent.py": "it gave no results",
    }
    assert broken.designed_total == 0


def test_a_failure_output_keeps_the_actual_value_but_not_addresses():
    assert output_of("passed", "") == "passed"
    assert output_of("failed", "assert 7 == 10\nmore") == "failed: assert 7 == 10"
    assert output_of("failed", "<Obj at 0x7f3a2b> != 1") == output_of("failed", "<Obj at 0x55e1c0> != 1")


def test_models_and_temperatures_are_cycled_over_the_candidates():
    settings = load_settings(
        None,
        {
            "candidates": 3,
            "candidate_models": ["replay:a.yaml", "replay:b.yaml"],
            "candidate_temperatures": ["0.2"],
            "design_tests": True,
            "test_designer_model": "replay:d.yaml",
        },
        environ={},
    )
    assert [(p.model, p.temperature) for p in plan_candidates(settings)] == [
        ("replay:a.yaml", 0.2),
        ("replay:b.yaml", 0.2),
        ("replay:a.yaml", 0.2),
    ]
    assert models_of(settings) == ["replay:a.yaml", "replay:b.yaml", "replay:d.yaml"]  # no --model needed


def test_temperatures_are_checked_and_read_from_the_environment():
    settings = load_settings(None, {}, environ={"ACTSMITH_CANDIDATE_TEMPERATURES": "0, 0.5, 1.5"})
    assert settings.candidate_temperatures == (0.0, 0.5, 1.5)
    with pytest.raises(UsageError, match=r"candidate_temperatures .* out of range"):
        load_settings(None, {"candidate_temperatures": ["3"]}, environ={})
    with pytest.raises(UsageError, match="candidates = 0 is out of range"):
        load_settings(None, {"candidates": 0}, environ={})


def test_the_markdown_table_marks_the_one_applied_and_escapes_pipes():
    right, wrong = attempt(1, **ALL_PASS), attempt(2, high="failed: a | b", inside="passed", edge="passed")
    choose([right, wrong], [DESIGNED])
    wrong.why = "x | y"
    table = markdown_table([right, wrong])
    assert "| 1 | `model-1` | succeeded | none | 3 of 3 | 2 | $0.0100 | **applied**: most designed" in table
    assert "x \\| y" in table
