"""The records detection produces: a plan, the part each ecosystem adds, and why each file counts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Choice:
    """A file (or extra, group, test environment) detection looked at: taken or left out, and why."""

    name: str
    taken: bool
    why: str

    def text(self) -> str:
        return f"{self.name} ({self.why})"

    def record(self) -> dict[str, object]:
        return {"name": self.name, "taken": self.taken, "why": self.why}


@dataclass(frozen=True)
class Part:
    """What one ecosystem adds to a plan; `narrower` are its smaller alternatives, tried in order
    when the plan fails (each: its commands and what it leaves out)."""

    commands: tuple[str, ...]
    reason: str
    layers: tuple[str, ...] = ()
    choices: tuple[Choice, ...] = ()
    narrower: tuple[tuple[tuple[str, ...], str], ...] = ()


@dataclass(frozen=True)
class SetupPlan:
    """What prepares the environment, and why."""

    commands: tuple[str, ...]
    reason: str
    manifests: tuple[str, ...] = ()  # repository files whose contents key the environment image
    layers: tuple[str, ...] = ()  # folders setup fills inside the repository (node_modules)
    detected: bool = False  # False: configured (a failure is the user's to fix) or none
    choices: tuple[Choice, ...] = ()
    fallbacks: tuple[SetupPlan, ...] = field(default=(), compare=False)  # narrower plans, in order

    @property
    def empty(self) -> bool:
        return not self.commands

    def narrowed(self, commands: tuple[str, ...], what: str) -> SetupPlan:
        return replace(self, commands=commands, reason=f"{self.reason}; fallback: {what}", fallbacks=())
