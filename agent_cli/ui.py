"""Terminal rendering with rich: each step live, then a summary of the run."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agent_cli.agent import Step
from agent_cli.checkpoints import RunRecord
from agent_cli.runner import TaskOutcome

OBSERVATION_LINES = 25


def trim_lines(text: str, keep: int = OBSERVATION_LINES) -> str:
    """Head and tail of long text for the terminal; the model and the trajectory get the full text."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= keep:
        return "\n".join(lines)
    head, tail = lines[: keep // 2], lines[-(keep - keep // 2) :]
    return "\n".join([*head, f"... {len(lines) - keep} more lines ...", *tail])


class TerminalObserver:
    """Prints each step as the agent takes it."""

    def __init__(self, console: Console):
        self.console = console
        self._status = None

    def model_started(self, step: int) -> None:
        self._stop_status()
        self._status = self.console.status(f"step {step}: waiting for the model…", spinner="dots")
        self._status.start()

    def action_started(self, step: int, thought: str, code: str) -> None:
        self._stop_status()
        self.console.rule(f"[bold]step {step}", align="left", style="cyan")
        if thought:
            self.console.print(Text(thought, style="italic"))
        self.console.print(Syntax(code, "python", theme="ansi_dark", line_numbers=False, word_wrap=True))
        self._status = self.console.status("running…", spinner="dots")
        self._status.start()

    def step_finished(self, step: Step) -> None:
        self._stop_status()
        if step.code is None:
            self.console.rule(f"[bold]step {step.number}", align="left", style="yellow")
            self.console.print(Text(trim_lines(step.reply, 8), style="italic"))
            self.console.print("[yellow]no action in this reply; asking the model for one[/]")
            return
        obs = step.observation
        # "[finished]" is what the agent records for a finish() that ended the run; a finish() the
        # tests sent back carries their report, which is worth showing.
        if obs is None or step.observation_text == "[finished]":
            return
        style = "red" if (obs.error or obs.timed_out or obs.restarted) else "green"
        body = Text(trim_lines(step.observation_text), style="default")
        self.console.print(Panel(body, title=f"observation ({obs.duration_s:.2f}s)", border_style=style))

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._stop_status()


def _format_cost(cost: float | None) -> str:
    return "unknown (model not in litellm's price map)" if cost is None else f"${cost:.4f}"


def render_summary(console: Console, outcome: TaskOutcome) -> None:
    result = outcome.result
    status_style = "green" if result.exit_code == 0 else "yellow"
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("status", Text(f"{result.status}: {result.message}", style=status_style))
    table.add_row("steps", str(len(result.steps)))
    usage = result.usage
    table.add_row("tokens", f"{usage.prompt_tokens:,} in, {usage.completion_tokens:,} out")
    table.add_row("cost", _format_cost(usage.cost))
    table.add_row("wall time", f"{outcome.wall_s:.1f}s")
    if outcome.tests is not None:
        style = {"passed": "green", "failed": "red"}.get(outcome.tests.state, "default")
        table.add_row("tests", Text(outcome.tests.text, style=style))
    table.add_row("trajectory", str(outcome.trajectory_path))
    table.add_row("undo", f"actsmith undo --run {outcome.run_id}" if not outcome.branch else "not needed")
    if outcome.branch:
        table.add_row("branch", f"{outcome.branch} (your checkout is untouched)")
    if outcome.commit:
        table.add_row("commit", outcome.commit[:12])
    if outcome.not_committed:
        table.add_row("commit", Text(f"not made: {outcome.not_committed}", style="yellow"))
    parts: list = [table]
    if result.summary:
        parts += [Text(""), Text(result.summary)]
    parts += [Text(""), Text(outcome.diff_stat or "no files changed", style="dim")]
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
