"""The repo map: the shape of a repository (files, then the signatures of their most central
definitions) in a small token budget, for the model's first prompt and for `actsmith map`.

  1. files.py   lists files with git (.gitignore holds), drops vendored, generated, minified, binary
                and huge ones, tags the rest with agent_cli.syntax (in worker processes when there
                are many), and caches tags on disk by content hash.
  2. graph.py   ranks definitions by personalised PageRank over the reference graph, updated
                incrementally after each edit.
  3. render.py  prints the best definitions grouped by file, within the token budget.
  4. mapper.py  RepoMap ties them together and keeps the state between re-maps.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.repomap.graph import RankedDefinition
from agent_cli.repomap.mapper import RepoMap, ScanStats
from agent_cli.repomap.render import CHARS_PER_TOKEN, estimate_tokens, format_outline

if TYPE_CHECKING:
    from agent_cli.workspace import Workspace

__all__ = [
    "CHARS_PER_TOKEN",
    "RankedDefinition",
    "RepoMap",
    "ScanStats",
    "estimate_tokens",
    "focus_from_text",
    "format_outline",
    "repo_map",
    "repository_context",
]

_PATHLIKE = re.compile(r"[\w./-]*\w\.[A-Za-z][\w+]*|[\w.-]+(?:/[\w.-]+)+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def focus_from_text(text: str) -> tuple[set[str], set[str]]:
    """File names and identifiers a task mentions. Many will match nothing (plain words); the map
    ignores those, and a word that happens to name a definition is a fair hint anyway."""
    files = {match.rstrip(".") for match in _PATHLIKE.findall(text)}
    # Identifiers outside the paths ("fix getLogger in logging/__init__.py" names getLogger, not
    # logging or __init__); dunders like __init__ name a method of every class, so none in particular.
    words = _PATHLIKE.sub(" ", text)
    names = {name for name in _IDENTIFIER.findall(words) if not name.startswith("__")}
    for dotted in re.findall(r"\w+(?:\.\w+)+", text):  # Parser.parse -> Parser, parse
        names.update(part for part in dotted.split(".") if len(part) >= 3 and not part.startswith("__"))
    return files, names


def repo_map(
    root: Path, max_tokens: int = 1024, focus_files: Iterable[str] = (), focus_names: Iterable[str] = ()
) -> str:
    """A one-shot map of the repository at `root` (the disk cache makes the next one fast)."""
    with RepoMap(root) as mapper:
        return mapper.render(max_tokens, focus_files, focus_names)


def repository_context(
    workspace: Workspace,
    task: str,
    max_tokens: int,
    log: Callable[[str], None] | None = None,
    mapper: RepoMap | None = None,
) -> str:
    """The repository part of the first prompt: the map focused on what the task mentions, or the
    short summary when the map is off (max_tokens 0), empty, or cannot be built. Pass the run's
    `mapper` to keep its state for later refreshes."""
    if max_tokens > 0:
        started = time.monotonic()
        files, names = focus_from_text(task)
        try:
            own = mapper is None
            mapper = mapper or RepoMap(workspace.root)
            try:
                text = mapper.render(max_tokens, files, names)
                parsed = mapper.stats.parsed
            finally:
                if own:
                    mapper.close()
        except (OSError, subprocess.CalledProcessError, sqlite3.Error) as error:
            text, parsed = "", 0
            if log:
                log(f"repo map unavailable ({error}); using the short summary")
        if log and parsed > 200:
            log(
                f"repo map: parsed {parsed} files in {time.monotonic() - started:.1f}s (cached for next time)"
            )
        if text:
            from agent_cli.templates import render

            return render("repo_map", summary=workspace.summary(), outline=text.rstrip("\n"))
    return workspace.summary()
