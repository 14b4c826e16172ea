"""The chat's slash commands. Each prints straight to the terminal: no pager, no question asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from agent_cli.chat.shown import show
from agent_cli.errors import ActsmithError

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.chat import Chat


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Callable[[Chat, str, Console], bool]  # False: leave the chat


def show_help(chat: Chat, argument: str, console: Console) -> bool:
    table = Table(box=None, padding=(0, 2), show_header=False)
    for command in COMMANDS.values():
        table.add_row(escape(command.usage), escape(command.help))
    console.print(table)
    console.print(
        "Enter sends; Alt-Enter (or a paste) for several lines; Tab completes commands and paths; "
        "Ctrl-C stops a turn, twice on an empty line leaves; Ctrl-D or /exit leaves.",
        style="dim",
    )
    return True


def show_diff(chat: Chat, argument: str, console: Console) -> bool:
    last_turn = argument.strip() == "turn"
    text = chat.session.diff(last_turn=last_turn)
    if not text:
        console.print("no changes" + (" in the last turn" if last_turn else " in this session"))
    else:
        console.print(Syntax(text, "diff", theme="ansi_dark", word_wrap=True))
    return True


def undo_turn(chat: Chat, argument: str, console: Console) -> bool:
    undone = chat.session.undo_turn()
    if undone is None:
        console.print("no turn to undo")
        return True
    if undone.paths:
        console.print(
            f"restored {len(undone.paths)} file(s) as they were before the last turn: {', '.join(undone.paths)}"
        )
    else:
        console.print("nothing restored")
    if undone.kept:
        console.print(f"left alone (you edited them since): {', '.join(undone.kept)}", style="yellow")
    chat.save()
    return True


def plan(chat: Chat, argument: str, console: Console) -> bool:
    if not argument.strip():
        console.print("usage: /plan TEXT (the model plans in a read-only sandbox; /go carries the plan out)")
        return True
    result = chat.plan(argument)
    show(console, result, plan=True)
    return True


def go(chat: Chat, argument: str, console: Console) -> bool:
    show(console, chat.carry_out(argument))
    return True


def run_tests(chat: Chat, argument: str, console: Console) -> bool:
    report = chat.session.run_tests()
    console.print(report or "no test runner in this session", markup=False, highlight=False)
    return True


def run_command(chat: Chat, argument: str, console: Console) -> bool:
    command = argument.strip()
    if not command:
        console.print("usage: /run CMD (a shell command, run in the sandbox)")
        return True
    observation = chat.session.run_command(command)
    output = (observation.stdout + observation.stderr).rstrip("\n")
    console.print(output or "(no output)", markup=False, highlight=False)
    if observation.error:
        console.print(observation.error.rstrip(), style="red", markup=False, highlight=False)
    return True


def switch_model(chat: Chat, argument: str, console: Console) -> bool:
    name = argument.strip()
    if not name:
        console.print(f"model: {chat.session.model_name} (switch with /model NAME)")
        return True
    try:
        chat.session.switch_model(name)
    except ActsmithError as error:
        console.print(f"[red]{escape(str(error))}[/]")
        return True
    console.print(f"model: {name}")
    return True


def show_cost(chat: Chat, argument: str, console: Console) -> bool:
    from agent_cli.ui import format_cost, format_tokens

    session = chat.session
    usage = session.usage
    console.print(
        f"{format_tokens(usage)}, {format_cost(usage.cost)} "
        f"({session.turn_count} turn(s), {session.step_count} step(s))"
    )
    return True


def clear(chat: Chat, argument: str, console: Console) -> bool:
    chat.clear()
    console.print("the conversation is forgotten; the files and the interpreter stay")
    return True


def commit(chat: Chat, argument: str, console: Console) -> bool:
    try:
        made = chat.session.commit(argument)
    except ActsmithError as error:
        console.print(f"[red]{escape(str(error))}[/]")
        return True
    if made is None:
        console.print("nothing to commit")
        return True
    console.print(f"committed {made.commit[:12]}: {made.subject}")
    return True


def leave(chat: Chat, argument: str, console: Console) -> bool:
    return False


COMMANDS: dict[str, Command] = {
    "help": Command("/help", "this list", show_help),
    "diff": Command("/diff [turn]", "the session's changes, or the last turn's", show_diff),
    "undo": Command("/undo", "undo the last turn's changes (files you edited since stay)", undo_turn),
    "test": Command("/test", "run the tests and show the report", run_tests),
    "plan": Command("/plan TEXT", "plan only: the repository is read-only for this turn", plan),
    "go": Command("/go [NOTE]", "carry out the last plan, with write access", go),
    "run": Command(
        "/run CMD", "run a shell command in the sandbox (the model sees it next turn)", run_command
    ),
    "model": Command("/model NAME", "switch to another model", switch_model),
    "cost": Command("/cost", "tokens and cost so far", show_cost),
    "clear": Command("/clear", "forget the conversation (files and interpreter stay)", clear),
    "commit": Command("/commit [MESSAGE]", "commit the session's files, the message from the ledger", commit),
    "exit": Command("/exit", "leave (the sandbox is removed)", leave),
}


def dispatch(chat: Chat, line: str, console: Console) -> bool:
    """Run a slash command; False when the chat should end."""
    name, _, argument = line[1:].partition(" ")
    command = COMMANDS.get(name)
    if command is None:
        console.print(f"unknown command /{escape(name)}: /help lists them")
        return True
    return command.run(chat, argument, console)
