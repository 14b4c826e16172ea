"""The git side of a candidates run: the attempts' scratch branches, their work kept under
refs/actsmith/candidates/<run>/<n>, the designed tests' commit, and the winner's change applied to
the checkout (through the run's checkpoints, so `actsmith undo` takes it back) or committed on the
run's branch."""

from __future__ import annotations

from pathlib import Path

from agent_cli.checkpoints import blobs
from agent_cli.errors import UsageError
from agent_cli.gitops import GitError, git
from agent_cli.workspace import BRANCH_PREFIX, RUN_REF_PREFIX, WORKTREE_ATTEMPTS, Workspace, slugify

REF_PREFIX = "refs/actsmith/candidates/"
SCRATCH_PREFIX = f"{BRANCH_PREFIX}candidates/"


def candidate_ref(run_id: str, which: int | str) -> str:
    return f"{REF_PREFIX}{run_id}/{which}"


def scratch_branch(root: Path, run_id: str, which: int | str, commit: str) -> str:
    """A branch at `commit` for one attempt's worktree (a session in a worktree works on a branch)."""
    branch = f"{SCRATCH_PREFIX}{run_id}/{which}"
    git(root, "update-ref", "-m", "actsmith candidates: an attempt", f"refs/heads/{branch}", commit, "")
    return branch


def keep(workspace: Workspace, run_id: str, which: int | str, branch: str) -> str | None:
    """Move an attempt's branch to refs/actsmith/candidates/<run>/<which>; returns its commit."""
    tip = workspace.branch_tip(branch)
    if tip is None:
        return None
    root = workspace.root
    git(root, "update-ref", "-m", "actsmith candidates: kept", candidate_ref(run_id, which), tip)
    git(root, "update-ref", "-d", f"refs/heads/{branch}", tip)
    return tip


def drop_run_ref(root: Path, run_id: str) -> None:
    """An attempt's own checkpoints: its work is kept whole under the candidates' refs instead, so
    `actsmith runs` lists the run the user started, not each of its attempts."""
    git(root, "update-ref", "-d", RUN_REF_PREFIX + run_id)


def new_run_branch(workspace: Workspace, label: str) -> str:
    """--worktree: the run's branch actsmith/<slug> at HEAD, which will get the winner's commit
    (the open run made sure HEAD has one)."""
    for attempt in range(1, WORKTREE_ATTEMPTS + 1):
        branch = BRANCH_PREFIX + slugify(label) + (f"-{attempt}" if attempt > 1 else "")
        try:
            workspace.create_branch(branch, "actsmith: the run's branch")
        except GitError:
            continue  # taken, by an earlier run or one a moment ago
        return branch
    raise UsageError(f"cannot create a branch for {label!r}: too many runs of the same task")


def tree_of(root: Path, commit: str) -> str:
    return git(root, "rev-parse", f"{commit}^{{tree}}").decode().strip()


def commit_tree(root: Path, tree: str, parent: str, message: str, identity: dict[str, str] | None) -> str:
    """A commit of `tree` on `parent`, by `identity` (GIT_AUTHOR_*...; None: git's own config)."""
    return git(root, "commit-tree", tree, "-p", parent, env=identity, input=message.encode()).decode().strip()


def lines_changed(root: Path, before: str, after: str) -> int:
    """Lines added plus lines removed (a binary file counts none)."""
    out = git(root, "diff", "--numstat", "--no-renames", before, after).decode("utf-8", "replace")
    total = 0
    for line in out.splitlines():
        added, removed, _ = line.split("\t", 2)
        total += (int(added) if added.isdigit() else 0) + (int(removed) if removed.isdigit() else 0)
    return total


def read_file(root: Path, commit: str, path: str) -> bytes:
    return git(root, "cat-file", "blob", f"{commit}:{path}")


def move_branch(root: Path, branch: str, commit: str, previous: str) -> None:
    git(root, "update-ref", "-m", "actsmith candidates: the winner", f"refs/heads/{branch}", commit, previous)


def differing(root: Path, tree_a: str, tree_b: str, paths: list[str]) -> list[str]:
    """Those of `paths` whose content differs between two trees."""
    a, b = blobs(root, tree_a, paths), blobs(root, tree_b, paths)
    return [path for path in paths if a.get(path) != b.get(path)]
