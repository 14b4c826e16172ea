"""Showing a candidates run: while the attempts work, one row each (and one for the test designer),
live on a terminal or a line per start and end in a log; then the table of how each did, which one
was applied and why, and the run's summary. `markdown_table` is the same table for the CI comment
and the batch report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent_cli.batch.events import SessionWatcher, TaskProgress
from agent_cli.candidates.events import (
    DESIGNER,
    CandidateEnded,
    CandidatesChosen,
    CandidatesStarted,
    Tagged,
    TestsDesigned,
)
from agent_cli.events import Ended, Event, ModelRetried, Notice, Started, TurnEnded
from agent_cli.templates import render
from agent_cli.ui import format_cost, render_summary

if TYPE_CHECKING:
    from rich.console import Console

STYLES = {
    "succeeded": "green",
    "no_change": "green",
    "untested": "yellow",
    "running": "cyan",
    "waiting": "dim",
}


@dataclass
class Row:
    who: int | str
    model: str
    status: str = "waiting"
    step: int = 0
    action: str = ""
    cost: float = 0.0
    started: float | None = None
    watcher: SessionWatcher | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return "designer" if self.who == DESIGNER else f"#{self.who}"

    def progress(self, update: TaskProgress) -> None:
        self.step, self.action, self.cost = update.step, update.action, update.cost


class CandidatesView:
    def __init__(self, console: Console, errors: Console) -> None:
        self.console = console
        self.errors = errors
        self.rows: dict[int | str, Row] = {}
        self.chosen: CandidatesChosen | None = None
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(
                console=console, refresh_per_second=4, transient=True, get_renderable=self._board
            )
            self.live.start()

    def emit(self, event: Event) -> None:
        if isinstance(event, CandidatesStarted):
            self._plan(event)
        elif isinstance(event, Tagged):
            self._attempt_event(event.candidate, event.event)
        elif isinstance(event, TestsDesigned):
            files = ", ".join(event.files) or "none"
            self._say(f"designed tests ({event.status}): {files}")
        elif isinstance(event, CandidateEnded):
            candidate = event.candidate
            self._row(candidate.number).status = candidate.category
            if self.live is None:
                self._say(
                    f"candidate #{candidate.number}: {candidate.category} ({candidate.steps} steps, "
                    f"{format_cost(candidate.cost)}) {candidate.message}"
                )
        elif isinstance(event, CandidatesChosen):
            self.chosen = event
        elif isinstance(event, Notice):
            style = "yellow" if event.level == "warning" else "dim"
            self.errors.print(event.message, style=style, markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, Ended):
            self.close()
            if event.candidates:
                self.console.print(candidates_table(event.candidates))
            self._designed_lines()
            render_summary(self.console, event)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _plan(self, event: CandidatesStarted) -> None:
        if event.designer:
            self._add(DESIGNER, event.designer)
        for plan in event.candidates:
            self._add(plan["number"], plan["model"])
        self._say(
            f"{len(event.candidates)} candidates, {event.jobs} at a time"
            + (f", after the test designer ({event.designer})" if event.designer else "")
        )

    def _add(self, who: int | str, model: str) -> None:
        row = Row(who, model)
        row.watcher = SessionWatcher(str(who), row.progress)
        self.rows[who] = row

    def _row(self, who: int | str) -> Row:
        if who not in self.rows:
            self._add(who, "")
        return self.rows[who]

    def _attempt_event(self, who: int | str, event: Event) -> None:
        row = self._row(who)
        if isinstance(event, Started):
            row.status, row.started = "running", time.monotonic()
            if self.live is None:
                self._say(f"{row.name} ({row.model}): started")
        elif isinstance(event, TurnEnded):
            row.status = event.status
        elif isinstance(event, Notice) and event.level == "warning":
            self._say(f"{row.name}: {event.message}", "yellow")
        elif isinstance(event, ModelRetried):
            self._say(f"{row.name}: model: attempt {event.attempt} failed ({event.error})", "yellow")
        if row.watcher is not None:
            row.watcher.emit(event)

    def _board(self) -> Group:
        table = Table(title="candidates", title_justify="left", expand=False)
        for column in ("", "model", "status", "step", "last action", "cost", "time"):
            table.add_column(column, no_wrap=column != "last action", overflow="ellipsis")
        now = time.monotonic()
        for row in self.rows.values():
            spent = f"{int(now - row.started)}s" if row.started is not None else ""
            table.add_row(
                row.name,
                row.model,
                Text(row.status, style=STYLES.get(row.status, "default")),
                str(row.step),
                row.action,
                f"${row.cost:.4f}",
                spent,
            )
        return Group(table)

    def _designed_lines(self) -> None:
        chosen = self.chosen
        if chosen is None or not chosen.designed_tests:
            return
        where = f" (kept in {chosen.kept_in})" if chosen.kept_in else ""
        self._say(f"designed tests: {', '.join(chosen.designed_tests)}{where}")
        for test, why in chosen.suspect.items():
            self._say(f"  suspect: {test}: {why}", "yellow")

    def _say(self, line: str, style: str = "dim") -> None:
        self.console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)


def _code(text: str) -> str:
    return f"`{text.replace('`', chr(39))}`"


def candidates_table(candidates: list[Any]) -> Group:
    """How each attempt did, then a line each on the choice: the one applied first."""
    table = Table(title="candidates", title_justify="left", box=None, padding=(0, 1), header_style="bold")
    for column in ("", "outcome", "tests", "designed", "agree", "lines", "cost", "steps", "model"):
        table.add_column(column, no_wrap=column != "model", overflow="fold")
    for c in candidates:
        table.add_row(
            f"#{c.number}",
            Text(c.category, style=STYLES.get(c.category, "red")),
            c.tests,
            f"{c.designed_passed}/{c.designed_total}" if c.designed_total else "-",
            str(c.agreement) if c.designed_total else "-",
            str(c.lines_changed),
            "unknown" if c.cost is None else f"${c.cost:.4f}",
            str(c.steps),
            c.model + (f" at {c.temperature:g}" if c.temperature is not None else ""),
        )
    order = sorted(candidates, key=lambda c: not c.won)
    lines = [
        Text(f"#{c.number} " + ("applied: " if c.won else "") + c.why, style="bold green" if c.won else "dim")
        for c in order
    ]
    return Group(table, *lines)


def markdown_table(
    candidates: list[Any], *, show: Callable[[str], str] = str, code: Callable[[str], str] = _code
) -> str:
    return render("candidates_table", candidates=candidates, show=show, code=code)
