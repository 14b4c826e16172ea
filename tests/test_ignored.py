"""Ignored files a run touched: found at its end and taken back by undo (real git, no sandbox: the
runs' edits are made here directly; test_sandbox_writes_e2e.py does the same through Docker)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from conftest import make_repo, run_cli

from agent_cli.checkpoints import RunCheckpoints, undo
from agent_cli.ignored import MAX_SAVED_FILE, IgnoredChange, IgnoredFiles, summary_line
from agent_cli.workspace import Workspace


def recorded_run(repo: Path, edit: Callable[[], None]) -> list[IgnoredChange]:
    """What a session does around its actions: checkpoint and snapshot, edits, then the end."""
    workspace = Workspace.open(repo)
    run_id = workspace.reserve_run_id("task")
    checkpoints = RunCheckpoints.for_run(workspace, run_id, "task")
    checkpoints.record(0)
    ignored = IgnoredFiles.snapshot(workspace.root, run_id)
    edit()
    checkpoints.record(1)
    changes = ignored.finish()
    checkpoints.close("finished")
    return changes


def ignoring(tmp_path: Path, patterns: str, files: dict[str, bytes]) -> Path:
    repo = make_repo(tmp_path / "repo", {".gitignore": patterns, "app.py": "x = 1\n"})
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(content)
    return repo


def test_only_files_whose_content_changed_are_named_even_when_the_mtime_is_set_back(tmp_path):
    repo = ignoring(tmp_path, "*.cache\n", {"touched.cache": b"same", "faked.cache": b"aaaa"})
    faked = repo / "faked.cache"
    stamp = faked.stat()

    def edit() -> None:
        os.utime(repo / "touched.cache", ns=(1, 1))  # a new mtime, the same bytes
        faked.write_bytes(b"bbbb")  # the same size, and the old mtime put back
        os.utime(faked, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    assert recorded_run(repo, edit) == [IgnoredChange("faked.cache", "changed")]


def test_files_are_named_by_path_and_folders_the_sandbox_cannot_write_are_skipped(tmp_path):
    files = {".venv/lib/site.pth": b"", ".vscode/tasks.json": b"{}", ".envrc": b"", "build/a/b.o": b"1"}
    repo = ignoring(tmp_path, ".venv/\n.vscode/\n.envrc\nbuild/\n", files)

    def edit() -> None:
        (repo / "build" / "a" / "b.o").unlink()
        (repo / "build" / "generated.txt").write_text("new\n")
        (repo / ".venv" / "lib" / "site.pth").write_text("import os\n")
        (repo / ".actsmith" / "notes").parent.mkdir(exist_ok=True)
        (repo / ".actsmith" / "notes").write_text("actsmith's own\n")

    changes = recorded_run(repo, edit)
    assert changes == [
        IgnoredChange("build/a/b.o", "deleted"),
        IgnoredChange("build/generated.txt", "created"),
    ]
    assert (
        summary_line(changes) == "ignored files changed: build/a/b.o (deleted), build/generated.txt (created)"
    )


def test_a_file_over_the_budget_is_named_and_undo_says_it_cannot_restore_it(tmp_path):
    big = b"x" * (MAX_SAVED_FILE + 1)
    repo = ignoring(tmp_path, "*.bin\n", {"big.bin": big, "small.bin": b"small"})

    def edit() -> None:
        (repo / "big.bin").write_bytes(b"y" * len(big))
        (repo / "small.bin").write_bytes(b"SMALL")

    changes = recorded_run(repo, edit)
    assert changes == [
        IgnoredChange("big.bin", "changed", saved=False),
        IgnoredChange("small.bin", "changed"),
    ]
    assert "big.bin (changed, not saved: undo cannot restore it)" in summary_line(changes)

    undone = run_cli(["undo"], repo)
    assert undone.code == 0, undone.stderr
    assert "ignored files restored: small.bin" in undone.stdout
    assert "ignored files not restored: big.bin (not saved before the run: over the budget)" in " ".join(
        undone.stdout.split()
    )
    assert (repo / "small.bin").read_bytes() == b"small"


def test_undo_takes_back_files_moved_in_and_out_of_the_ignore_rules(tmp_path):
    repo = ignoring(tmp_path, "secret.cfg\n", {"secret.cfg": b"mine\n"})
    (repo / "notes.txt").write_text("untracked notes\n")

    def edit() -> None:  # secret.cfg leaves the ignore rules and changes; notes.txt enters them
        (repo / ".gitignore").write_text("notes.txt\n")
        (repo / "secret.cfg").write_text("the run's\n")

    changes = recorded_run(repo, edit)
    assert changes == [IgnoredChange("notes.txt", "created"), IgnoredChange("secret.cfg", "changed")]
    undone = undo(Workspace.open(repo))
    assert (repo / "secret.cfg").read_text() == "mine\n"
    assert (repo / "notes.txt").read_text() == "untracked notes\n"
    assert (repo / ".gitignore").read_text() == "secret.cfg\n"
    assert undone.ignored.restored == ["secret.cfg"]


def test_undo_writes_into_a_folder_swapped_for_a_link_without_following_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = ignoring(tmp_path, "cache/\n", {"cache/data.txt": b"cached\n"})

    def edit() -> None:
        (repo / "cache" / "data.txt").unlink()
        (repo / "cache").rmdir()
        (repo / "cache").symlink_to(outside)

    assert recorded_run(repo, edit) == [IgnoredChange("cache/data.txt", "deleted")]
    undo(Workspace.open(repo))
    assert not (repo / "cache").is_symlink()
    assert (repo / "cache" / "data.txt").read_bytes() == b"cached\n"
    assert list(outside.iterdir()) == []


def test_undoing_the_undo_brings_back_what_it_removed_and_overwrote(tmp_path):
    repo = ignoring(tmp_path, "build/\n", {"build/kept.o": b"before"})

    def edit() -> None:
        (repo / "build" / "new.o").write_bytes(b"made by the run")
        (repo / "build" / "kept.o").write_bytes(b"rebuilt by the run")

    recorded_run(repo, edit)
    first = undo(Workspace.open(repo))
    assert (first.ignored.removed, first.ignored.restored) == (["build/new.o"], ["build/kept.o"])
    assert sorted(p.name for p in (repo / "build").iterdir()) == ["kept.o"]
    undo(Workspace.open(repo), first.record)
    assert (repo / "build" / "new.o").read_bytes() == b"made by the run"
    assert (repo / "build" / "kept.o").read_bytes() == b"rebuilt by the run"


def test_undo_to_a_later_step_leaves_ignored_files_as_they_are(tmp_path):
    repo = ignoring(tmp_path, "build/\n", {})
    recorded_run(repo, lambda: (repo / "build").mkdir() or (repo / "build" / "x.o").write_text("x"))
    later = run_cli(["undo", "--step", "1"], repo)
    assert later.code == 0, later.stderr
    assert (repo / "build" / "x.o").read_text() == "x"
    assert "ignored files the run changed are left as they are" in " ".join(later.stdout.split())
    assert "build/x.o" in later.stdout
