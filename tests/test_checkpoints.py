"""Checkpoints, undo and the commit of a run, on real git repositories (the edits stand in for actions)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import add_submodule, git, make_repo

from agent_cli.checkpoints import RunCheckpoints, list_runs, undo
from agent_cli.errors import UsageError
from agent_cli.ledger import Ledger
from agent_cli.workspace import Workspace


def files_on_disk(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file outside .git and .actsmith with its mode and exact bytes (symlinks by target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in {".git", ".actsmith"}]
        for name in filenames:
            path = Path(dirpath, name)
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            found[str(path.relative_to(root))] = (path.lstat().st_mode, data)
    return found


def start_run(repo: Path, task: str = "the task") -> Ledger:
    workspace = Workspace.open(repo)
    ledger = Ledger(RunCheckpoints.for_run(workspace, workspace.reserve_run_id(task), task))
    ledger.start()
    return ledger


@pytest.fixture
def messy_repo(tmp_path) -> Path:
    """A repository in the state a person leaves it: staged, unstaged and untracked work, odd files."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "app.py": "def greet():\n    return 'hi'\n",
            "data.bin": bytes(range(256)),
            "latin1.txt": "caf\xe9\n".encode("latin-1"),
            "windows.txt": b"one\r\ntwo\r\n",
            ".gitattributes": "*.txt text eol=crlf\n",
            "run.sh": "#!/bin/sh\necho run\n",
        },
    )
    (repo / "run.sh").chmod(0o755)
    git(repo, "commit", "-qam", "exec bit")
    (repo / "app.py").write_text("def greet():\n    return 'hello'  # my uncommitted edit\n")
    (repo / "staged.txt").write_bytes(b"staged by me\n")
    git(repo, "add", "staged.txt")
    (repo / "notes.md").write_text("my untracked notes\n")
    (repo / "mixed.txt").write_bytes(b"lf line\ncrlf line\r\nno newline")
    os.symlink("app.py", repo / "link.py")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "build.log").write_text("ignored output\n")
    return repo


def wreck(repo: Path) -> None:
    """What an agent might do: edit, delete, create, replace a file with a directory, change modes."""
    (repo / "app.py").write_text("def greet():\n    return 'agent'\n")
    (repo / "notes.md").unlink()
    (repo / "latin1.txt").write_bytes(b"replaced\n")
    (repo / "data.bin").write_bytes(b"\x00" * 10)
    (repo / "windows.txt").write_bytes(b"one\ntwo\n")
    (repo / "run.sh").chmod(0o644)
    (repo / "link.py").unlink()
    (repo / "link.py").mkdir()
    (repo / "link.py" / "inner.py").write_text("x = 1\n")
    (repo / "new" / "deep").mkdir(parents=True)
    (repo / "new" / "deep" / "file.py").write_text("y = 2\n")


def test_undo_restores_the_users_uncommitted_and_untracked_work_byte_for_byte(messy_repo):
    before = files_on_disk(messy_repo)
    index_before = git(messy_repo, "diff", "--cached", "--name-status")
    head_before = git(messy_repo, "rev-parse", "HEAD")
    ledger = start_run(messy_repo)
    wreck(messy_repo)
    ledger.record_step(1)
    ledger.checkpoints.close("finished")

    undone = undo(Workspace.open(messy_repo))

    assert files_on_disk(messy_repo) == before
    assert not (messy_repo / "new").exists()  # directories the run created are gone too
    assert git(messy_repo, "diff", "--cached", "--name-status") == index_before
    assert git(messy_repo, "rev-parse", "HEAD") == head_before
    assert "app.py" in undone.paths and "notes.md" in undone.paths
    assert (messy_repo / "build.log").read_text() == "ignored output\n"


