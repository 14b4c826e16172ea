"""Watching a batch: consumers of the driver's event stream. `Board` keeps the state the events tell
(running tasks, counts, cost, ETA); `LiveView` draws it as a rich table on a terminal, one row per
running task; `PlainView` writes one line per start and end when the output is not a terminal.
`--json` subscribes the JSON lines writer to the same stream instead. `status_table` draws a batch
folder's rows (for `batch status` and the end of a run)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent_cli.batch.events import BatchEnded, BatchStarted, TaskFinished, TaskProgress, TaskStarted
from agent_cli.batch.results import GOOD, NOT_STARTED
from agent_cli.events import Event, Notice
from agent_cli.ui import format_tokens

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.batch.report import Row, Summary

PULL_COLUMNS = ["pr", "state", "checks", "review"]
PULL_STYLES = {
    "merged": "magenta",
    "open": "green",
    "closed": "red",
    "passing": "green",
    "failing": "red",
    "pending": "yellow",
}
STYLES = {
    "succeeded": "green",
    "no_change": "green",
    "untested": "yellow",
    "limit_reached": "yellow",
    "not_started": "yellow",
    "running": "cyan",
    "waiting": "dim",
}


@dataclass
class Running:
    id: str
    started: float
    node: str
    step: int = 0
    action: str = "starting"
    cost: float = 0.0


@dataclass
class Board:
    """The batch as its events tell it."""

    name: str = ""
    jobs: int = 1
    pending: int = 0  # tasks of this run not finished yet
    running: dict[str, Running] = field(default_factory=dict)
    good: int = 0
    bad: int = 0
    skipped: int = 0
    cost: float = 0.0  # this run's, finished and running tasks
    durations: list[float] = field(default_factory=list)
    out: str = ""
    ended: BatchEnded | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, BatchEnded):
            self.ended = event
        elif isinstance(event, BatchStarted):
            self.name, self.jobs, self.out = event.batch, max(1, event.jobs), event.out
            self.pending = len(event.pending)
            self.skipped = len(event.tasks) - len(event.pending)
        elif isinstance(event, TaskStarted):
            self.running[event.id] = Running(event.id, time.monotonic(), event.node)
        elif isinstance(event, TaskProgress) and event.id in self.running:
            task = self.running[event.id]
            task.step, task.action, task.cost = event.step, event.action, event.cost
        elif isinstance(event, TaskFinished):
            result = event.result
            if result.id in self.running:
                self.durations.append(time.monotonic() - self.running.pop(result.id).started)
            self.pending = max(0, self.pending - 1)
            self.cost += result.cost or 0.0
            if result.status in GOOD:
                self.good += 1
            elif result.status != NOT_STARTED:
                self.bad += 1

    @property
    def running_cost(self) -> float:
        return self.cost + sum(task.cost for task in self.running.values())

    def eta(self) -> float | None:
        """Seconds left: the mean task time so far, for the tasks left, `jobs` at a time."""
        if not self.durations or not self.pending:
            return None
        mean = sum(self.durations) / len(self.durations)
        waiting = max(0, self.pending - len(self.running))
        elapsed = [time.monotonic() - task.started for task in self.running.values()]
        left_running = max((max(0.0, mean - spent) for spent in elapsed), default=0.0)
        return left_running + mean * waiting / self.jobs

    def totals(self) -> str:
        eta = self.eta()
        parts = [
            f"{self.good + self.bad} done ({self.good} ok, {self.bad} failed)",
            f"{len(self.running)} running",
            f"{max(0, self.pending - len(self.running))} waiting",
            f"cost ${self.running_cost:.4f}",
        ]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already done)")
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        return " · ".join(parts)


class LiveView:
    """A live table on a terminal: one row per running task, and the totals under it."""

    def __init__(self, console: Console) -> None:
        self.board = Board()
        self.console = console
        self.live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._render)
        self.live.start()

    def emit(self, event: Event) -> None:
        self.board.emit(event)
        if isinstance(event, TaskFinished):
            self.console.print(_finished_line(event), highlight=False)
        elif isinstance(event, Notice):
            self.console.print(event.message, style="dim", markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()
        final_words(self.console, self.board)

    def _render(self) -> Group:
        table = Table(title=f"batch {self.board.name}", title_justify="left", expand=False)
        for column in ("task", "step", "last action", "cost", "time"):
            table.add_column(column, no_wrap=column != "last action", overflow="ellipsis")
        now = time.monotonic()
        for task in self.board.running.values():
            table.add_row(
                task.id, str(task.step), task.action, f"${task.cost:.4f}", _duration(now - task.started)
            )
        return Group(table, Text(self.board.totals(), style="bold"))


class PlainView:
    """One line per task started and ended, for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.board = Board()
        self.console = console

    def emit(self, event: Event) -> None:
        self.board.emit(event)
        if isinstance(event, BatchStarted):
            self._say(
                f"batch {event.batch}: {len(event.pending)} of {len(event.tasks)} task(s) to run, "
                f"{event.jobs} at a time ({event.backend})"
            )
        elif isinstance(event, TaskStarted):
            self._say(f"{event.id}: started (attempt {event.attempt}, on {event.node})")
        elif isinstance(event, TaskFinished):
            self.console.print(_finished_line(event), highlight=False)
            self._say(self.board.totals())
        elif isinstance(event, Notice):
            self._say(event.message)

    def close(self) -> None:
        final_words(self.console, self.board)

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def final_words(console: Console, board: Board) -> None:
    """After a run: the batch's table and how it ended."""
    if board.ended is None:
        return
    from agent_cli.batch.report import summarise

    console.print(status_table(summarise(Path(board.out))))
    console.print(ended_line(board.ended), markup=False, highlight=False, soft_wrap=True)


