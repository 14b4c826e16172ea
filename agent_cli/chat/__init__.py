"""`actsmith chat`: a conversation in the repository's terminal, a thin driver of one Session.

Each message is a turn: the agent works in the same sandbox and interpreter, with the whole
conversation, until it calls finish(); the summary is printed and the prompt returns. Slash commands
(commands.py) look at the work, undo a turn, run the tests or a command. Ctrl-C stops a turn (the
action is interrupted, the variables stay); Ctrl-C twice on an empty line, Ctrl-D or /exit leave.
The conversation is saved after every turn, so `--resume` goes on with it in a new sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.chat.turns import Turns
from agent_cli.context import Conversation
from agent_cli.errors import UsageError
from agent_cli.safe_paths import read_text, write_atomic
from agent_cli.templates import render

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.agent import Agent, TurnResult
    from agent_cli.session import Session
    from agent_cli.workspace import Workspace

CHAT_DIR = Path(".actsmith") / "chat"
SAVED = CHAT_DIR / "session.json"  # in the mount: read and written through safe_paths


@dataclass
class Saved:
    """What --resume needs: the trajectory to go on writing, and the conversation."""

    trajectory: str
    conversation: list[dict]
    last_step_number: int
    requests: list[str]

    @classmethod
    def load(cls, workspace: Workspace) -> Saved | None:
        try:
            data = json.loads(read_text(workspace.root, SAVED))
            return cls(
                data["trajectory"], data["conversation"], int(data["last_step_number"]), data["requests"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, workspace: Workspace) -> None:
        try:
            write_atomic(workspace.root, SAVED, json.dumps(self.__dict__).encode())  # never half written
        except OSError as error:
            raise UsageError(f"cannot save the conversation in {SAVED}: {error}") from None


@dataclass
class Chat:
    session: Session
    console: Console
    turns: Turns = field(init=False)
    requests: list[str] = field(default_factory=list)  # the user's requests, for commit messages
    committed: str | None = None  # the tree of the last /commit: the next commits what came after

    def __post_init__(self) -> None:
        self.turns = Turns(self.session)

    @property
    def agent(self) -> Agent:
        assert self.session.agent is not None
        return self.session.agent

    def resume(self, saved: Saved) -> None:
        """Go on with a saved conversation, in this new sandbox."""
        self.agent.conversation = Conversation.from_data(saved.conversation)
        self.agent.last_step_number = saved.last_step_number
        self.requests = list(saved.requests)
        self.agent.note(render("resumed"))

    def ask(self, message: str) -> TurnResult:
        """One turn: the user's changes since the last one are named first, then the agent works."""
        self.session.cancel.reset()
        changes = self.turns.begin()
        if changes:
            self.agent.note(render("user_edits", files=changes))
        self.requests.append(message)
        if self.agent.conversation.started:
            result = self.session.continue_(message)
        else:
            result = self.session.run(message)
        self.turns.end()
        self.save()
        return result

    def clear(self) -> None:
        """Forget the conversation; the files and the interpreter stay."""
        self.agent.conversation = Conversation()
        self.save()

    def save(self) -> None:
        trajectory = self.session.trajectory
        Saved(
            str(trajectory.path) if trajectory else "",
            self.agent.conversation.to_data(),
            self.agent.last_step_number,
            self.requests,
        ).save(self.session.workspace)
