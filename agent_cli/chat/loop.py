"""The read-ask-print loop of `actsmith chat`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from agent_cli.chat import CHAT_DIR
from agent_cli.chat.commands import COMMANDS, dispatch
from agent_cli.chat.input import input_session
from agent_cli.errors import ActsmithError
from agent_cli.outcome import Category

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.chat import Chat
    from agent_cli.outcome import TurnResult

HISTORY = "history"


def chat_loop(chat: Chat, console: Console) -> None:
    session = chat.session
    commands = {name: command.help for name, command in COMMANDS.items()}
    prompt = input_session(session.workspace.root, f"{CHAT_DIR}/{HISTORY}", commands, session.target.root)
    model = session.model_name
    console.print(f"actsmith chat in {session.target.root} · model {model} · /help for commands", style="dim")
    interrupts = 0
    while True:
        try:
            line = prompt.prompt()
        except KeyboardInterrupt:  # Ctrl-C on an empty line
            interrupts += 1
            if interrupts >= 2:
                return
            console.print("(Ctrl-C again, Ctrl-D or /exit to leave)", style="dim")
            continue
        except EOFError:
            return
        interrupts = 0
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not dispatch(chat, line, console):
                    return
                continue
            show(console, chat.ask(line))
        except ActsmithError as error:
            console.print(f"[bold red]error:[/] {escape(str(error))}")
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")


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
