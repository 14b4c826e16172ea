"""The one git layer: gitpython's `Repo` for repository-level work, `git()` for plumbing.

Both run git hardened: code in the sandbox can write to the working tree (and, through it, try to
plant config), so git on the host never runs anything a repository names (fsmonitor, hooks), and
checkpoints see the exact bytes on disk (no attributes, filters or line-ending conversion).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import ActsmithError

if TYPE_CHECKING:
    import git as gitpython

HARDENED_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
EXACT_BYTES = ("core.autocrlf=false", "core.safecrlf=false", "core.attributesFile=/dev/null")


class GitError(ActsmithError):
    """A git command failed; the message is git's own last line."""


@cache
def _attr_source_supported() -> bool:
    """`--attr-source` (git 2.40+) keeps the tree's own .gitattributes from converting bytes."""
    out = subprocess.run(["git", "version"], capture_output=True, text=True).stdout.split()
    try:
        major, minor = (int(part) for part in out[2].split(".")[:2])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (2, 40)


def git_command(root: Path, *args: str, exact: bool = True) -> list[str]:
    """The argv of a hardened git command in `root`. `exact` turns off attributes, filters and
    line-ending conversion, so what git stores is the bytes on disk."""
    options = [option for pair in HARDENED_CONFIG for option in ("-c", pair)]
    options += ["-c", f"safe.directory={root}"]
    if exact:
        options += [option for pair in EXACT_BYTES for option in ("-c", pair)]
        if _attr_source_supported():
            options.append(f"--attr-source={EMPTY_TREE}")
    return ["git", *options, *args]


def git(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    exact: bool = True,
) -> bytes:
    """Run a hardened git command in `root` and return its stdout; a failure is a `GitError`."""
    proc = subprocess.run(
        git_command(root, *args, exact=exact),
        cwd=root,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else proc.returncode}")
    return proc.stdout


def open_repo(path: Path, *, search_parents: bool = False) -> gitpython.Repo:
    """gitpython's handle on the repository at `path`, running git hardened. Paths are literal:
    gitpython would otherwise expand `$VARS` in them."""
    import git as gitpython

    repo = gitpython.Repo(path, search_parent_directories=search_parents, expand_vars=False)
    repo.git.set_persistent_git_options(c=[*HARDENED_CONFIG, f"safe.directory={repo.working_tree_dir}"])
    return repo


def has_ref(root: Path, ref: str) -> bool:
    try:
        git(root, "rev-parse", "--verify", "-q", ref)
    except GitError:
        return False
    return True


def nul_joined(paths: list[str]) -> bytes:
    """Paths for git's `-z --stdin` options; names that are not UTF-8 survive the round trip."""
    return "\0".join(paths).encode("utf-8", "surrogateescape")


# Config a copy given to the sandbox leaves out: what can carry credentials or name programs to run.
_UNSAFE_CONFIG = re.compile(
    r"^(http|https|credential|include|includeif|url)\.|\.(extraheader|token|password)$", re.I
)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def sanitized_config(path: Path) -> str:
    """A git config file with nothing a credential could hide in: no http.* (the extraheader
    actions/checkout leaves), credential.*, url.* or include.*, and no user:token@ in remote URLs."""
    path = path.resolve()
    try:
        out = git(path.parent, "config", "--file", str(path), "--list", "-z", exact=False)
    except GitError:
        return ""
    sections: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        key, _, value = entry.partition("\n")
        if not key or _UNSAFE_CONFIG.search(key):
            continue
        section, _, rest = key.partition(".")
        subsection, _, name = rest.rpartition(".")
        sections.setdefault((section, subsection), []).append((name, _URL_USERINFO.sub("", value)))
    lines = []
    for (section, subsection), entries in sections.items():  # subsection "" for none
        lines.append(f'[{section} "{_quoted(subsection)}"]' if subsection else f"[{section}]")
        lines += [f'\t{name} = "{_quoted(value)}"' for name, value in entries]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
