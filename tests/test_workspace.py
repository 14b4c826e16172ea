"""The git side of a run, on real repositories."""

import subprocess
from pathlib import Path

import pytest
from conftest import git, make_repo

from agent_cli.checkpoints import RunCheckpoints
from agent_cli.errors import UsageError
from agent_cli.workspace import Workspace


def snapshot(workspace: Workspace) -> str:
    return RunCheckpoints.for_run(workspace, workspace.reserve_run_id("task"), "task").snapshot()


def test_snapshot_never_runs_commands_the_repository_config_names(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    canary = tmp_path / "ran"
    script = tmp_path / "monitor.sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}\n")
    script.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(script))
    (repo / "b.txt").write_text("new\n")
    snapshot(Workspace.open(repo))
    assert not canary.exists()


def test_snapshot_includes_untracked_files_and_leaves_the_index_alone(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    (repo / "a.txt").write_text("changed\n")
    (repo / "new.txt").write_text("untracked\n")
    status_before = git(repo, "status", "--porcelain")
    workspace = Workspace.open(repo)
    tree = snapshot(workspace)
    assert git(repo, "show", f"{tree}:new.txt") == "untracked\n"
    assert git(repo, "show", f"{tree}:a.txt") == "changed\n"
    assert git(repo, "status", "--porcelain") == status_before


def test_a_subdirectory_opens_the_whole_repository(tmp_path):
    repo = make_repo(tmp_path / "r", {"pkg/mod.py": "x = 1\n"})
    assert Workspace.open(repo / "pkg").root == repo


def test_a_plain_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a git repository"):
        Workspace.open(tmp_path)


def test_a_repository_owned_by_another_user_still_opens(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    subprocess.run(["chown", "-R", "12345:12345", str(repo)], check=True)
    workspace = Workspace.open(repo)
    assert snapshot(workspace)
    assert "1 tracked files" in workspace.summary() or "1 tracked file" in workspace.summary()


def test_run_dirs_are_excluded_through_info_exclude_once(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    workspace = Workspace.open(repo)
    workspace.run_dir(workspace.reserve_run_id("first task"))
    workspace.run_dir(workspace.reserve_run_id("first task"))
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.actsmith/") == 1
    assert git(repo, "status", "--porcelain") == ""
    assert len(list(Path(repo, ".actsmith", "runs").iterdir())) == 2
