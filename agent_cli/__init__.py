"""actsmith: a command-line coding agent (CodeAct actions in a Docker sandbox)."""

__version__ = "0.1.0"