def test_undo_step_restores_the_state_after_that_step_and_an_undo_can_be_undone(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    ledger = start_run(repo)
    for step in (1, 2, 3):
        (repo / "a.py").write_text(f"a = {step}\n")
        (repo / f"step{step}.txt").write_text("x\n")
        ledger.record_step(step)
    ledger.checkpoints.close("finished")

    undo(Workspace.open(repo), step=2)
    assert (repo / "a.py").read_text() == "a = 2\n"
    assert (repo / "step2.txt").exists() and not (repo / "step3.txt").exists()

    undo(Workspace.open(repo))  # the latest run is now the undo itself: this brings step 3 back
    assert (repo / "a.py").read_text() == "a = 3\n"
    assert (repo / "step3.txt").exists()


def test_undo_names_a_step_the_run_does_not_have(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    ledger = start_run(repo)
    ledger.record_step(1)
    ledger.checkpoints.close("finished")
    with pytest.raises(UsageError, match="steps 0 to 1"):
        undo(Workspace.open(repo), step=7)


def test_undo_without_runs_says_so(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    with pytest.raises(UsageError, match="no actsmith run"):
        undo(Workspace.open(repo))


def test_checkpoints_never_touch_branches_index_stash_or_head(messy_repo):
    def user_state() -> tuple[str, ...]:
        return (
            git(messy_repo, "for-each-ref", "refs/heads", "refs/tags", "refs/stash"),
            git(messy_repo, "symbolic-ref", "-q", "HEAD"),
            git(messy_repo, "rev-parse", "HEAD"),
            git(messy_repo, "diff", "--cached"),
            git(messy_repo, "status", "--porcelain=v2"),
        )

    before = user_state()
    ledger = start_run(messy_repo)
    ledger.record_step(1)
    ledger.checkpoints.close("finished")
    assert user_state() == before
    refs = git(messy_repo, "for-each-ref", "--format=%(refname)", "refs/actsmith").split()
    assert refs == [f"refs/actsmith/runs/{ledger.checkpoints.run_id}"]
    git(messy_repo, "gc", "-q", "--prune=now")  # checkpoints survive garbage collection
    undo(Workspace.open(messy_repo))


def test_runs_are_listed_newest_first_with_task_steps_and_status(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    first = start_run(repo, "first task")
    first.checkpoints.close("limit")
    second = start_run(repo, "second\ntask")
    (repo / "a.py").write_text("a = 1\n")
    second.record_step(1)
    (repo / "a.py").write_text("a = 2\n")
    second.record_step(2)
    second.checkpoints.settle()  # the step's checkpoint is written in the background
    runs = list_runs(repo)
    assert [r.task for r in runs] == ["second task", "first task"]
    assert (runs[0].steps, runs[0].status) == (2, "interrupted")  # never closed: it was killed
    assert (runs[1].steps, runs[1].status) == (0, "limit")


def test_commit_takes_only_the_runs_files_and_leaves_the_users_other_changes(messy_repo):
    ledger = start_run(messy_repo)
    (messy_repo / "feature.py").write_text("def feature():\n    return 1\n")
    (messy_repo / "run.sh").unlink()
    ledger.record_step(1)
    final = ledger.checkpoints.close("finished")
    workspace = Workspace.open(messy_repo)

    commit = workspace.commit_run(ledger.base_tree, final.tree, "Add feature\n\nbody\n")

    assert git(messy_repo, "rev-parse", "HEAD").strip() == commit
    changed = git(messy_repo, "show", "--name-status", "--format=", "HEAD").split("\n")
    assert sorted(line for line in changed if line) == ["A\tfeature.py", "D\trun.sh"]
    status = git(messy_repo, "status", "--porcelain")
    assert " M app.py" in status and "?? notes.md" in status and "A  staged.txt" in status
    assert "feature.py" not in status and "run.sh" not in status
    assert git(messy_repo, "log", "-1", "--format=%s").strip() == "Add feature"


def test_commit_on_a_detached_head_moves_only_head(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    git(repo, "checkout", "-q", "--detach")
    branch_before = git(repo, "rev-parse", "main")
    ledger = start_run(repo)
    (repo / "a.py").write_text("a = 1\n")
    ledger.record_step(1)
    final = ledger.checkpoints.close("finished")
    commit = Workspace.open(repo).commit_run(ledger.base_tree, final.tree, "change a\n")
    assert git(repo, "rev-parse", "HEAD").strip() == commit
    assert git(repo, "rev-parse", "main") == branch_before
    assert git(repo, "status", "--porcelain") == ""


def test_a_worktree_gets_its_own_branch_and_commit(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    (repo / "a.py").write_text("a = 'my uncommitted edit'\n")
    main = Workspace.open(repo)
    before = files_on_disk(repo)
    tree, branch = main.create_worktree("Make a one")
    assert branch == "actsmith/make-a-one"
    assert (tree.root / "a.py").read_text() == "a = 0\n"  # from HEAD, without the user's edit
    ledger = Ledger(
        RunCheckpoints.for_run(main, main.reserve_run_id("wt"), "make a one", root=tree.root, branch=branch)
    )
    ledger.start()
    (tree.root / "a.py").write_text("a = 1\n")
    ledger.record_step(1)
    final = ledger.checkpoints.close("finished")
    tree.commit_run(ledger.base_tree, final.tree, "make a one\n")
    tree.remove_worktree(main)

    assert files_on_disk(repo) == before
    assert git(repo, "show", f"{branch}:a.py") == "a = 1\n"
    assert not tree.root.exists()
    with pytest.raises(UsageError, match="never changed"):
        undo(Workspace.open(repo))
    _, second = main.create_worktree("Make a one")
    assert second == "actsmith/make-a-one-2"


def test_a_repository_without_commits_can_still_be_checkpointed_and_committed(tmp_path):
    repo = tmp_path / "fresh"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "mine.txt").write_text("mine\n")
    with pytest.raises(UsageError, match="no commits yet"):
        Workspace.open(repo).create_worktree("x")
    ledger = start_run(repo)
    (repo / "agent.txt").write_text("agent\n")
    ledger.record_step(1)
    final = ledger.checkpoints.close("finished")
    Workspace.open(repo).commit_run(ledger.base_tree, final.tree, "first\n")
    assert git(repo, "ls-tree", "--name-only", "HEAD").split() == ["agent.txt"]
    assert git(repo, "status", "--porcelain") == "?? mine.txt\n"


def test_undo_restores_files_inside_a_submodule_and_never_deletes_it(tmp_path):
    library = make_repo(tmp_path / "library", {"lib.py": "v = 1\n"})
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    add_submodule(repo, library, "vendor/lib")
    (repo / "vendor" / "lib" / "lib.py").write_text("v = 'my uncommitted edit'\n")
    before = files_on_disk(repo)
    ledger = start_run(repo)
    (repo / "vendor" / "lib" / "lib.py").write_text("v = 'agent'\n")
    (repo / "vendor" / "lib" / "added.py").write_text("w = 1\n")
    (repo / "app.py").write_text("x = 2\n")
    ledger.record_step(1)
    ledger.checkpoints.close("finished")

    undone = undo(Workspace.open(repo))

    assert files_on_disk(repo) == before
    assert "vendor/lib/lib.py" in undone.paths
    assert git(repo / "vendor" / "lib", "status", "--porcelain") == " M lib.py\n"


def test_file_names_that_are_not_utf8_survive_undo(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "a = 0\n"})
    odd = os.fsencode(repo) + b"/caf\xe9 menu.txt"
    with open(odd, "wb") as handle:
        handle.write(b"latin-1 name\n")
    before = files_on_disk(repo)
    ledger = start_run(repo)
    os.remove(odd)
    (repo / "a.py").write_text("a = 1\n")
    ledger.record_step(1)
    ledger.checkpoints.close("finished")
    undo(Workspace.open(repo))
    assert files_on_disk(repo) == before


def blob_bytes(repo: Path, tree: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", f"{tree}:{path}"], check=True, capture_output=True
    ).stdout


def test_a_snapshot_holds_the_bytes_on_disk_not_the_blobs_of_the_users_index(tmp_path):
    repo = make_repo(tmp_path / "r", {".gitattributes": "*.txt text eol=crlf\n"})
    (repo / "w.txt").write_bytes(b"a\r\nb\r\n")
    an_hour_ago = time.time() - 3600
    os.utime(repo / "w.txt", (an_hour_ago, an_hour_ago))  # stat-clean in the index, not racy
    git(repo, "add", "w.txt")  # the user's index holds the normalised blob "a\nb\n"
    tree = start_run(repo).checkpoints.snapshot()
    assert blob_bytes(repo, tree, "w.txt") == b"a\r\nb\r\n"


def test_a_file_the_user_marked_assume_unchanged_is_still_restored(tmp_path):
    repo = make_repo(tmp_path / "r", {"config.py": "debug = False\n"})
    git(repo, "update-index", "--assume-unchanged", "config.py")
    (repo / "config.py").write_text("debug = True  # my local tweak\n")
    ledger = start_run(repo)
    (repo / "config.py").write_text("debug = 'agent'\n")
    ledger.record_step(1)
    ledger.checkpoints.close("finished")
    undo(Workspace.open(repo))
    assert (repo / "config.py").read_text() == "debug = True  # my local tweak\n"