def ended_line(event: BatchEnded) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in event.counts.items()) or "nothing to do"
    why = f" (stopped: {event.reason})" if event.reason else ""
    tokens = f"; {format_tokens(event.usage)}" if event.usage is not None else ""
    return (
        f"batch ended{why}: {counts}; cost ${event.cost:.4f}{tokens}; exit {event.exit_code}; "
        f"report: {event.report}"
    )


def status_table(summary: Summary) -> Table:
    table = Table(title=f"batch {summary.name} ({summary.out})", title_justify="left")
    # Ids and branches are what a user copies: whole, whatever the width.
    whole = {
        "task": max((len(row.id) for row in summary.rows), default=4),
        "branch": max((len(row.result.branch) for row in summary.rows if row.result), default=6),
    }
    columns = ["task", "status", "files", "tests", "cost", "steps", "branch"]
    if summary.published:
        columns += PULL_COLUMNS
    for column in columns:
        table.add_column(column, no_wrap=column in whole, min_width=whole.get(column))
    for row in summary.rows:
        result = row.result if row.status not in ("running", "waiting") else None
        cells: list[str | Text] = [
            row.id,
            Text(row.status, style=STYLES.get(row.status, "red")),
            str(row.files) if result else "",
            result.tests_brief if result else "",
            row.cost if result else "",
            str(result.steps) if result else "",
            result.branch if result else "",
        ]
        if summary.published:
            cells += _pull_cells(row)
        table.add_row(*cells)
    return table


def _pull_cells(row: Row) -> list[str | Text]:
    """The pull request's number, state, checks and review decision; `?` where GitHub did not say."""
    pull = row.pull
    if pull is None:
        return ["", "", "", ""]
    state = Text(pull.state or "?", style=PULL_STYLES.get(pull.state, ""))
    checks = Text(pull.checks or "?", style=PULL_STYLES.get(pull.checks.split(" ")[0], ""))
    return [pull.label, state, checks, pull.review or "?"]


def _finished_line(event: TaskFinished) -> Text:
    result = event.result
    line = Text(f"{result.id}: ")
    line.append(result.status, style=STYLES.get(result.status, "red"))
    cost = "?" if result.cost is None else f"${result.cost:.4f}"
    line.append(f" ({result.steps} steps, {len(result.files_changed)} file(s), {cost}) {result.message}")
    return line


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
