"""Noticing that the agent goes round in circles (the loop patterns Agent-R and OpenHands describe):
the same action with the same result several times in a row, the same error over and over whatever
the action, or two actions alternating. The model is told first and asked to change approach; if it
goes on regardless, the turn stops as stuck.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SAME_ACTION = 3  # the same action with the same observation, this many times in a row
SAME_ERROR = 4  # the same error, this many times in a row
ALTERNATING = 3  # two actions taking turns, this many times each
GRACE_STEPS = 2  # steps after the warning before a pattern still there stops the turn

_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|seconds?)\b")
_ACTION_NAME = re.compile(r"<action-\d+>")  # tracebacks name each action's code by its number
_STEPS_LEFT = re.compile(r"\[\d+ steps? left[^\]]*\]")


@dataclass(frozen=True)
class StuckVerdict:
    pattern: str  # what the agent repeats, in words
    stop: bool  # False: warn the model; True: end the turn


@dataclass
class StuckDetector:
    steps: list[tuple[str, str, str | None]] = field(default_factory=list)  # (action, result, error)
    warned_at: int | None = None  # len(steps) when the model was warned

    def reset(self) -> None:
        self.steps.clear()
        self.warned_at = None

    def observe(self, code: str, observation: str, error: str | None) -> StuckVerdict | None:
        self.steps.append((_normal(code), _normal(observation), _error_line(error)))
        pattern = self._pattern()
        if pattern is None:
            self.warned_at = None  # the model changed approach: a later loop is warned about again
            return None
        if self.warned_at is None:
            self.warned_at = len(self.steps)
            return StuckVerdict(pattern, stop=False)
        if len(self.steps) - self.warned_at >= GRACE_STEPS:
            return StuckVerdict(pattern, stop=True)
        return None

    def _pattern(self) -> str | None:
        steps = self.steps
        if len(steps) >= SAME_ACTION and len(set(steps[-SAME_ACTION:])) == 1:
            return f"the same action with the same result {SAME_ACTION} times in a row"
        errors = [error for _, _, error in steps[-SAME_ERROR:]]
        if len(errors) == SAME_ERROR and errors[0] is not None and len(set(errors)) == 1:
            return f"the same error {SAME_ERROR} times in a row ({errors[0]})"
        window = steps[-2 * ALTERNATING :]
        alternating = all(step == window[i % 2] for i, step in enumerate(window))
        if len(window) == 2 * ALTERNATING and window[0] != window[1] and alternating:
            return f"two actions alternating, each {ALTERNATING} times, with the same results"
        return None


def _normal(text: str) -> str:
    """What makes two actions or results the same: whitespace, durations and step counters aside."""
    text = _ACTION_NAME.sub("<action>", _STEPS_LEFT.sub("", _DURATION.sub("", text)))
    return " ".join(text.split())


def _error_line(error: str | None) -> str | None:
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return _ACTION_NAME.sub("<action>", lines[-1]) if lines else None
