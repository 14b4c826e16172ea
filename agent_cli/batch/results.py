"""A task's result (DIR/tasks/<id>/result.json), the batch statuses, and the batch's exit code.

A batch status is the session's category (agent_cli/outcome.py: succeeded, no_change, untested,
tests_failed, limit_reached, agent_error, infra_error), or `not_started`: the task was interrupted,
or the batch's cost cap refused it before its first reply. An interrupted task is recorded as
`not_started` with `interrupted: true` (and the steps and cost it used): its work is not a result,
so a resume runs it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from agent_cli.errors import EXIT_INTERRUPTED, EXIT_LIMIT, EXIT_OK, EXIT_TESTS_FAIL
from agent_cli.model import Usage
from agent_cli.outcome import Category, TestOutcome

PULL_FILE = "pull.json"  # DIR/tasks/<id>/pull.json: the task's pull request, as last seen
NOT_STARTED = "not_started"
INFRA_ERROR = Category.INFRA_ERROR.value
STATUSES = (*(c.value for c in Category if c is not Category.INTERRUPTED), NOT_STARTED)
GOOD = frozenset(c.value for c in Category if c.good)
# What `--retry-failed` runs again: every final result that is not good.
FAILED = frozenset(STATUSES) - GOOD - {NOT_STARTED}


@dataclass
class TaskResult:
    """result.json: the contract's fields first, then what the report shows."""

    id: str
    status: str
    exit_code: int  # what `actsmith run` would have exited with (3: the cost cap, 130: interrupted)
    steps: int
    cost: float | None
    branch: str
    files_changed: list[str]
    repo: str = ""  # the repository the branch is in (a clone in DIR/repos for a URL)
    task: str = ""
    message: str = ""
    summary: str | None = None
    tests: str = ""  # the last measured test run against the baseline, in words
    tests_state: str = "none"  # passed | failed | unchecked | untested | off | none
    test_outcome: TestOutcome | None = None  # that run in figures: counts, regressions, its step
    base: str = ""  # the commit the branch started from
    commit: str | None = None  # the branch's tip after the task
    attempt: int = 1
    interrupted: bool = False
    wall_s: float = 0.0
    node: str = ""  # where it ran: this machine, or a Ray node
    session_status: str = ""
    prompt_tokens: int = 0  # input tokens, those read from and written to the prompt cache included
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    pr_url: str | None = None  # the pull request `batch publish` opened or updated (its html_url)
    pr_number: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # with `candidates`: every attempt

    @property
    def usage(self) -> Usage:
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.cost,
            self.cache_read_tokens,
            self.cache_write_tokens,
        )

    @property
    def final(self) -> bool:
        return self.status != NOT_STARTED

    @property
    def tests_brief(self) -> str:
        """The tests cell of the batch's tables."""
        return self.test_outcome.brief if self.test_outcome else self.tests_state

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskResult:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["test_outcome"] = TestOutcome.from_json(values.get("test_outcome"))
        return cls(**values)


def batch_status(category: Category) -> str:
    """A session's category as a batch status: an interrupted task has no result yet."""
    return NOT_STARTED if category is Category.INTERRUPTED else category.value


@dataclass
class Tally:
    """How a batch stands: counts per status, cost, and why it stopped early, if it did."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    cost: float = 0.0
    usage: Usage = field(default_factory=Usage)  # tokens (its cost is None once a task's was unknown)
    capped: bool = False  # max_cost_total stopped work
    interrupted: bool = False

    def add(self, result: TaskResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        self.cost += result.cost or 0.0
        self.usage.add(result.usage)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 3 the cost cap stopped the batch, 1 some task did not succeed, else 0."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.capped:
            return EXIT_LIMIT
        bad = sum(count for status, count in self.counts.items() if status not in GOOD)
        return EXIT_TESTS_FAIL if bad else EXIT_OK


def write_result(folder: Path, result: TaskResult, patch: str) -> None:
    """result.json and patch.diff, each replaced whole (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    _replace(folder / "patch.diff", patch)
    _replace(folder / "result.json", json.dumps(result.to_json(), indent=2) + "\n")


@dataclass
class PullSeen:
    """A task's pull request as last seen: what `batch status` and the report show."""

    number: int
    url: str  # its html_url
    repository: str  # OWNER/NAME
    state: str = ""  # open | draft | merged | closed ("" before GitHub was asked)
    checks: str = ""  # passing (3/3 passed), failing (...), pending (...), none
    review: str = ""  # approved | changes_requested | none
    error: str = ""  # why the last question to GitHub failed
    checked: float | None = None  # when GitHub last answered

    @property
    def label(self) -> str:
        return f"#{self.number}"


def read_pull(folder: Path) -> PullSeen | None:
    try:
        data = json.loads((folder / PULL_FILE).read_text(encoding="utf-8"))
        return PullSeen(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_pull(folder: Path, pull: PullSeen) -> None:
    partial = folder / (PULL_FILE + ".partial")
    partial.write_text(json.dumps(asdict(pull), indent=2) + "\n", encoding="utf-8")
    partial.replace(folder / PULL_FILE)


def rewrite_result(folder: Path, result: TaskResult) -> None:
    """result.json again (its patch stays): what `batch publish` learnt about the task."""
    _replace(folder / "result.json", json.dumps(result.to_json(), indent=2) + "\n")


def read_result(folder: Path) -> TaskResult | None:
    try:
        return TaskResult.from_json(json.loads((folder / "result.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
