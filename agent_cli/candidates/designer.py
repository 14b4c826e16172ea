"""The test designer (AgentCoder's role): before any attempt starts, a session of its own reads the
task and the repository and writes tests for the behaviour the task asks for. It runs with no test
gate (its tests are meant to fail on the base), and its finish() is taken as it is. The test files
it created or changed are the designed tests: committed on the base, where every attempt starts,
and protected there (an attempt's change to them is undone after its step)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.candidates.gitrefs import commit_tree, read_file
from agent_cli.checkpoints import IDENTITY, blobs, tree_with
from agent_cli.repomap.graph import is_test_file
from agent_cli.templates import render
from agent_cli.testing.detect import configured_command, detect_test_command
from agent_cli.workspace import Workspace

if TYPE_CHECKING:
    from agent_cli.settings import Settings

ACCEPTED = ("finished", "finished_untested")  # how a designer that called finish() ends
COPIES = "designed-tests"  # the run folder's copy of the designed tests


@dataclass(frozen=True)
class DesignedTests:
    status: str  # the designer session's
    message: str
    files: list[str]  # the test files it wrote (none when it did not finish)
    commit: str | None  # the base with those files added, where the attempts start


def designer_settings(settings: Settings) -> Settings:
    """The designer's own model, and no gate: its tests are meant to fail before the change."""
    return replace(
        settings, model=settings.test_designer_model or settings.model, tests=False, temperature=None
    )


def designer_task(task: str, root: Path, settings: Settings) -> str:
    command = configured_command(settings.test_cmd) if settings.test_cmd else detect_test_command(root)
    return render("design_tests", task=task, test_command=command.command if command else None)


def designed_files(root: Path, base_tree: str, tip: str) -> list[str]:
    """The test files the designer's work created or changed (and did not delete)."""
    touched = Workspace(root, root).changed_files(base_tree, tip)
    present = blobs(root, tip, touched)
    return [path for path in touched if path in present and is_test_file(path)]


def commit_designed(root: Path, base: str, base_tree: str, tip: str, files: list[str], task: str) -> str:
    """The base with the designed tests: the commit every attempt starts from."""
    tree = tree_with(root, base_tree, tip, files)
    message = render("designed_tests_commit", task=" ".join(task.split()), files=files)
    return commit_tree(root, tree, base, message, IDENTITY)  # scratch work, by actsmith


def save_copies(root: Path, tip: str, files: list[str], folder: Path) -> None:
    """The designed tests in the run folder, where they stay unless --keep-designed-tests applies them."""
    for path in files:
        target = folder / COPIES / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_file(root, tip, path))
