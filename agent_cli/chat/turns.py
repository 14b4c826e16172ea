"""What each turn of a conversation changed, through the session's checkpoints: the user's own edits
between turns (named to the model), the diff of the session or of the last turn, and undoing the last
turn exactly, leaving alone any file the user edited since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.checkpoints import blobs, changed_paths, restore, tree_with
from agent_cli.gitops import git

if TYPE_CHECKING:
    from agent_cli.ledger import FileChange
    from agent_cli.session import Session


@dataclass(frozen=True)
class Turn:
    before: str  # the tree as the turn began (the user's edits recorded)
    after: str  # the tree as it ended


@dataclass(frozen=True)
class Undone:
    restored: list[str]  # put back as they were before the turn
    kept: list[str]  # changed by the turn, then edited by the user: left alone


@dataclass
class Turns:
    session: Session
    done: list[Turn] = field(default_factory=list)
    _before: str | None = None

    @property
    def root(self) -> Path:
        return self.session.target.root

    def begin(self) -> list[FileChange]:
        """Record what the user changed since the last turn (as a step of its own, so undoing the
        agent's turn never undoes it); returns those changes, for the model to be told."""
        ledger, agent = self.session.ledger, self.session.agent
        assert ledger is not None and agent is not None
        changes: list[FileChange] = []
        if ledger.checkpoints.snapshot() != ledger.current.tree:
            changes = list(ledger.record_step(agent.take_step_number(), by_user=True).files)
        self._before = ledger.current.tree
        return changes

    def end(self) -> None:
        ledger = self.session.ledger
        assert ledger is not None and self._before is not None
        self.done.append(Turn(self._before, ledger.current.tree))
        self._before = None

    def diff(self, last_turn: bool = False) -> str:
        """The session's changes (from its start to the working tree now), or the last turn's."""
        ledger = self.session.ledger
        assert ledger is not None
        if last_turn:
            if not self.done:
                return ""
            before, after = self.done[-1].before, self.done[-1].after
        else:
            before, after = ledger.base_tree, ledger.checkpoints.snapshot()
        if before == after:
            return ""
        return git(self.root, "diff", "--no-color", before, after, exact=False).decode("utf-8", "replace")

    def undo(self) -> Undone | None:
        """Put the files the last turn changed back as they were before it; a file the user edited
        since is named and left as it is. None when there is no turn to undo."""
        ledger, agent = self.session.ledger, self.session.agent
        assert ledger is not None and agent is not None
        if not self.done:
            return None
        turn = self.done.pop()
        now = ledger.checkpoints.snapshot()
        paths = changed_paths(self.root, turn.before, turn.after)
        after, current = blobs(self.root, turn.after, paths), blobs(self.root, now, paths)
        kept = [path for path in paths if after.get(path) != current.get(path)]
        undone = [path for path in paths if path not in kept]
        if undone:
            restore(self.root, now, tree_with(self.root, now, turn.before, undone))
            ledger.record_step(agent.take_step_number(), by_user=True)
        return Undone(undone, kept)
