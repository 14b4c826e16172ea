"""The repository files setup reads: found without following a link out of the repository, and
followed through what they name (requirements including others, local projects, build backends).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from agent_cli import safe_paths

REQUIREMENTS = re.compile(r"^requirements[\w.-]*\.(txt|in)$")
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
# A requirements line naming another file (`-r base.txt`, `--constraint=c.txt`) or a local project
# (`-e ./pkg`, `./pkg[extra]`, `file:./pkg`).
INCLUDE = re.compile(r"^(?:-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?=[^\s-]))(\S+)")
LOCAL_PROJECT = re.compile(r"^(?:(?:-e|--editable)(?:\s*=\s*|\s+))?(?:file:)?(\.{1,2}(?:/\S*)?)$")


def setup_inputs(root: Path, manifests: Iterable[str]) -> list[str]:
    """Every repository file setup reads that its manifests name: the manifests, the files their
    requirements include (-r, -c), the local projects they install (-e ./pkg) and a local build
    backend ([build-system] backend-path), so a change to any of them makes a new environment."""
    found: list[str] = []
    pending = list(manifests)
    while pending:
        name = pending.pop(0)
        if name in found:
            continue
        found.append(name)
        if name.endswith((".txt", ".in")):
            pending += _requirement_inputs(root, name)
        elif Path(name).name == "pyproject.toml":
            pending += _backend_inputs(root, Path(name).parent)
    return found


def repository_path(root: Path, name: str) -> Path | None:
    """`root/name` when `name` stays inside the repository, without following a symbolic link out
    of it (a link's own text is what setup's copy of the repository holds)."""
    normal = os.path.normpath(name)
    if os.path.isabs(normal) or normal == ".." or normal.startswith("../"):
        return None
    path = root / normal
    if path.is_symlink() or not path.exists():
        return path
    return path if path.resolve().is_relative_to(root.resolve()) else None


def read_input(root: Path, name: str) -> bytes:
    """What setup finds at `name` in its copy of the repository: the file's bytes, a link's target."""
    path = repository_path(root, name)
    if path is None:
        return b"(outside the repository)"
    if path.is_symlink():
        return b"symlink:" + os.fsencode(os.readlink(path))
    try:  # a folder on the way may have been swapped for a link since: read without following one out
        return safe_paths.read_bytes(root, path.relative_to(root).as_posix(), follow_inside=True)
    except OSError:
        return b""


def _requirement_inputs(root: Path, name: str) -> list[str]:
    """The files and local projects a requirements file names. Included files are relative to the
    file naming them; local projects to the repository root, where setup runs pip."""
    named = included_files(root, name)
    for line in requirement_lines(root, name):
        local = LOCAL_PROJECT.match(re.sub(r"\[.*\]$", "", line))
        if local:
            folder = os.path.normpath(local.group(1))
            named += [os.path.normpath(f"{folder}/{file}") for file in PROJECT_FILES]
    return [name for name in named if repository_path(root, name) is not None]


def _backend_inputs(root: Path, project: Path) -> list[str]:
    """The module files of an in-tree build backend (`backend-path = ["_build"]`, `build-backend =
    "backend"`), not every file of its folder (often the project's root)."""
    try:
        system = tomllib.loads(read_input(root, str(project / "pyproject.toml")).decode()).get("build-system")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    if not isinstance(system, dict) or not isinstance(system.get("backend-path"), list):
        return []
    module = str(system.get("build-backend") or "").split(":")[0].replace(".", "/")
    files = []
    for folder in system["backend-path"]:
        if not module or not isinstance(folder, str):
            continue
        base = project / folder / module
        files += [os.path.normpath(f"{base}.py"), os.path.normpath(f"{base}/__init__.py")]
    return [name for name in files if repository_path(root, name) is not None]


# A line that needs a VCS host or credentials: `git+https://...`, `${TOKEN}`, `https://user@host/...`.
NEEDS_ACCESS = re.compile(r"(^|[\s@=])(git|hg|svn|bzr)\+|\$\{?\w+|://[^/\s]*@")


def requirement_lines(root: Path, name: str) -> list[str]:
    """A requirements file's lines, comments and blank lines left out."""
    text = read_input(root, name).decode(errors="replace")
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def included_files(root: Path, name: str) -> list[str]:
    """The files a requirements file includes (-r, -c), relative to it, as repository paths."""
    found = []
    for line in requirement_lines(root, name):
        include = INCLUDE.match(line)
        if include:
            path = os.path.normpath(str(Path(name).parent / include.group(1)))
            if repository_path(root, path) is not None:
                found.append(path)
    return found


def with_includes(root: Path, names: Iterable[str]) -> list[str]:
    """The files and every file they include, transitively, each once."""
    found: list[str] = []
    pending = list(names)
    while pending:
        name = pending.pop(0)
        if name not in found:
            found.append(name)
            pending += included_files(root, name)
    return found


def installs_the_project(root: Path, names: Iterable[str]) -> str | None:
    """The line with which these files (or those they include) install the repository's own project
    (`-e .[all]`), if one does."""
    for name in with_includes(root, names):
        for line in requirement_lines(root, name):
            local = LOCAL_PROJECT.match(re.sub(r"\[.*\]$", "", line))
            if local and os.path.normpath(local.group(1)) == ".":
                return line
    return None


def lines_needing_access(root: Path, names: Iterable[str]) -> list[str]:
    return [
        line
        for name in with_includes(root, names)
        for line in requirement_lines(root, name)
        if NEEDS_ACCESS.search(line)
    ]
