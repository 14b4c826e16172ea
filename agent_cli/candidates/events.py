"""The events of a candidates run, on the run's stream beside its `end`: what starts, the designed
tests, each attempt's end. Every event of an attempt's own session reaches the run's stream too,
wrapped in `Tagged`: it is recorded (trajectory, `--json`) as the session's event with a `candidate`
field, the attempt's number or "designer"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from agent_cli.events import Event, EventSink, EventStream

DESIGNER = "designer"


@dataclass(frozen=True)
class Tagged(Event):
    name: ClassVar[str] = "candidate_event"
    candidate: int | str  # the attempt's number, or "designer"
    event: Event

    def record(self) -> dict[str, Any]:
        return {**self.event.record(), "candidate": self.candidate}


@dataclass(frozen=True)
class CandidatesStarted(Event):
    name: ClassVar[str] = "candidates_start"
    run_id: str
    base: str  # the commit every attempt starts from (before the designed tests)
    branch: str | None  # --worktree: the run's branch, which gets the winner
    jobs: int  # attempts at once
    candidates: list[dict[str, Any]]  # number, model, temperature
    designer: str | None  # the test designer's model, with --design-tests


@dataclass(frozen=True)
class TestsDesigned(Event):
    """The test designer is done: the test files it wrote, now part of every attempt's start."""

    __test__ = False
    name: ClassVar[str] = "designed_tests"
    status: str
    message: str
    files: list[str]
    commit: str | None  # the base with the designed tests, where the attempts start


@dataclass(frozen=True)
class CandidateEnded(Event):
    name: ClassVar[str] = "candidate_end"
    candidate: Any  # selection.Candidate, before the choice

    def record(self) -> dict[str, Any]:
        """The candidate's fields, its number as `candidate` like every event of that attempt."""
        record = super().record()
        details = record.pop("candidate")
        return {**record, "candidate": details.pop("number"), **details}


@dataclass
class Tagger:
    """Subscribed to an attempt's session: passes its events on to the run's stream, tagged."""

    who: int | str
    stream: EventStream

    def emit(self, event: Event) -> None:
        self.stream.emit(Tagged(self.who, event))


@dataclass
class Untagged:
    """A sink made for one session's events (a batch's progress watcher) fed from a candidates run:
    it gets each attempt's events as they are."""

    sink: EventSink

    def emit(self, event: Event) -> None:
        self.sink.emit(event.event if isinstance(event, Tagged) else event)


@dataclass(frozen=True)
class CandidatesChosen(Event):
    """Every attempt has ended: which one is applied (None: none), and the designed tests' standing."""

    name: ClassVar[str] = "candidates_chosen"
    winner: int | None
    why: str
    designed_tests: list[str]
    suspect: dict[str, str]  # designed test -> why it counted for or against no one
    kept_in: str | None  # the run folder's copy of the designed tests
