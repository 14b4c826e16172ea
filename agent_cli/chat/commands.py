"""The chat's slash commands. Each prints straight to the terminal: no pager, no question asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from agent_cli.errors import ActsmithError, UsageError
from agent_cli.sandbox import RunTests
from agent_cli.templates import render

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
    text = chat.turns.diff(last_turn=last_turn)
    if not text:
        console.print("no changes" + (" in the last turn" if last_turn else " in this session"))
    else:
        console.print(Syntax(text, "diff", theme="ansi_dark", word_wrap=True))
    return True


def undo_turn(chat: Chat, argument: str, console: Console) -> bool:
    undone = chat.turns.undo()
    if undone is None:
        console.print("no turn to undo")
        return True
    if undone.restored:
        console.print(
            f"restored {len(undone.restored)} file(s) as they were before the last turn: {', '.join(undone.restored)}"
        )
    else:
        console.print("nothing restored")
    if undone.kept:
        console.print(f"left alone (you edited them since): {', '.join(undone.kept)}", style="yellow")
    chat.agent.note(render("user_undid", restored=undone.restored, kept=undone.kept))
    chat.save()
    return True


def run_tests(chat: Chat, argument: str, console: Console) -> bool:
    tests = chat.session.tests
    if tests is None:
        console.print("no test runner in this session")
        return True
    with chat.session.cancel.watching():
        verdict = tests.check(chat.agent.last_step_number, RunTests(), chat.session.settings.test_timeout)
    console.print(verdict.report, markup=False, highlight=False)
    return True


def run_command(chat: Chat, argument: str, console: Console) -> bool:
    command = argument.strip()
    if not command:
        console.print("usage: /run CMD (a shell command, run in the sandbox)")
        return True
    sandbox = chat.session.sandbox
    assert sandbox is not None
    with chat.session.cancel.on_cancel(sandbox.interrupt):
        observation = sandbox.run(f"sh({command!r})", chat.session.settings.action_timeout)
    output = (observation.stdout + observation.stderr).rstrip("\n")
    console.print(output or "(no output)", markup=False, highlight=False)
    if observation.error:
        console.print(observation.error.rstrip(), style="red", markup=False, highlight=False)
    chat.agent.note(render("user_ran", command=command, output=output, error=observation.error))
    return True


def switch_model(chat: Chat, argument: str, console: Console) -> bool:
    from agent_cli.model import check_credentials, make_model

    name = argument.strip()
    if not name:
        console.print(f"model: {chat.agent.model.name} (switch with /model NAME)")
        return True
    settings = chat.session.settings
    try:
        check_credentials(name, api_base=settings.api_base)
        chat.agent.model = make_model(
            name,
            api_base=settings.api_base,
            timeout=settings.model_timeout,
            prompt_caching=settings.prompt_caching,
        )
    except ActsmithError as error:
        console.print(f"[red]{escape(str(error))}[/]")
        return True
    console.print(f"model: {name}")
    return True


def show_cost(chat: Chat, argument: str, console: Console) -> bool:
    from agent_cli.ui import format_cost, format_tokens

    usage = chat.agent.usage
    console.print(
        f"{format_tokens(usage)}, {format_cost(usage.cost)} "
        f"({chat.agent.turn} turn(s), {len(chat.agent.steps)} step(s))"
    )
    return True


def clear(chat: Chat, argument: str, console: Console) -> bool:
    chat.clear()
    console.print("the conversation is forgotten; the files and the interpreter stay")
    return True


def commit(chat: Chat, argument: str, console: Console) -> bool:
    session = chat.session
    ledger = session.ledger
    assert ledger is not None
    try:
        session.workspace.check_identity()
    except UsageError as error:
        console.print(f"[red]{escape(str(error))}[/]")
        return True
    now = ledger.checkpoints.snapshot()
    message = render(
        "chat_commit",
        requests=chat.requests,
        ledger=ledger.view(),
        run_id=session.run_id,
        summary=argument.strip(),
    )
    made = session.target.commit_run(chat.committed or ledger.base_tree, now, message.strip() + "\n")
    if made is None:
        console.print("nothing to commit")
        return True
    chat.committed = now
    console.print(f"committed {made[:12]}: {message.splitlines()[0]}")
    return True


def leave(chat: Chat, argument: str, console: Console) -> bool:
    return False


COMMANDS: dict[str, Command] = {
    "help": Command("/help", "this list", show_help),
    "diff": Command("/diff [turn]", "the session's changes, or the last turn's", show_diff),
    "undo": Command("/undo", "undo the last turn's changes (files you edited since stay)", undo_turn),
    "test": Command("/test", "run the tests and show the report", run_tests),
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
