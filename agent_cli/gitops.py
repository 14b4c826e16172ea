"""The one git layer: gitpython's `Repo` for repository-level work, `git()` for plumbing.

Both run git hardened. Code in the sandbox writes the working tree, so whatever lies there is data,
never configuration the host obeys: git on the host runs no fsmonitor or hooks, recurses into no
submodule on its own, reads attributes from an empty tree rather than the working tree's
.gitattributes (`exact`), is given a submodule's git dir explicitly rather than finding it through
a `.git` file the sandbox could rewrite, and refuses a config that includes a file from the working
tree (`check_config_origins`). The repository's own git dir is mounted read-only in the sandbox.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import ActsmithError, UsageError

if TYPE_CHECKING:
    import git as gitpython

HARDENED_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null", "submodule.recurse=false")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GITLINK = "160000"  # the mode of a submodule entry
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


def git_command(
    root: Path, *args: str, exact: bool = True, git_dir: Path | None = None, attr_source: str | None = None
) -> list[str]:
    """The argv of a hardened git command in `root`. `exact` turns off attributes, filters and
    line-ending conversion, so what git stores is the bytes on disk. `git_dir` names the repository
    outright (a submodule's, resolved before the sandbox started), so a `.git` file in `root` is
    never read. `attr_source` (with `exact` off) applies the attributes of a commit the user made, not
    the working tree's .gitattributes, which the sandbox writes."""
    options = [option for pair in HARDENED_CONFIG for option in ("-c", pair)]
    options += ["-c", f"safe.directory={root}"]
    if git_dir is not None:
        options += ["-c", f"safe.directory={git_dir}", f"--git-dir={git_dir}", f"--work-tree={root}"]
    if exact:
        options += [option for pair in EXACT_BYTES for option in ("-c", pair)]
        attr_source = EMPTY_TREE
    if attr_source is not None and _attr_source_supported():
        options.append(f"--attr-source={attr_source}")
    return ["git", *options, *args]


def git(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    exact: bool = True,
    git_dir: Path | None = None,
    attr_source: str | None = None,
) -> bytes:
    """Run a hardened git command in `root` and return its stdout; a failure is a `GitError`."""
    proc = subprocess.run(
        git_command(root, *args, exact=exact, git_dir=git_dir, attr_source=attr_source),
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


def has_ref(root: Path, ref: str, *, git_dir: Path | None = None) -> bool:
    try:
        git(root, "rev-parse", "--verify", "-q", ref, git_dir=git_dir)
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


def check_config_origins(root: Path) -> None:
    """Refuse a repository whose git config includes a file inside its working tree (an
    `include.path` such as `../.gitconfig`): the sandbox writes there, and such a file could name
    filters, a credential helper or an ssh command that host git would then run."""
    try:
        out = git(root, "config", "--list", "--show-origin", "--includes", "-z", exact=False)
    except GitError:
        return
    tree, own_git_dir = root.resolve(), (root / ".git").resolve()
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    for origin, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = entry.partition("\n")
        name = key.lower()
        if not origin.startswith("file:") or not (name == "include.path" or name.startswith("includeif.")):
            continue
        if not name.endswith(".path") or not value:
            continue
        included = Path(os.path.expanduser(value))
        if not included.is_absolute():
            included = (root / origin.removeprefix("file:")).parent / included
        resolved = included.resolve()
        if tree in resolved.parents and own_git_dir not in resolved.parents:
            raise UsageError(
                f"git config includes {resolved.relative_to(tree)}, a file inside the working tree that "
                "the sandbox can write; remove that include (git config --unset include.path) to run actsmith here"
            )


def submodule_git_dir(root: Path, path: str, common_dir: Path) -> Path | None:
    """The git dir of the submodule checked out at `path`, resolved from the host before the sandbox
    runs: a `.git` folder of its own, or a `gitdir:` file naming a folder inside the repository's
    common git dir (`modules/...`, which the sandbox sees read-only). Anything else is None: the
    folder is then content, never a repository host git runs in."""
    entry = root / path / ".git"
    if entry.is_symlink():
        return None
    if entry.is_dir():
        return entry.resolve()
    if not entry.is_file():
        return None
    text = entry.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    resolved = (target if target.is_absolute() else entry.parent / target).resolve()
    common = common_dir.resolve()
    if common not in resolved.parents or not (resolved / "HEAD").is_file():
        return None
    return resolved


def checked_out_submodules(root: Path, git_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """The working tree and git dir of each submodule that is checked out, resolved now, before the
    sandbox can rewrite a `.git` file: from then on host git is told the git dir, never finds it."""
    out = git(root, "ls-files", "-z", "--stage", git_dir=git_dir).decode("utf-8", "surrogateescape")
    common = Path(
        git(root, "rev-parse", "--path-format=absolute", "--git-common-dir", git_dir=git_dir).decode().strip()
    )
    found = []
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith(GITLINK) and (sub_git_dir := submodule_git_dir(root, path, common)) is not None:
            found.append((root / path, sub_git_dir))
    return found
