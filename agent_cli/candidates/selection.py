"""Choosing among attempts: accepted by the gate > most designed tests passed > agreement with the
majority on the designed tests > fewest lines changed > cheapest > the lower number.

Agreement is CodeT's and CODESIM's idea: attempts that give the same outputs on the same tests are
more likely right than one that stands alone. An attempt's output on a designed test is its outcome
and, when it fails, the message's first line (the actual value). Designed tests that fail to collect,
or that no attempt passes, are suspect: reported, and counted for or against no one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from agent_cli.candidates.outcome import APPLICABLE, TIERS

PASSED = "passed"
SKIPPED = "skipped"
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")  # object addresses differ from run to run, not the output


@dataclass
class Candidate:
    """One attempt: how it ended and what it did; `choose` fills in how it ranked."""

    number: int  # from 1
    model: str
    temperature: float | None
    status: str = "not_started"  # the session's status
    category: str = "not_started"  # see outcome.py
    exit_code: int = 0
    message: str = ""
    summary: str | None = None
    tests: str = "none"  # the gate's last word: passed | failed | unchecked | untested | off | none
    tests_text: str = ""
    designed: dict[str, str] = field(default_factory=dict)  # designed test id -> its output
    judged: bool = False  # the designed tests ran on its finished work
    files_changed: list[str] = field(default_factory=list)
    lines_changed: int = 0
    cost: float | None = 0.0
    steps: int = 0
    commit: str | None = None  # its work, kept under `ref`
    ref: str | None = None
    trajectory: str | None = None
    designed_passed: int = 0
    designed_total: int = 0  # designed tests not suspect
    agreement: int = 0  # candidates (itself included) whose outputs on the designed tests match its own
    won: bool = False
    why: str = ""

    @property
    def tier(self) -> int:
        return TIERS.get(self.category, 0)


@dataclass(frozen=True)
class Choice:
    winner: Candidate | None  # applied; None when no attempt has a change the gate accepted
    closest: Candidate | None  # the best ranked, applied or not
    suspect: dict[str, str]  # designed test (or file) -> why it is not trusted


def output_of(outcome: str, message: str) -> str:
    """A test's output as agreement compares it: the outcome, and for a failure its first line."""
    if outcome in (PASSED, SKIPPED):
        return outcome
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{outcome}: {' '.join(_HEX.sub('0x?', first).split())}"


def choose(candidates: list[Candidate], designed_files: list[str]) -> Choice:
    if not candidates:
        return Choice(None, None, {})
    suspect = suspect_tests(candidates, designed_files)
    _score(candidates, suspect)
    order = sorted(candidates, key=_rank, reverse=True)
    best = order[0]
    winner = best if best.tier >= APPLICABLE else None
    if winner is not None:
        winner.won = True
        winner.why = _why_won(winner, order[1:], candidates)
    else:
        best.why = "the closest; none had a change the gate accepted"
    for candidate in order[1:]:
        candidate.why = _behind(candidate, best)
    return Choice(winner, best, suspect)


def suspect_tests(candidates: list[Candidate], designed_files: list[str]) -> dict[str, str]:
    judged = [c for c in candidates if c.judged]
    if not judged:
        return {}
    suspect: dict[str, str] = {}
    tests = sorted({test for c in judged for test in c.designed})
    for test in tests:
        outputs = [c.designed.get(test) for c in judged]
        if test in designed_files and any(o is not None and o not in (PASSED, SKIPPED) for o in outputs):
            suspect[test] = "it failed to collect"  # pytest names a module it could not import by its path
        elif len(judged) > 1 and PASSED not in outputs:
            suspect[test] = "no candidate passed it"
    for path in designed_files:
        if not any(test == path or test.startswith(f"{path}::") for test in tests):
            suspect[path] = "it gave no results"
    return suspect


def _score(candidates: list[Candidate], suspect: dict[str, str]) -> None:
    trusted = sorted({t for c in candidates if c.judged for t in c.designed} - set(suspect))
    outputs = {c.number: tuple(c.designed.get(t, "missing") for t in trusted) for c in candidates if c.judged}
    groups = Counter(outputs.values())
    for candidate in candidates:
        candidate.designed_total = len(trusted)
        candidate.designed_passed = sum(candidate.designed.get(t) == PASSED for t in trusted)
        candidate.agreement = groups[outputs[candidate.number]] if candidate.judged else 0


def _rank(candidate: Candidate) -> tuple[float, ...]:
    cost = math.inf if candidate.cost is None else candidate.cost
    return (
        candidate.tier,
        candidate.designed_passed,
        candidate.agreement,
        -candidate.lines_changed,
        -cost,
        -candidate.number,
    )


TIE = 5  # the last criterion of `_rank`: only the number tells them apart


def _first_difference(a: Candidate, b: Candidate) -> int:
    """The criterion (an index into `_rank`) on which `a` and `b` first differ."""
    return next(i for i, (x, y) in enumerate(zip(_rank(a), _rank(b), strict=True)) if x != y)


def _why_won(winner: Candidate, others: list[Candidate], everyone: list[Candidate]) -> str:
    """Against the first candidate it beats on more than its number; ties named before."""
    tied = [c for c in others if _first_difference(winner, c) == TIE]
    beaten = next((c for c in others if c not in tied), None)
    if not tied:
        return _ahead(winner, beaten, everyone)
    names = ", ".join(f"#{c.number}" for c in tied)
    text = f"tied with {names}; the lower number wins"
    return text if beaten is None else f"{text}; ahead of the others: {_ahead(winner, beaten, everyone)}"


def _ahead(winner: Candidate, runner_up: Candidate | None, everyone: list[Candidate]) -> str:
    if runner_up is None:
        return "the only candidate"
    b, n = runner_up, f"#{runner_up.number}"
    criterion = _first_difference(winner, b)
    if criterion == 0:
        if sum(c.tier >= APPLICABLE for c in everyone) == 1:
            return "the only one with a change the gate accepted"
        return f"{winner.category}, where {n} is {b.category}"
    return [
        "",
        f"most designed tests passed ({winner.designed_passed} of {winner.designed_total}; {n}: {b.designed_passed})",
        f"its outputs on the designed tests agree with the most candidates ({winner.agreement}; {n}: {b.agreement})",
        f"fewest lines changed ({winner.lines_changed}; {n}: {b.lines_changed})",
        f"cheapest ({_cost(winner.cost)}; {n}: {_cost(b.cost)})",
        f"tied with {n}; the lower number wins",
    ][criterion]


def _behind(candidate: Candidate, best: Candidate) -> str:
    n = f"#{best.number}"
    criterion = _first_difference(best, candidate)
    return [
        f"{candidate.category}: {candidate.message}" if candidate.message else candidate.category,
        f"fewer designed tests passed ({candidate.designed_passed} of {candidate.designed_total}; {n}: {best.designed_passed})",
        f"its outputs on the designed tests agree with fewer candidates ({candidate.agreement}; {n}: {best.agreement})",
        f"more lines changed ({candidate.lines_changed}; {n}: {best.lines_changed})",
        f"costlier ({_cost(candidate.cost)}; {n}: {_cost(best.cost)})",
        f"tied with {n}, which comes first",
    ][criterion]


def _cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.4f}"
