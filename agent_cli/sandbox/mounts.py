"""What of the checkout the sandbox may write: the working tree, and nothing host tools obey.

The repository is mounted read-write at /workspace, but the host runs git in it and the user's
tools read some of its folders, so these go in read-only: the git dir (hooks, config, attributes),
every submodule's `.git` (a `gitdir:` line the sandbox could point elsewhere), and the host tool
folders at the top (`.venv`, `.vscode`...: a `.pth` or a task there would run on the host next). The
sandbox sees copies of every git config without credentials (a CI checkout leaves its token there,
for the superproject and for each submodule).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from agent_cli.gitops import checked_out_submodules, sanitized_config
from agent_cli.sandbox.identity import WORKSPACE
from agent_cli.workspace import HOST_TOOL_FOLDERS

CONFIG_NAMES = ("config", "config.worktree")

Binds = dict[str, dict[str, str]]


def workspace_binds(repo: Path, private: Path, *, read_only: bool = False) -> Binds:
    """The docker binds of a sandbox on `repo`; sanitized config copies are written to `private`, a
    folder of the host's that only this sandbox uses. `read_only` mounts the working tree read-only
    too (plan mode: the model looks, and changes nothing)."""
    binds: Binds = {str(repo): {"bind": WORKSPACE, "mode": "ro" if read_only else "rw"}}
    git_entry = repo / ".git"
    if git_entry.is_file():
        # A worktree: its .git file names a git dir by absolute path, so the repository's git dir
        # appears read-only at that same path (the worktree itself lives inside it, under actsmith/).
        binds[str(git_entry)] = {"bind": f"{WORKSPACE}/.git", "mode": "ro"}
        common = _common_git_dir(git_entry)
        binds[str(common)] = {"bind": str(common), "mode": "ro"}
        inside_common = str(common)
    elif git_entry.exists():
        common = git_entry
        binds[str(git_entry)] = {"bind": f"{WORKSPACE}/.git", "mode": "ro"}
        inside_common = f"{WORKSPACE}/.git"
    else:
        return binds
    for number, config in enumerate(_configs_under(common)):
        copy = private / f"gitconfig-{number}"
        copy.write_text(sanitized_config(config))
        copy.chmod(0o644)  # nothing secret left in it; the sandbox's uid must read it
        binds[str(copy)] = {"bind": f"{inside_common}/{config.relative_to(common).as_posix()}", "mode": "ro"}
    for path in _submodule_git_entries(repo):
        binds[str(repo / path)] = {"bind": f"{WORKSPACE}/{path}", "mode": "ro"}
    for name in HOST_TOOL_FOLDERS:
        folder = repo / name
        if folder.exists() and not folder.is_symlink():
            binds[str(folder)] = {"bind": f"{WORKSPACE}/{name}", "mode": "ro"}
    return binds


def _configs_under(common: Path) -> Iterator[Path]:
    """Every config file of the repository's git dirs: its own, its worktrees', its submodules' (at
    any depth, `modules/<name>/`, names may hold slashes)."""
    for git_dir in _git_dirs(common):
        for name in CONFIG_NAMES:
            if (git_dir / name).is_file():
                yield git_dir / name


def _git_dirs(git_dir: Path) -> Iterator[Path]:
    yield git_dir
    worktrees = git_dir / "worktrees"
    if worktrees.is_dir():
        for entry in sorted(worktrees.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                yield from _git_dirs(entry)
    modules = git_dir / "modules"
    for folder, children, _files in os.walk(modules):
        here = Path(folder)
        if (here / "HEAD").is_file():
            children.clear()  # a git dir: its own modules/ and worktrees/ are walked from it
            yield from _git_dirs(here)
        else:
            children.sort()


def _submodule_git_entries(
    repo: Path, root: Path | None = None, git_dir: Path | None = None
) -> Iterator[str]:
    """`.git` of every checked-out submodule, at any depth, relative to the repository."""
    for path, sub_git_dir in checked_out_submodules(root or repo, git_dir):
        yield f"{path.relative_to(repo).as_posix()}/.git"
        yield from _submodule_git_entries(repo, path, sub_git_dir)


def _worktree_git_dir(git_file: Path) -> Path:
    gitdir = Path(git_file.read_text().removeprefix("gitdir:").strip())
    return gitdir if gitdir.is_absolute() else (git_file.parent / gitdir).resolve()


def _common_git_dir(git_file: Path) -> Path:
    """The main git dir of a worktree, read from its .git file and the worktree dir's commondir."""
    worktree_dir = _worktree_git_dir(git_file)
    common = worktree_dir / "commondir"
    return (worktree_dir / common.read_text().strip()).resolve() if common.exists() else worktree_dir
