"""The batch's own events, on the driver's event stream: the progress table, `--json` and the plain
lines all consume them. A task's progress is derived from its session's events by `SessionWatcher`,
wherever the session runs (in a thread here, or on a Ray worker that sends it back)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from agent_cli.events import (
    ActionStarted,
    Event,
    ModelCalled,
    ModelRetried,
    SetupProgress,
    Started,
    StepStarted,
    TestsRan,
)

if TYPE_CHECKING:
    from agent_cli.batch.results import TaskResult
    from agent_cli.model import Usage

MAX_ACTION_CHARS = 80


@dataclass(frozen=True)
class BatchStarted(Event):
    name: ClassVar[str] = "batch_start"
    batch: str
    out: str
    backend: str
    jobs: int
    tasks: list[str]  # every task of the spec, in order
    pending: list[str]  # those that run now (the rest have a final result)
    max_cost_total: float | None
    spent: float  # by earlier runs of this batch


@dataclass(frozen=True)
class TaskStarted(Event):
    name: ClassVar[str] = "task_start"
    id: str
    repo: str
    branch: str
    attempt: int
    node: str


@dataclass(frozen=True)
class TaskProgress(Event):
    """A running task's latest step, what it is doing and what it cost so far."""

    name: ClassVar[str] = "task_progress"
    id: str
    step: int
    action: str
    cost: float


@dataclass(frozen=True)
class TaskFinished(Event):
    name: ClassVar[str] = "task_end"
    result: TaskResult  # as in result.json


@dataclass(frozen=True)
class BatchEnded(Event):
    name: ClassVar[str] = "batch_end"
    exit_code: int
    counts: dict[str, int]
    cost: float
    wall_s: float
    report: str
    reason: str = ""  # why it stopped early: the cost cap, an interrupt
    usage: Usage | None = None  # the tokens of every task's model calls, cache reads and writes included


class SessionWatcher:
    """Subscribed to one session's stream: turns its steps, actions, calls and test runs into
    `TaskProgress` for `publish` (the batch stream, or a Ray actor)."""

    def __init__(self, task_id: str, publish: Callable[[TaskProgress], None]) -> None:
        self.task_id = task_id
        self.publish = publish
        self.step = 0
        self.action = "starting"
        self.cost = 0.0

    def emit(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self.step, self.action = event.step, "asking the model"
        elif isinstance(event, ActionStarted):
            self.action = _first_line(event.code) or "(no code)"
        elif isinstance(event, ModelCalled):
            cost = event.usage.cost or 0.0
            if not cost:
                return  # nothing new to show: the step already said it was asking
            self.cost += cost
        elif isinstance(event, ModelRetried):
            self.action = f"model: retrying in {event.delay_s:g} s ({event.error})"
        elif isinstance(event, TestsRan):
            self.action = f"tests ({event.trigger}): exit {event.exit_code}"
        elif isinstance(event, SetupProgress):
            self.action = f"setup {event.step}/{event.of}: {event.command}"
        elif isinstance(event, Started):
            self.action = "sandbox ready"
        else:
            return
        self._send()

    def _send(self) -> None:
        self.publish(TaskProgress(self.task_id, self.step, self.action, round(self.cost, 6)))


def _first_line(code: str) -> str:
    lines = [line.strip() for line in code.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1:
        text += " …"
    return text if len(text) <= MAX_ACTION_CHARS else text[: MAX_ACTION_CHARS - 1] + "…"
