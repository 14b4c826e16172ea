"""Protected paths: globs of files the agent may not change, whatever it is told or decides.

A step's change to a protected path is undone by the harness right after the step (see
`Ledger.record_step`), so no checkpoint, commit, branch, patch or pull request ever holds it, and
the model is told in that step's observation. Globs are matched against the path from the
repository root: `*` and `?` stay within one folder, `**` crosses folders, a trailing `/**` covers
everything under a folder, a glob without a `/` matches a file name at any depth (`*.lock`), and a leading `/` anchors it at
the root (`/config.toml`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

ALWAYS = (".git/**",)  # git never stores these, and the sandbox sees .git read-only: said for clarity
WORKFLOWS = ".github/workflows/**"  # protected in CI unless the workflow allows changes to itself


@dataclass(frozen=True)
class ProtectedPaths:
    globs: tuple[str, ...] = ()

    @classmethod
    def of(cls, configured: tuple[str, ...] | None, *, workflows: bool = False) -> ProtectedPaths:
        extra = (WORKFLOWS,) if workflows else ()
        return cls(tuple(dict.fromkeys([*ALWAYS, *extra, *(configured or ())])))

    @cached_property
    def _patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(glob, _compile(glob)) for glob in self.globs]

    def match(self, path: str) -> str | None:
        """The glob that protects `path`, or None."""
        for glob, pattern in self._patterns:
            if pattern.fullmatch(path):
                return glob
        return None


def _compile(glob: str) -> re.Pattern[str]:
    glob = glob.strip()
    anywhere = "/" not in glob.rstrip("/")  # a leading `/` anchors a name at the root
    glob = glob.lstrip("/")
    glob = glob + "**" if glob.endswith("/") else glob
    parts, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    body = "".join(parts)
    return re.compile(f"(?:.*/)?{body}" if anywhere else body)
