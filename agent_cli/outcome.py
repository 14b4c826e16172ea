"""How a turn or a run ends, in one vocabulary every front end shares.

A `Status` says how the agent stopped (the `status` of the `result` and `end` events); each has its
exit code (README "Exit codes") and, with whether anything changed, its `Category`: what the user
got. `run`, `chat`, `batch`, `ci` and the terminal view map categories to their own words and
colours; none of them reads a raw status string.

    finished            -> succeeded (something changed) or no_change       exit 0
    finished_untested   -> untested (no_change when nothing changed)        exit 0
    tests_failed        -> tests_failed                                     exit 1
    limit, stuck, no_action -> limit_reached                                exit 3
    model_stopped       -> agent_error                                      exit 3
    model_error         -> agent_error                                      exit 2
    error (Docker, setup, git, a setting) -> infra_error                    exit 2
    interrupted         -> interrupted                                      exit 130

`TestOutcome` is the other half of an outcome: the last measured test run, whatever ended the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agent_cli.cancel import Cancelled
from agent_cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_LIMIT,
    EXIT_OK,
    EXIT_TESTS_FAIL,
    EXIT_USAGE,
    LimitReached,
    ModelError,
    ModelStopped,
)
from agent_cli.model import Usage

if TYPE_CHECKING:
    from agent_cli.agent import Step


class Category(StrEnum):
    """What the user got from a turn or a run (batch statuses, CI conclusions, colours)."""

    SUCCEEDED = "succeeded"
    NO_CHANGE = "no_change"
    UNTESTED = "untested"
    TESTS_FAILED = "tests_failed"
    LIMIT_REACHED = "limit_reached"
    AGENT_ERROR = "agent_error"
    INFRA_ERROR = "infra_error"
    INTERRUPTED = "interrupted"

    @property
    def good(self) -> bool:
        """The work is done (or there was none to do)."""
        return self in (Category.SUCCEEDED, Category.NO_CHANGE)


class Status(StrEnum):
    """How the agent stopped working on a task or message."""

    FINISHED = "finished"
    FINISHED_UNTESTED = "finished_untested"
    TESTS_FAILED = "tests_failed"
    LIMIT = "limit"
    STUCK = "stuck"
    NO_ACTION = "no_action"
    MODEL_STOPPED = "model_stopped"
    MODEL_ERROR = "model_error"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    @property
    def finished(self) -> bool:
        """The model called finish() and it was accepted."""
        return self in (Status.FINISHED, Status.FINISHED_UNTESTED)

    def category(self, changed: bool) -> Category:
        if self.finished and not changed:
            return Category.NO_CHANGE
        return _CATEGORIES[self]

    @classmethod
    def of_error(cls, error: BaseException) -> Status:
        """The status of a turn or a session that an exception ended."""
        if isinstance(error, KeyboardInterrupt | Cancelled):
            return cls.INTERRUPTED
        if isinstance(error, LimitReached):
            return cls.LIMIT
        if isinstance(error, ModelStopped):
            return cls.MODEL_STOPPED
        if isinstance(error, ModelError):
            return cls.MODEL_ERROR
        return cls.ERROR


_EXIT_CODES = {
    Status.FINISHED: EXIT_OK,
    Status.FINISHED_UNTESTED: EXIT_OK,
    Status.TESTS_FAILED: EXIT_TESTS_FAIL,
    Status.LIMIT: EXIT_LIMIT,
    Status.STUCK: EXIT_LIMIT,
    Status.NO_ACTION: EXIT_LIMIT,
    Status.MODEL_STOPPED: EXIT_LIMIT,
    Status.MODEL_ERROR: EXIT_USAGE,
    Status.ERROR: EXIT_USAGE,
    Status.INTERRUPTED: EXIT_INTERRUPTED,
}
_CATEGORIES = {
    Status.FINISHED: Category.SUCCEEDED,
    Status.FINISHED_UNTESTED: Category.UNTESTED,
    Status.TESTS_FAILED: Category.TESTS_FAILED,
    Status.LIMIT: Category.LIMIT_REACHED,
    Status.STUCK: Category.LIMIT_REACHED,
    Status.NO_ACTION: Category.LIMIT_REACHED,
    Status.MODEL_STOPPED: Category.AGENT_ERROR,
    Status.MODEL_ERROR: Category.AGENT_ERROR,
    Status.ERROR: Category.INFRA_ERROR,
    Status.INTERRUPTED: Category.INTERRUPTED,
}


@dataclass
class TurnResult:
    """How a task (or a message of a conversation) ended."""

    status: Status
    message: str
    summary: str | None = None
    steps: list[Step] = field(default_factory=list)  # this turn's
    usage: Usage = field(default_factory=Usage)  # the whole conversation's
    wall_s: float = 0.0
    changed: bool = False  # some step of this turn changed files

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @property
    def category(self) -> Category:
        return self.status.category(self.changed)


COUNT_ORDER = ("passed", "failed", "error", "skipped")


@dataclass(frozen=True)
class TestOutcome:
    """The tests as the run leaves them: the last measured run (counts against the baseline, and
    the step after which it ran), whatever ended the run. `state`:

    passed     the last measured run had no blocking failure
    failed     it had (regressions, new failing tests, a command that broke)
    unchecked  no test run finished after the baseline
    untested   the tests could not check the work (no command, or they could not run before the run)
    off        --no-tests: no baseline, no gate (a run the model asked for is still reported)
    none       no test command, and no gate either
    """

    __test__ = False  # not a pytest test class

    state: str
    text: str  # the outcome in words, as the summary, the batch report and the CI comment show it
    step: int | None = None  # the step after which the last measured run ran (None: none did)
    trigger: str | None = None  # what ran it: run_tests | finish
    counts: dict[str, int] = field(default_factory=dict)  # that run's: passed, failed, error, skipped
    regressions: int = 0  # tests that passed before the run and fail in that run
    new_failures: int = 0  # failing tests the baseline did not have
    preexisting: int = 0  # failing tests that failed before the run too
    baseline: dict[str, int] | None = None  # the counts before the run, when it gave any

    @property
    def measured(self) -> bool:
        return self.step is not None

    @property
    def brief(self) -> str:
        """A table cell: the state, and the last measured run's counts and when it ran."""
        if not self.measured:
            return self.state
        order = [*COUNT_ORDER, *sorted(set(self.counts) - set(COUNT_ORDER))]
        counts = ", ".join(f"{self.counts[o]} {o}" for o in order if self.counts.get(o)) or "no results"
        blocking = [
            f"{n} {word}{'s' if n != 1 else ''}"
            for n, word in ((self.regressions, "regression"), (self.new_failures, "new failure"))
            if n
        ]
        return f"{self.state}: {'; '.join([counts, *blocking])} (step {self.step})"

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TestOutcome | None:
        if not isinstance(data, dict):
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})
