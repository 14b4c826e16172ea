"""How the chat shows the end of a turn: the agent's summary (a plan as Markdown), or why it stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from agent_cli.outcome import Category

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.outcome import TurnResult


def show(console: Console, result: TurnResult, *, plan: bool = False) -> None:
    """How a turn ended: the agent's summary (a plan as Markdown), or why it stopped."""
    steps = f"{len(result.steps)} step{'s' if len(result.steps) != 1 else ''}"
    category = result.category
    if plan and result.status.finished:
        console.print(Panel(Markdown(result.summary or "(no plan)"), border_style="cyan", title="plan"))
        console.print(f"{steps} · /go to carry it out, or /plan again", style="dim")
    elif category.good or category is Category.UNTESTED:
        style = "green" if category.good else "yellow"
        console.print(Panel(Text(result.summary or "(no summary)"), border_style=style, title="done"))
        note = "" if category.good else f" · {result.message}"
        console.print(f"{steps}{note} · /diff turn to look, /undo to take it back", style="dim")
    elif category is Category.INTERRUPTED:
        console.print(f"[yellow]stopped after {steps}: the sandbox and its variables are kept[/]")
    else:
        console.print(f"[yellow]{escape(category)} after {steps}: {escape(result.message)}[/]")
