"""Find a repository's test command: the configured one, else one detected per ecosystem.

Detection only reads files on the host; nothing runs. The order is Python (pytest, then unittest),
npm (or yarn/pnpm) scripts, Go, Cargo, then a Makefile `test` target; the first ecosystem found wins
and the others are named in the reason, so the user knows what to configure instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent_cli.safe_paths import read_text

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".actsmith",
    ".venv",
    "venv",
    "env",
    ".tox",
    ".nox",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "build",
    "dist",
    "target",
    "vendor",
    "site-packages",
}
MAX_FILES_SCANNED = 20_000
HEAD_BYTES = 16_384  # enough of a test file to see its imports
MAX_SELECTED = 50  # more failing tests than this: rerun the whole suite instead of naming them
NPM_PLACEHOLDER = "no test specified"  # the test script `npm init` writes


@dataclass(frozen=True)
class TestCommand:
    """A shell command that runs the tests from the repository root, and why it was chosen."""

    __test__ = False

    command: str
    kind: str  # pytest | unittest | npm | go | cargo | make | custom
    reason: str
    configured: bool = False

    def select(self, ids: Sequence[str]) -> str | None:
        """This command limited to some tests (failing tests first), or None when it cannot be."""
        if not ids or len(ids) > MAX_SELECTED or self.configured:
            return None
        selectors: dict[str, Callable[[Sequence[str]], str]] = {
            "pytest": self._select_pytest,
            "go": self._select_go,
            "cargo": self._select_cargo,
        }
        select = selectors.get(self.kind)
        return select(ids) if select else None

    def _select_pytest(self, ids: Sequence[str]) -> str:
        return f"{self.command} {' '.join(shlex.quote(i) for i in ids)}"

    def _select_go(self, ids: Sequence[str]) -> str:
        # ids are package::TestName[/subtest]; -run takes top-level names, packages narrow the run.
        packages = sorted({i.partition("::")[0] for i in ids})
        names = sorted({i.partition("::")[2].split("/")[0] for i in ids if "::" in i})
        pattern = f"^({'|'.join(re.escape(n) for n in names)})$" if names else "."
        return f"go test -json -run {shlex.quote(pattern)} {' '.join(shlex.quote(p) for p in packages)}"

    def _select_cargo(self, ids: Sequence[str]) -> str:
        return f"{self.command} -- --exact {' '.join(shlex.quote(i) for i in ids)}"


def configured_command(command: str) -> TestCommand:
    return TestCommand(command, kind_of(command), "configured (test_cmd)", configured=True)


def kind_of(command: str) -> str:
    """Which parser a configured command's output likely needs (pytest is caught by JUnit anyway)."""
    words = command.split()
    if "pytest" in command:
        return "pytest"
    if "unittest" in words:
        return "unittest"
    if words[:2] == ["go", "test"]:
        return "go"
    if words[:2] == ["cargo", "test"]:
        return "cargo"
    return "custom"


def detect_test_command(root: Path) -> TestCommand | None:
    """The first ecosystem whose tests this repository has; the reason names any others found."""
    tree = RepoFiles.scan(root)
    found = [command for detect in DETECTORS if (command := detect(tree)) is not None]
    if not found:
        return None
    first, others = found[0], found[1:]
    if not others:
        return first
    also = "; ".join(f"`{o.command}` ({o.reason})" for o in others)
    return TestCommand(first.command, first.kind, f"{first.reason}; also found {also}")


@dataclass(frozen=True)
class RepoFiles:
    """The repository's file names (relative, `/`-separated), build dirs and dependencies left out."""

    root: Path
    files: frozenset[str]

    @classmethod
    def scan(cls, root: Path) -> RepoFiles:
        files: set[str] = set()
        for directory, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            relative = os.path.relpath(directory, root)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            files.update(prefix + name for name in names)
            if len(files) >= MAX_FILES_SCANNED:
                break
        return cls(root, frozenset(files))

    def has(self, name: str) -> bool:
        return name in self.files

    def read(self, name: str, limit: int | None = None) -> str:
        try:
            return read_text(self.root, name, limit, follow_inside=True)
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------- Python

