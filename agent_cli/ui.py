"""The terminal view: a consumer of the event stream that shows each step live with rich, then the
session's summary. It only reads events; it never reaches into the loop."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.status import Status
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agent_cli.checkpoints import RunRecord
from agent_cli.events import (
    ActionStarted,
    Ended,
    Event,
    ModelCalled,
    ModelRetried,
    Notice,
    Observed,
    SetupProgress,
    StepStarted,
    TaskGiven,
    TurnEnded,
)
from agent_cli.ignored import summary_line
from agent_cli.model import Usage
from agent_cli.outcome import Status as OutcomeStatus

OBSERVATION_LINES = 25
TEST_STYLES = {"passed": "green", "failed": "red"}


def trim_lines(text: str, keep: int = OBSERVATION_LINES) -> str:
    """Head and tail of long text for the terminal; the model and the trajectory get the full text."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= keep:
        return "\n".join(lines)
    head, tail = lines[: keep // 2], lines[-(keep - keep // 2) :]
    return "\n".join([*head, f"... {len(lines) - keep} more lines ...", *tail])


class TerminalView:
    """Prints each step as the agent takes it: progress lines go to stderr, the steps to stdout."""

    def __init__(self, console: Console, errors: Console, *, summary: bool = True):
        self.console = console
        self.errors = errors
        self.summary = summary  # render the `end` event (run does; chat prints its own turn lines)
        self._status: Status | None = None
        self.usage = Usage()  # every model call of the session so far, for the meter in step headers
        self.max_cost: float | None = None

    def emit(self, event: Event) -> None:
        if isinstance(event, ModelCalled):
            self.usage.add(event.usage)
        elif isinstance(event, TaskGiven):
            self.max_cost = event.config.max_cost
        elif isinstance(event, StepStarted):
            self._spin(f"step {event.step}: waiting for the model…")
        elif isinstance(event, ActionStarted):
            self._action(event)
        elif isinstance(event, Observed):
            self._observation(event)
        elif isinstance(event, Notice):
            self._stop_status()
            style = "yellow" if event.level == "warning" else "dim"
            self.errors.print(event.message, style=style, markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, ModelRetried):
            self._stop_status()
            self.errors.print(
                f"model: attempt {event.attempt} failed ({event.error}); retrying in {event.delay_s:g} s",
                style="yellow",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        elif isinstance(event, SetupProgress):
            text = f"setup [{event.step}/{event.of}] {event.command}"
            line = " ".join(event.line.split())
            self._spin(f"{text}: {line[:80]}" if line else text)
        elif isinstance(event, TurnEnded):
            self._stop_status()
        elif isinstance(event, Ended):
            self._stop_status()
            if self.summary:
                render_summary(self.console, event)

    def _action(self, event: ActionStarted) -> None:
        self._stop_status()
        self._header(event.step, "cyan")
        if event.thought:
            self.console.print(Text(event.thought, style="italic"))
        self.console.print(
            Syntax(event.code, "python", theme="ansi_dark", line_numbers=False, word_wrap=True)
        )
        self._spin("running…")

    def _observation(self, event: Observed) -> None:
        self._stop_status()
        obs = event.observation
        if event.code is None:
            self._header(event.step, "yellow")
            self.console.print("[yellow]no action in this reply; asking the model for one[/]")
            return
        if obs is None:
            return
        if event.ends is OutcomeStatus.FINISHED and not (obs.stdout or obs.stderr or obs.error):
            return  # the summary says it
        failed = obs.error or obs.timed_out or obs.restarted or obs.interrupted
        style = "red" if failed else "green"
        body = Text(trim_lines(event.text), style="default")
        self.console.print(Panel(body, title=f"observation ({obs.duration_s:.2f}s)", border_style=style))

    def _header(self, step: int, style: str) -> None:
        """The step's rule, with the meter: tokens so far, the share read from cache, cost of max_cost."""
        title = Text.assemble(
            (f"step {step}", "bold"), (f" · {format_meter(self.usage, self.max_cost)}", "dim")
        )
        self.console.rule(title, align="left", style=style)

    def _spin(self, text: str) -> None:
        self._stop_status()
        if self.console.is_terminal:
            self._status = self.console.status(text, spinner="dots")
            self._status.start()

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._stop_status()


def format_cost(cost: float | None) -> str:
    return "unknown (model not in litellm's price map)" if cost is None else f"${cost:.4f}"


def format_tokens(usage: Usage) -> str:
    """Tokens in and out, then what the provider's prompt cache read and wrote, when it did either:
    `6,002 tokens in, 120 out; cache: 3,769 read (63%), 1,630 written`."""
    text = f"{usage.prompt_tokens:,} tokens in, {usage.completion_tokens:,} out"
    cache = []
    if usage.cache_read_tokens:
        cache.append(f"{usage.cache_read_tokens:,} read ({usage.cached_share:.0%})")
    if usage.cache_write_tokens:
        cache.append(f"{usage.cache_write_tokens:,} written")
    return f"{text}; cache: {', '.join(cache)}" if cache else text


def format_meter(usage: Usage, max_cost: float | None) -> str:
    """The live meter of a step header: `12,345 tokens in (82% cached), 456 out · $0.0123 of $2.00`."""
    tokens = f"{usage.prompt_tokens:,} tokens in ({usage.cached_share:.0%} cached), {usage.completion_tokens:,} out"
    if usage.cost is None:
        return f"{tokens} · cost unknown"
    limit = f" of ${max_cost:.2f}" if max_cost is not None else ""
    return f"{tokens} · ${usage.cost:.4f}{limit}"


def _usage_rows(usage: Usage | None) -> list[tuple[str, str]]:
    if usage is None:
        return []
    return [("tokens", format_tokens(usage)), ("cost", format_cost(usage.cost))]


def render_summary(console: Console, end: Ended) -> None:
    status_style = "green" if end.category.good else "yellow"
    headline = end.category if end.category == end.status else f"{end.category} ({end.status})"
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("status", Text(f"{headline}: {end.message}", style=status_style))
    table.add_row("steps", str(end.steps))
    for name, value in _usage_rows(end.usage):
        table.add_row(name, value)
    table.add_row("wall time", f"{end.wall_s:.1f}s")
    if end.tests is not None:
        style = TEST_STYLES.get(end.tests.state, "default")
        table.add_row("tests", Text(end.tests.text, style=style))
    if end.trajectory:
        table.add_row("trajectory", end.trajectory)
    if end.branch:
        table.add_row("branch", f"{end.branch} (your checkout is untouched)")
    else:
        table.add_row("undo", end.undo or "nothing to undo")
    if end.commit:
        table.add_row("commit", end.commit[:12])
    if end.not_committed:
        table.add_row("commit", Text(f"not made: {end.not_committed}", style="yellow"))
    parts: list[Any] = [table]
    if end.summary:
        parts += [Text(""), Text(end.summary)]
    changed = len(end.files_changed)
    files = f"{changed} file{'s' if changed != 1 else ''} changed" if changed else "no files changed"
    parts += [Text(""), Text(end.diff_stat or files, style="dim")]
    if end.ignored_changed:
        parts.append(Text(summary_line(end.ignored_changed), style="yellow"))
    console.print(Panel(Group(*parts), title="actsmith", border_style=status_style))


def render_runs(console: Console, runs: list[RunRecord]) -> None:
    if not runs:
        console.print("no actsmith runs in this repository yet")
        return
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("run", "started", "steps", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("task", overflow="fold", ratio=1)
    for run in runs:
        started = time.strftime("%m-%d %H:%M", time.localtime(run.started))
        status = f"{run.status} on {run.branch}" if run.branch else run.status
        table.add_row(run.run_id, started, str(run.steps), status, run.task)
    console.print(table)
