"""The driver's side of the repositories: find or clone them, make each task's branch (refusing one
that would take over a ref the batch did not create), read a task's patch off its branch, and move
branches between machines as git bundles for the Ray backend. Nothing here touches a working tree,
an index or HEAD: only refs under actsmith/<name>/ and objects."""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli.errors import UsageError
from agent_cli.gitops import git, has_ref
from agent_cli.workspace import Workspace


@dataclass
class Repositories:
    """Each repository of the batch opened once (a URL cloned once into DIR/repos), and one lock per
    repository for the ref updates the driver makes in it."""

    clones: Path
    _roots: dict[str, Path] = field(default_factory=dict)
    _locks: dict[Path, threading.Lock] = field(default_factory=dict)

    def root(self, repo: str, url: bool) -> Path:
        if repo not in self._roots:
            self._roots[repo] = self._clone(repo) if url else self._open(repo)
            self._locks.setdefault(self._roots[repo], threading.Lock())
        return self._roots[repo]

    def lock(self, root: Path) -> threading.Lock:
        return self._locks[root]

    @staticmethod
    def _open(path: str) -> Path:
        if not Path(path).exists():
            raise UsageError(f"{path} does not exist")
        return Workspace.open(Path(path)).root

    def _clone(self, url: str) -> Path:
        """A clone of the batch's own: the branches go there, and a rerun finds it again."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
        target = self.clones / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
        if not (target / ".git").exists():
            self.clones.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.clones, prefix=".cloning-") as partial:
                git(Path(partial), "clone", "--quiet", "--", url, "repo", exact=False)
                (Path(partial) / "repo").rename(target)
        return target


def refuse_foreign_branch(root: Path, branch: str, ours: bool, field: str) -> None:
    """A branch the batch would write must be its own: absent, or created by an earlier run of it."""
    if ours:
        return
    if has_ref(root, f"refs/heads/{branch}"):
        raise UsageError(
            f"{field}: branch {branch} already exists in {root} and this batch did not create it; "
            "rename the batch or the task, or delete the branch"
        )
    parts = branch.split("/")
    for end in range(1, len(parts)):
        prefix = "/".join(parts[:end])
        if has_ref(root, f"refs/heads/{prefix}"):
            raise UsageError(
                f"{field}: branch {prefix} in {root} is in the way of {branch}; rename the batch"
            )


def start_over(root: Path, branch: str, base: str, batch: str, task_id: str, attempt: int) -> None:
    """Put the task's branch back at its base for a new attempt. Continuing an earlier attempt's work
    would make its changes the new baseline (tests it broke would count as broken before the run),
    so each attempt starts clean; the earlier one's commit stays under refs/actsmith/attempts/."""
    tip = Workspace(root, root).branch_tip(branch)
    if tip is None or tip == base:
        return
    kept = f"refs/actsmith/attempts/{batch}/{task_id}/{attempt - 1}"
    git(root, "update-ref", "-m", "actsmith batch: an earlier attempt", kept, tip)
    git(root, "update-ref", "-m", "actsmith batch: a new attempt", f"refs/heads/{branch}", base, tip)


def bundle(root: Path, branch: str) -> bytes:
    """The branch and its history as a git bundle, for a worker that has no copy of the repository."""
    with tempfile.TemporaryDirectory(prefix="actsmith-bundle-") as folder:
        path = Path(folder) / "repo.bundle"
        git(root, "bundle", "create", "--quiet", str(path), f"refs/heads/{branch}", exact=False)
        return path.read_bytes()


def unbundle(data: bytes, bundled: str, target: Path, branch: str, identity: tuple[str, str]) -> Path:
    """A repository at `target` holding the commit of the bundle's branch `bundled` as `branch`,
    committing as `identity` (name, email).
    HEAD stays on a branch of its own so the task's branch can be checked out in a worktree."""
    target.mkdir(parents=True)
    path = target.parent / f"{target.name}.bundle"
    path.write_bytes(data)
    git(target, "init", "--quiet", exact=False)
    git(target, "config", "user.name", identity[0], exact=False)
    git(target, "config", "user.email", identity[1], exact=False)
    git(target, "fetch", "--quiet", str(path), f"+refs/heads/{bundled}:refs/heads/{branch}", exact=False)
    git(target, "update-ref", "refs/heads/actsmith-base", f"refs/heads/{branch}", exact=False)
    git(target, "symbolic-ref", "HEAD", "refs/heads/actsmith-base", exact=False)
    path.unlink()
    return target


def bundle_since(root: Path, branch: str, base: str) -> bytes | None:
    """The commits a worker added to the branch, as a bundle; None when it added none."""
    tip = git(root, "rev-parse", f"refs/heads/{branch}").decode().strip()
    if tip == base:
        return None
    with tempfile.TemporaryDirectory(prefix="actsmith-bundle-") as folder:
        path = Path(folder) / "result.bundle"
        git(root, "bundle", "create", "--quiet", str(path), f"refs/heads/{branch}", f"^{base}", exact=False)
        return path.read_bytes()


def take_branch(root: Path, branch: str, data: bytes, expected: str) -> str:
    """Bring a worker's branch into the user's repository: fetch the bundle's commits (into a ref of
    ours, so the user's FETCH_HEAD stays), then move the branch only if it still points where the
    task started from. Returns the new tip."""
    incoming = f"refs/actsmith/incoming/{branch}"
    with tempfile.TemporaryDirectory(prefix="actsmith-bundle-") as folder:
        path = Path(folder) / "result.bundle"
        path.write_bytes(data)
        git(
            root,
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            str(path),
            f"+refs/heads/{branch}:{incoming}",
            exact=False,
        )
    tip = git(root, "rev-parse", incoming).decode().strip()
    git(root, "update-ref", "-m", "actsmith batch: the task's result", f"refs/heads/{branch}", tip, expected)
    git(root, "update-ref", "-d", incoming)
    return tip