PYTHON_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
UNITTEST_FILE = re.compile(r"(^|/)test[^/]*\.py$")  # what `unittest discover` finds by default
IMPORTS_PYTEST = re.compile(r"^\s*(import pytest|from pytest\b|from _pytest\b)", re.MULTILINE)
IMPORTS_UNITTEST = re.compile(r"^\s*(import unittest|from unittest\b)", re.MULTILINE)
PYTEST_CONFIG = (
    ("pytest.ini", None, "found pytest.ini"),
    ("pyproject.toml", "[tool.pytest", "pyproject.toml configures pytest"),
    ("setup.cfg", "[tool:pytest]", "setup.cfg configures pytest"),
    ("tox.ini", "[pytest]", "tox.ini configures pytest"),
)
DEPENDENCY_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "Pipfile", "tox.ini", "noxfile.py")
PYTEST_DEPENDENCY = re.compile(r"""(^|["'\s,\[])pytest([<>=!~;\[\s"',\]]|$)""", re.MULTILINE)


def detect_python(tree: RepoFiles) -> TestCommand | None:
    tests = sorted(f for f in tree.files if PYTHON_TEST_FILE.search(f))
    reason = _pytest_reason(tree, tests)
    if reason:
        return TestCommand("python3 -m pytest -q", "pytest", reason)
    unittest_files = [f for f in tests if UNITTEST_FILE.search(f)]
    if unittest_files and all(IMPORTS_UNITTEST.search(tree.read(f, HEAD_BYTES)) for f in unittest_files):
        return TestCommand(
            _unittest_command(tree, unittest_files), "unittest", "tests use unittest, not pytest"
        )
    if tests:
        return TestCommand("python3 -m pytest -q", "pytest", f"found Python tests such as {tests[0]}")
    return None


def _pytest_reason(tree: RepoFiles, tests: list[str]) -> str | None:
    for name, marker, reason in PYTEST_CONFIG:
        if tree.has(name) and (marker is None or marker in tree.read(name)):
            return reason
    conftests = sorted(f for f in tree.files if f.rsplit("/", 1)[-1] == "conftest.py")
    if conftests:
        return f"found {conftests[0]}"
    for test in tests:
        if IMPORTS_PYTEST.search(tree.read(test, HEAD_BYTES)):
            return f"{test} imports pytest"
    requirements = sorted(f for f in tree.files if re.fullmatch(r"[^/]*requirements[^/]*\.(txt|in)", f))
    for name in (*DEPENDENCY_FILES, *requirements):
        if tree.has(name) and PYTEST_DEPENDENCY.search(tree.read(name)):
            return f"pytest is a dependency in {name}"
    return None


def _unittest_command(tree: RepoFiles, files: list[str]) -> str:
    """`unittest discover` only enters packages: tests in a plain folder need `-s folder`."""
    command = "python3 -m unittest discover -v"
    folders = {f.split("/")[0] if "/" in f else "" for f in files}
    if len(folders) == 1 and (folder := folders.pop()) and not tree.has(f"{folder}/__init__.py"):
        command += f" -s {shlex.quote(folder)}"
    return command


# ------------------------------------------------------------------------------------- other ecosystems


def detect_npm(tree: RepoFiles) -> TestCommand | None:
    if not tree.has("package.json"):
        return None
    try:
        scripts = json.loads(tree.read("package.json")).get("scripts") or {}
    except (ValueError, AttributeError):
        return None
    script = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(script, str) or not script.strip() or NPM_PLACEHOLDER in script:
        return None
    tool = "pnpm" if tree.has("pnpm-lock.yaml") else "yarn" if tree.has("yarn.lock") else "npm"
    return TestCommand(f"{tool} test", "npm", f"package.json has a test script: {script.strip()[:80]}")


def detect_go(tree: RepoFiles) -> TestCommand | None:
    marker = "go.work" if tree.has("go.work") else "go.mod" if tree.has("go.mod") else None
    if marker is None:
        return None
    return TestCommand("go test -json ./...", "go", f"found {marker}")


def detect_cargo(tree: RepoFiles) -> TestCommand | None:
    if not tree.has("Cargo.toml"):
        return None
    # --no-fail-fast: one failing test binary must not hide the results of the others.
    return TestCommand("cargo test --no-fail-fast", "cargo", "found Cargo.toml")


MAKE_TEST_TARGET = re.compile(r"^test\s*:(?!=)", re.MULTILINE)


def detect_make(tree: RepoFiles) -> TestCommand | None:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        if tree.has(name) and MAKE_TEST_TARGET.search(tree.read(name)):
            return TestCommand("make test", "make", f"{name} has a test target")
    return None


DETECTORS: tuple[Callable[[RepoFiles], TestCommand | None], ...] = (
    detect_python,
    detect_npm,
    detect_go,
    detect_cargo,
    detect_make,
)
