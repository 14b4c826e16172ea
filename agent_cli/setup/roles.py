"""The role a file, extra, group or test environment has, from the words of its name: the tests',
development, the project's own, or one never chosen unless configured (docs, CI tooling, release...).
"""

from __future__ import annotations

import re
from pathlib import Path

TEST_WORDS = frozenset({"test", "tests", "testing"})
DEV_WORDS = frozenset({"dev", "develop", "development"})
BASE_WORDS = frozenset(
    {"requirements", "requirement", "reqs", "base", "default", "main", "common", "core", "install", "runtime"}
)
# Words that leave a file, extra or group out (unless configured), and why.
LEFT_OUT = {
    **dict.fromkeys(("docs", "doc", "documentation", "sphinx", "mkdocs"), "documentation"),
    "insiders": "sponsor-only packages (insiders)",
    **dict.fromkeys(("ci", "github", "actions", "gha", "workflows"), "CI tooling"),
    **dict.fromkeys(
        ("release", "publish", "deploy", "dist", "packaging", "pkgutils", "upload", "build"),
        "release tooling",
    ),
    **dict.fromkeys(("lint", "linting", "linters", "style", "precommit"), "linting"),
    **dict.fromkeys(("typing", "typecheck", "typechecking", "mypy", "pyright", "types"), "type checking"),
    **dict.fromkeys(("bench", "benchmark", "benchmarks", "perf", "codspeed"), "benchmarks"),
    **dict.fromkeys(("translations", "i18n"), "translations"),
    **dict.fromkeys(
        ("windows", "win", "win32", "macos", "osx", "darwin", "pypy", "pypy3", "jython", "freebsd"),
        "a platform-specific variant",
    ),
    **dict.fromkeys(("integration", "e2e", "smoke", "system"), "tests that need services"),
    **dict.fromkeys(
        ("min", "minimum", "oldest", "lowest", "upstream", "nightly"), "a dependency-versions variant"
    ),
    **dict.fromkeys(("cov", "coverage"), "coverage reporting"),
    "constraints": "a constraints file (applied where a chosen file names it)",
}
PY_VERSION = re.compile(r"^py\d*$")


def words_of(name: str) -> list[str]:
    return [w for w in re.split(r"[-_.\s]+", name.lower()) if w]


def left_out(name: str) -> str | None:
    """Why a file, extra or group name is never chosen on its own, or None."""
    lowered = name.lower()
    if "pre-commit" in lowered or "pre_commit" in lowered:
        return LEFT_OUT["precommit"]
    words = words_of(name)
    if "insiders" in words:  # sponsor-only docs tooling: the more telling reason
        return LEFT_OUT["insiders"]
    return next((LEFT_OUT[w] for w in words if w in LEFT_OUT), None)


def file_role(name: str) -> tuple[str, str]:
    """(test | dev | base | out, why) for a requirements file, from its name and folder."""
    path = Path(name)
    stem = path.name.rsplit(".", 1)[0]
    why = left_out(stem)
    if why:
        return "out", why
    words = set(words_of(stem))
    if words & TEST_WORDS:
        return "test", "the tests' requirements"
    in_tests = bool({"test", "tests"} & set(path.parts[:-1]))
    neutral = all(w in BASE_WORDS or PY_VERSION.match(w) for w in words)
    if in_tests:
        if neutral:
            return "test", "the tests' requirements (in the tests' folder)"
        return "out", f"a variant of the tests' requirements ({stem}: needs its own service or platform)"
    if words & DEV_WORDS:
        return "dev", "development requirements"
    if neutral:
        return "base", "the project's requirements"
    return "out", "not named for the tests, development or the project"
