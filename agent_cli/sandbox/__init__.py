"""Sandboxes run code actions in a persistent interpreter. The agent loop only sees this interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Observation:
    """What one action produced, as the kernel reported it (already trimmed inside the sandbox)."""

    stdout: str = ""
    stderr: str = ""
    value: str | None = None  # repr of a final expression, as a REPL would echo it
    error: str | None = None  # traceback trimmed to the action's own frames
    timed_out: bool = False
    restarted: bool = False  # the interpreter was replaced: variables are gone, files persist
    restart_reason: str | None = None
    finished: str | None = None  # summary passed to finish(), when the action called it
    truncated_chars: int = 0  # characters cut from stdout/stderr/value to respect the output cap
    duration_s: float = 0.0


class Sandbox(Protocol):
    """A persistent interpreter whose working directory is the repository root."""

    def start(self) -> None: ...

    def run(self, code: str, timeout: float) -> Observation: ...

    def interrupt(self) -> None: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...
