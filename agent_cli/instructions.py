"""The repository's instructions to agents: AGENTS.md at the root and in folders.

The root file (or, when there is none, AGENT.md, CLAUDE.md or .github/copilot-instructions.md) goes
into the system prompt verbatim under a heading naming it. A folder's AGENTS.md applies to that
folder: it is shown once, right after the first step whose action mentions a path in the folder or
edits a file there. All are read when the session starts, before the sandbox could write them, and
never followed through a symlink. actsmith runs none of the commands they name on its own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli import safe_paths
from agent_cli.gitops import GitError, git

ROOT_NAMES = ("AGENTS.md", "AGENT.md", "CLAUDE.md", ".github/copilot-instructions.md")
NESTED_NAME = "AGENTS.md"
MAX_CHARS = 12_000  # per file: the root file sits in every request


@dataclass(frozen=True)
class InstructionFile:
    path: str  # from the repository root
    text: str
    cut: int = 0  # characters left out past MAX_CHARS

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


@dataclass
class RepoInstructions:
    root: InstructionFile | None = None
    nested: list[InstructionFile] = field(default_factory=list)  # deepest folders first
    _shown: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, repo: Path) -> RepoInstructions:
        root = next(filter(None, (_read(repo, name) for name in ROOT_NAMES)), None)
        nested = [found for path in _nested_paths(repo) if (found := _read(repo, path)) is not None]
        nested.sort(key=lambda item: item.folder.count("/"), reverse=True)
        return cls(root, nested)

    @property
    def files(self) -> list[InstructionFile]:
        return ([self.root] if self.root else []) + self.nested

    def due(self, code: str, edited: list[str]) -> list[InstructionFile]:
        """Folder instructions not shown yet whose folder this step's action mentions or edited."""
        found = []
        for item in self.nested:
            if item.path in self._shown:
                continue
            prefix = item.folder + "/"
            mentioned = re.search(rf"(?<![\w.-]){re.escape(item.folder)}(?:/|\b)", code) is not None
            if mentioned or any(path.startswith(prefix) for path in edited):
                self._shown.add(item.path)
                found.append(item)
        return found


def _nested_paths(repo: Path) -> list[str]:
    try:
        out = git(
            repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", f"*/{NESTED_NAME}"
        )
    except GitError:
        return []
    return sorted({path for path in out.decode("utf-8", "surrogateescape").split("\0") if path})


def _read(repo: Path, relative: str) -> InstructionFile | None:
    """The file's text, or None when it is absent, not a regular file, or behind a symlink anywhere
    on its way (it could point at a file of the host's)."""
    try:
        data = safe_paths.read_bytes(repo, relative, MAX_CHARS * 4 + 1)
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    return InstructionFile(relative, text[:MAX_CHARS], max(0, len(text) - MAX_CHARS))
