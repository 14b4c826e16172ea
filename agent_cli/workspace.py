"""The git side of a run: find the repository, snapshot its state, and report what changed.

Snapshots are tree objects written through a private index file, so the user's index, branches,
stash and HEAD are never touched; untracked files are included (ignored ones are not).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent_cli.errors import UsageError

RUNS_DIR = ".actsmith"
HARDENED_GIT_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null")


@dataclass
class Workspace:
    root: Path
    git_dir: Path

    @classmethod
    def open(cls, path: Path) -> Workspace:
        """The repository containing `path`, or one actionable line saying why there is none."""
        import git

        path = path.expanduser().resolve()
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        try:
            repo = git.Repo(path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, PermissionError):
            raise UsageError(
                f"not a git repository: {path} (run inside one, pass --repo PATH, or run `git init` first)"
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise UsageError(f"{path} is a bare repository: actsmith needs a working tree")
        return cls(Path(repo.working_tree_dir), Path(repo.git_dir))

    @property
    def repo(self):
        """The repository, with git told not to run anything the repository's own config names:
        a sandboxed action must never get code executed on the host through our git commands."""
        import git

        repo = git.Repo(self.root)
        repo.git.set_persistent_git_options(c=[*HARDENED_GIT_CONFIG, f"safe.directory={self.root}"])
        return repo

    def exclude_runs_dir(self) -> None:
        """Keep .actsmith/ out of git through info/exclude, never by editing a tracked .gitignore."""
        exclude = Path(self.repo.git.rev_parse("--git-path", "info/exclude"))
        if not exclude.is_absolute():
            exclude = self.root / exclude
        line = f"/{RUNS_DIR}/"
        existing = exclude.read_text() if exclude.exists() else ""
        if line not in existing.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            prefix = "" if not existing or existing.endswith("\n") else "\n"
            exclude.write_text(existing + prefix + line + "\n")

    def new_run_dir(self, task: str) -> Path:
        self.exclude_runs_dir()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:40] or "task"
        run_dir = self.root / RUNS_DIR / "runs" / f"{stamp}-{slug}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = run_dir.with_name(f"{stamp}-{slug}-{suffix}")
        run_dir.mkdir(parents=True)
        return run_dir

    def summary(self, max_entries: int = 40) -> str:
        """A one-paragraph sketch of the repository for the first prompt: size and top-level entries."""
        files = self.repo.git.ls_files("-z").split("\0")
        files = [f for f in files if f]
        top: dict[str, int] = {}
        for name in files:
            head, sep, _ = name.partition("/")
            key = head + ("/" if sep else "")
            top[key] = top.get(key, 0) + 1
        entries = [
            f"{k} ({n} file{'' if n == 1 else 's'})" if k.endswith("/") else k for k, n in sorted(top.items())
        ]
        shown = ", ".join(entries[:max_entries])
        more = f", and {len(entries) - max_entries} more" if len(entries) > max_entries else ""
        return f"{len(files)} tracked files. Top level: {shown}{more}."

    def snapshot(self) -> str:
        """A tree object holding the working tree as it is now, untracked files included."""
        repo = self.repo
        with tempfile.TemporaryDirectory(prefix="actsmith-index-") as tmp:
            index = Path(tmp) / "index"
            real_index = self.git_dir / "index"
            if real_index.exists():
                # Starting from the real index lets git reuse its stat cache: only changed files are hashed.
                shutil.copyfile(real_index, index)
            env = {**os.environ, "GIT_INDEX_FILE": str(index)}
            repo.git.add("--all", "--", ".", env=env)
            return repo.git.write_tree(env=env)

    def diff_stat(self, before: str, after: str) -> str:
        if before == after:
            return ""
        return self.repo.git.diff("--stat", before, after)

    def diff(self, before: str, after: str) -> str:
        return self.repo.git.diff(before, after)
