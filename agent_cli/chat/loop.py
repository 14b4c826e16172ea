"""The read-ask-print loop of `actsmith chat`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from agent_cli.chat import CHAT_DIR
from agent_cli.chat.commands import COMMANDS, dispatch
from agent_cli.chat.input import input_session
from agent_cli.chat.shown import show
from agent_cli.errors import ActsmithError

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.chat import Chat

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
