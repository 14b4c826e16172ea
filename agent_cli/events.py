"""The event stream: every step of a session as a typed record, sent to every consumer.

The trajectory file, the terminal view, `--json` output, the batch progress table and the GitHub
reporter all subscribe to the same stream, so what a person watches, what a script parses and what
is kept on disk never drift apart. `Event.record()` is the one serialisation all of them share.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from agent_cli.agent import AgentConfig
    from agent_cli.ignored import IgnoredChange
    from agent_cli.ledger import FileChange
    from agent_cli.model import Usage
    from agent_cli.outcome import Category, Status, TestOutcome
    from agent_cli.sandbox import Observation
    from agent_cli.settings import Settings


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"

    def record(self) -> dict[str, Any]:
        """The event as plain JSON-ready data: {"event": name, "time": ..., **fields}."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        return {"event": self.name, "time": round(time.time(), 3), **data}


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------- the events


@dataclass(frozen=True)
class Started(Event):
    """A session began: where, on which branch, from which checkpoint, with which settings."""

    name: ClassVar[str] = "start"
    run_id: str
    repo: str
    workdir: str
    branch: str | None
    checkpoint: str
    settings: Settings


@dataclass(frozen=True)
class SetupDone(Event):
    """The environment the sandbox runs in: its setup commands and why, the image, reused or built."""

    name: ClassVar[str] = "setup"
    commands: list[str]
    reason: str
    image: str
    reused: bool
    seconds: float
    log: str | None = None
    detected: bool = False  # False: configured, or none
    # Each file (extra, group) detection looked at: {"name", "taken", "why"}.
    choices: list[dict[str, object]] = field(default_factory=list)
    fallback: str | None = None  # what the narrower plan that was used leaves out
    # The plans that failed before it: {"command", "detail", "log", "remembered"}; with no image
    # ready at all the run is in the plain sandbox and its tests do not gate it.
    failed: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class SetupProgress(Event):
    """Setup at work: which command, and the latest line it printed."""

    name: ClassVar[str] = "setup_progress"
    step: int
    of: int
    command: str
    line: str


@dataclass(frozen=True)
class TestsPlanned(Event):
    name: ClassVar[str] = "tests"
    command: str | None
    runner: str | None
    reason: str
    gate: bool
    max_rounds: int
    timeout: float


@dataclass(frozen=True)
class TaskGiven(Event):
    """A task (or, in a conversation, the next message) for the agent."""

    name: ClassVar[str] = "task"
    task: str
    model: str
    config: AgentConfig
    turn: int = 1


@dataclass(frozen=True)
class StepStarted(Event):
    """The model is being asked for step `step`."""

    name: ClassVar[str] = "step"
    step: int


@dataclass(frozen=True)
class ModelCalled(Event):
    name: ClassVar[str] = "model_call"
    step: int
    messages: list[dict[str, str]]
    reply: str
    usage: Usage
    latency_s: float
    role: str = "coder"


@dataclass(frozen=True)
class ModelRetried(Event):
    """A model request failed in a way worth retrying; `delay_s` passes before the next attempt."""

    name: ClassVar[str] = "model_retry"
    model: str
    attempt: int
    error: str
    delay_s: float
    role: str = "coder"


@dataclass(frozen=True)
class Condensed(Event):
    """Older steps were replaced by a summary to keep the prompt under max_context_tokens."""

    name: ClassVar[str] = "condensed"
    step: int  # the step whose prompt needed the room
    first: int  # the steps the summary replaced
    last: int
    entries: int  # conversation entries replaced (replies, observations, earlier summaries)
    tokens_before: int
    tokens_after: int
    model: str  # the model that wrote the summary


@dataclass(frozen=True)
class Stuck(Event):
    """The agent repeats itself: told to change approach (`stopped` False), or stopped."""

    name: ClassVar[str] = "stuck"
    step: int
    pattern: str
    stopped: bool


@dataclass(frozen=True)
class ActionStarted(Event):
    name: ClassVar[str] = "action"
    step: int
    thought: str
    code: str


@dataclass(frozen=True)
class Observed(Event):
    """What the model is shown after step `step` (its action's observation, a test report...)."""

    name: ClassVar[str] = "observation"
    step: int
    code: str | None
    observation: Observation | None
    text: str
    ends: Status | None = None  # the turn ended here: finished (finish() accepted), tests_failed, stuck


@dataclass(frozen=True)
class Edited(Event):
    name: ClassVar[str] = "edits"
    step: int
    files: tuple[FileChange, ...]
    undone: tuple[str, ...] = ()  # protected paths the step changed, put back by the harness


@dataclass(frozen=True)
class TestsRan(Event):
    name: ClassVar[str] = "tests_run"
    step: int
    trigger: str
    command: str
    scope: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    format: str
    counts: dict[str, int]
    failing: list[str]
    lost: str | None
    hung: str | None = None  # the test a timeout interrupted, when known


@dataclass(frozen=True)
class Notice(Event):
    """A line for the person watching: progress of slow set-up, the baseline's result, a warning."""

    name: ClassVar[str] = "notice"
    message: str
    level: str = "info"  # info | warning


@dataclass(frozen=True)
class TurnEnded(Event):
    """The agent stopped working on the task (or message): why, and what it said."""

    name: ClassVar[str] = "result"
    status: Status
    exit_code: int
    message: str
    summary: str | None
    usage: Usage
    steps: int = 0
    turn: int = 1


@dataclass(frozen=True)
class Failed(Event):
    name: ClassVar[str] = "error"
    message: str
    exit_code: int


@dataclass(frozen=True)
class Interrupted(Event):
    name: ClassVar[str] = "interrupted"
    reason: str = "interrupted"


@dataclass(frozen=True)
class Ended(Event):
    """The session is over: its outcome (status, category, exit code, the last measured tests), what
    changed and how to take it back. Front ends get it as `Session.outcome`."""

    name: ClassVar[str] = "end"
    run_id: str
    status: Status
    category: Category
    exit_code: int
    message: str
    summary: str | None
    steps: int
    usage: Usage | None
    wall_s: float
    files_changed: list[str]
    diff_stat: str
    tests: TestOutcome | None
    trajectory: str | None
    undo: str | None
    branch: str | None = None
    commit: str | None = None
    not_committed: str | None = None
    ignored_changed: list[IgnoredChange] = field(default_factory=list)  # files .gitignore hides
    candidates: list[Any] | None = None  # --candidates: every attempt, how it did, and which one won


# ---------------------------------------------------------------------------------------- the stream

E = TypeVar("E", bound=Event)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


@dataclass
class EventStream:
    """Fans each event out to every subscribed sink. Events may come from several threads (the
    baseline test run reports from its own), so delivery is serialised."""

    sinks: list[EventSink] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._held: list[Event] | None = None

    def hold(self) -> None:
        """Keep events back (a session that may yet fail its first check says nothing before its
        one-line error); `release` delivers them, `drop` forgets them."""
        with self._lock:
            self._held = []

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for event in held:
                self.emit(event)

    def drop(self) -> None:
        with self._lock:
            self._held = None

    def subscribe(self, sink: EventSink) -> None:
        with self._lock:
            self.sinks.append(sink)

    def unsubscribe(self, sink: EventSink) -> None:
        with self._lock:
            if sink in self.sinks:
                self.sinks.remove(sink)

    def emit(self, event: Event) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(event)
                return
            for sink in list(self.sinks):
                sink.emit(event)

    def notice(self, message: str, level: str = "info") -> None:
        self.emit(Notice(message, level))


@dataclass
class Collector:
    """Keeps every event in memory (tests, and front ends that summarise afterwards)."""

    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]
