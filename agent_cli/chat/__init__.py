"""`actsmith chat`: a conversation in the repository's terminal, a thin driver of one Session.

Each message is a turn: the agent works in the same sandbox and interpreter, with the whole
conversation, until it calls finish(); the summary is printed and the prompt returns. Slash commands
(commands.py) look at the work, undo a turn, run the tests or a command. Ctrl-C stops a turn (the
action is interrupted, the variables stay); Ctrl-C twice on an empty line, Ctrl-D or /exit leave.
The conversation is saved after every turn, so `--resume` goes on with it in a new sandbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import UsageError
from agent_cli.safe_paths import read_text, write_atomic
from agent_cli.session import ConversationState

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.outcome import TurnResult
    from agent_cli.session import Session
    from agent_cli.workspace import Workspace

CHAT_DIR = Path(".actsmith") / "chat"
SAVED = CHAT_DIR / "session.json"  # in the mount: read and written through safe_paths


@dataclass
class Saved:
    """What --resume needs: the trajectory to go on writing, and the conversation."""

    trajectory: str
    state: ConversationState

    @classmethod
    def load(cls, workspace: Workspace) -> Saved | None:
        try:
            data = json.loads(read_text(workspace.root, SAVED))
            state = ConversationState(data["conversation"], int(data["last_step_number"]), data["requests"])
            return cls(data["trajectory"], state)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, workspace: Workspace) -> None:
        state = self.state
        data = {
            "trajectory": self.trajectory,
            "conversation": state.conversation,
            "last_step_number": state.last_step_number,
            "requests": state.requests,
        }
        try:
            write_atomic(workspace.root, SAVED, json.dumps(data).encode())  # never half written
        except OSError as error:
            raise UsageError(f"cannot save the conversation in {SAVED}: {error}") from None


@dataclass
class Chat:
    """The chat's side of the conversation: the session does the work; this keeps it saved."""

    session: Session
    console: Console

    def resume(self, saved: Saved) -> None:
        """Go on with a saved conversation, in this new sandbox."""
        self.session.resume(saved.state)

    def ask(self, message: str) -> TurnResult:
        result = self.session.ask(message)
        self.save()
        return result

    def plan(self, message: str) -> TurnResult:
        result = self.session.plan_turn(message)
        self.save()
        return result

    def carry_out(self, note: str) -> TurnResult:
        result = self.session.carry_out(note)
        self.save()
        return result

    def clear(self) -> None:
        """Forget the conversation; the files and the interpreter stay."""
        self.session.clear()
        self.save()

    def save(self) -> None:
        trajectory = self.session.trajectory
        Saved(str(trajectory.path) if trajectory else "", self.session.conversation_state()).save(
            self.session.workspace
        )
