"""The turns of a conversation, beside the ledger: the user's own edits between turns (recorded as
steps of their own, so undoing the agent's turn never undoes them), what each turn changed, and
undoing the last turn exactly, leaving alone any file the user edited since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_cli.checkpoints import Undone, undo_changes

if TYPE_CHECKING:
    from agent_cli.ledger import FileChange, Ledger


@dataclass(frozen=True)
class Turn:
    before: str  # the tree as the turn began (the user's edits recorded)
    after: str  # the tree as it ended


@dataclass
class Turns:
    ledger: Ledger
    take_step_number: Callable[[], int]  # steps are numbered across turns; the user's edits take one
    done: list[Turn] = field(default_factory=list)
    _before: str | None = None

    def begin(self) -> list[FileChange]:
        """Record what the user changed since the last turn; returns those changes, for the model."""
        ledger = self.ledger
        changes: list[FileChange] = []
        if ledger.checkpoints.snapshot() != ledger.current.tree:
            changes = list(ledger.record_step(self.take_step_number(), by_user=True).files)
        self._before = ledger.current.tree
        return changes

    def end(self) -> None:
        if self._before is not None:
            self.done.append(Turn(self._before, self.ledger.current.tree))
            self._before = None

    def trees(self, last_turn: bool = False) -> tuple[str, str] | None:
        """(before, after) of the session (from its start to the working tree now) or of the last turn."""
        if not last_turn:
            return self.ledger.base_tree, self.ledger.checkpoints.snapshot()
        return (self.done[-1].before, self.done[-1].after) if self.done else None

    def undo(self) -> Undone | None:
        """Put the files the last turn changed back as they were before it (recorded as a step of
        the user's); None when there is no turn to undo."""
        if not self.done:
            return None
        turn = self.done.pop()
        ledger = self.ledger
        undone = undo_changes(ledger.checkpoints.root, ledger.checkpoints.snapshot(), turn.before, turn.after)
        if undone.paths:
            ledger.record_step(self.take_step_number(), by_user=True)
        return undone
