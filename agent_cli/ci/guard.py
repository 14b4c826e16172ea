"""The last look at a run's commit before it leaves the runner (pushed, or posted as a fork's patch).

- Workflow files: a change under `.github/workflows/` runs on the next push with the repository's
  secrets, so it is taken out of the commit unless the workflow allows it (`--allow-workflow-changes`).
  The commit is rewritten rather than followed by a revert: the change is then in no commit pushed
  (GitHub refuses a push with any commit that changes a workflow when the token lacks `workflows`).
- The message: the model's summary is part of it, and GitHub closes the issues its closing keywords
  name once the commit reaches the default branch; only the triggering issue's survive. The run's
  trailers go at its end (where the next round finds this one: rounds.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.gitops import git, nul_joined

if TYPE_CHECKING:
    from agent_cli.ci.defang import Defanger

WORKFLOWS = ".github/workflows"
LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}


@dataclass(frozen=True)
class Guarded:
    commit: str | None  # the commit to deliver; None when nothing is left to deliver
    reverted: list[str]  # workflow files whose changes were taken out


def guard_commit(
    root: Path,
    branch: str,
    commit: str,
    defanger: Defanger,
    *,
    allow_workflows: bool,
    trailers: dict[str, str] | None = None,
) -> Guarded:
    """`commit` (the tip of `branch`, one commit on its parent) as it may be delivered, with
    `trailers` added to its message; `branch` is moved to the rewritten commit, or back to the
    parent when only workflow files changed."""
    parent = git(root, "rev-parse", f"{commit}^").decode().strip()
    reverted = [] if allow_workflows else workflow_changes(root, parent, commit)
    message = git(root, "log", "-1", "--format=%B", commit).decode("utf-8", "surrogateescape")
    safe_message = defanger.commit_message(message)
    if trailers:
        lines = "".join(f"{key}: {value}\n" for key, value in trailers.items())
        safe_message = f"{safe_message.rstrip()}\n\n{lines}"
    if not reverted and safe_message == message:
        return Guarded(commit, [])
    tree = _tree_without(root, commit, parent, reverted)
    if tree == git(root, "rev-parse", f"{parent}^{{tree}}").decode().strip():
        git(root, "update-ref", f"refs/heads/{branch}", parent, commit)
        return Guarded(None, reverted)
    rewritten = git(
        root, "commit-tree", tree, "-p", parent, env=_author_of(root, commit), input=safe_message.encode()
    )
    new = rewritten.decode().strip()
    git(root, "update-ref", f"refs/heads/{branch}", new, commit)
    return Guarded(new, reverted)


def workflow_changes(root: Path, before: str, after: str) -> list[str]:
    """Files under .github/workflows (or `.github` itself, made a file or a link) that differ."""
    out = git(root, "diff-tree", "-r", "-z", "--no-renames", "--name-only", before, after)
    paths = [path for path in out.decode("utf-8", "surrogateescape").split("\0") if path]
    return [path for path in paths if _is_workflow(path)]


def _is_workflow(path: str) -> bool:
    # GitHub matches the folder exactly; any case is taken out here, since a case-insensitive
    # checkout of the branch would read it as the same folder.
    lower = path.lower()
    return lower in (".github", WORKFLOWS) or lower.startswith(WORKFLOWS + "/")


def _tree_without(root: Path, commit: str, parent: str, paths: list[str]) -> str:
    """`commit`'s tree with `paths` as `parent` has them (or absent, where it has none)."""
    if not paths:
        return git(root, "rev-parse", f"{commit}^{{tree}}").decode().strip()
    with tempfile.TemporaryDirectory(prefix="actsmith-guard-") as tmp:
        env = {**LITERAL, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", commit, env=env)
        git(
            root,
            "rm",
            "--cached",
            "-q",
            "-r",
            "--ignore-unmatch",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            env=env,
            input=nul_joined(paths),
        )
        kept = git(root, "ls-tree", "-r", "-z", "--full-tree", parent, "--", *paths, env=env)
        if kept:
            git(root, "update-index", "--add", "-z", "--index-info", env=env, input=kept)
        return git(root, "write-tree", env=env).decode().strip()


def _author_of(root: Path, commit: str) -> dict[str, str]:
    """The original commit's author and date, and its committer (the identity the session was lent
    when git knows nobody: nothing sets it in the environment), for its rewrite."""
    name, email, date, committer, committer_email = (
        git(root, "log", "-1", "--format=%an%x00%ae%x00%ad%x00%cn%x00%ce", "--date=raw", commit)
        .decode()
        .strip()
        .split("\0")
    )
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": committer,
        "GIT_COMMITTER_EMAIL": committer_email,
    }
