"""The ledger and the workspace modes through real runs: the CLI, real git, a real Docker sandbox."""

from __future__ import annotations

import pytest
from conftest import git, make_repo, run_cli
from test_checkpoints import files_on_disk

pytestmark = pytest.mark.docker

# The path is assembled at run time so that no message but the state block ever spells it out.
HIDDEN_WRITE = (
    "<execute>\nimport pathlib\nname = ''.join(reversed('txt.nalp/setondrawa'))\n"
    "pathlib.Path(name).parent.mkdir()\npathlib.Path(name).write_text('plan\\n')\n</execute>"
)


def test_the_state_block_names_files_edited_earlier_that_nothing_else_names(run_agent):
    run = run_agent(
        [HIDDEN_WRITE, "<execute>\nprint('thinking')\n</execute>", "<execute>finish('ok')</execute>"]
    )
    assert run.code == 0, run.stderr
    calls = run.events("model_call")
    last_messages = calls[-1]["messages"]
    assert "awardnotes/plan.txt: created (+1 -0), step 1" in last_messages[-1]["content"]
    earlier = [m["content"] for m in last_messages[:-1]] + [c["reply"] for c in calls]
    assert not any("awardnotes/plan.txt" in text for text in earlier)
    (edits,) = run.events("edits")  # the trajectory keeps each step's ledger record
    assert (edits["step"], edits["files"][0]["path"]) == (1, "awardnotes/plan.txt")
    # Only the latest message carries the block, so the prompt grows linearly with the steps.
    assert sum("State of your work" in m["content"] for m in last_messages) == 1


def test_a_step_that_breaks_python_syntax_is_told_the_file_and_line(run_agent):
    broken = "def ok():\\n    return 1\\n\\ndef broken(:\\n    pass\\n"
    run = run_agent(
        [
            f"<execute>\nopen('app.py', 'w').write('{broken}')\n</execute>",
            "<execute>finish('done')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    first = run.events("observation")[0]["text"]
    assert "[Syntax check: app.py line 4: missing ')'" in first
    assert "app.py line 4" in run.events("model_call")[1]["messages"][-1]["content"]


def test_undo_after_a_run_restores_the_users_work_byte_for_byte(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n", "data.bin": bytes(range(256))})
    (repo / "app.py").write_text("x = 'my edit'\n")
    (repo / "untracked.txt").write_bytes(b"mine\r\n\xff\xfe")
    before = files_on_disk(repo)
    replay = tmp_path / "replay.yaml"
    replay.write_text(
        "- |\n  <execute>\n  import os\n  open('app.py', 'w').write('x = 2\\n')\n  os.remove('untracked.txt')\n"
        "  open('data.bin', 'wb').write(b'new')\n  </execute>\n"
        "- |\n  <execute>\n  open('added.py', 'w').write('y = 1\\n')\n  </execute>\n"
        "- <execute>finish('changed things')</execute>\n"
    )
    run = run_cli(["run", "--model", f"replay:{replay}", "change things"], repo)
    assert run.code == 0, run.stderr
    assert (repo / "app.py").read_text() == "x = 2\n"

    listed = run_cli(["runs"], repo)
    table = " ".join(listed.stdout.split())
    assert listed.code == 0 and "finished" in table and "change" in table and "things" in table

    step = run_cli(["undo", "--step", "1"], repo)
    assert step.code == 0, step.stderr
    assert (repo / "app.py").read_text() == "x = 2\n" and not (repo / "added.py").exists()

    (run_dir,) = (repo / ".actsmith" / "runs").iterdir()  # the run's directory is named by its id
    undone = run_cli(["undo", "--run", run_dir.name], repo)
    assert undone.code == 0, undone.stderr
    assert files_on_disk(repo) == before


def test_worktree_leaves_the_checkout_untouched_and_commits_on_a_branch(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    (repo / "app.py").write_text("x = 'uncommitted'\n")
    (repo / "scratch.txt").write_text("untracked\n")
    before, head, status = (
        files_on_disk(repo),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain"),
    )
    replay = tmp_path / "replay.yaml"
    replay.write_text(
        "- |\n  <execute>\n  print(open('app.py').read())\n  open('app.py', 'w').write('x = 2\\n')\n  </execute>\n"
        "- <execute>finish('set x to 2')</execute>\n"
    )
    trajectory = str(tmp_path / "trajectory.jsonl")
    run = run_cli(
        ["run", "--worktree", "--trajectory", trajectory, "--model", f"replay:{replay}", "Set x to 2"], repo
    )
    assert run.code == 0, run.stderr
    assert "x = 1" in run.events("observation")[0]["text"]  # the worktree starts from HEAD

    assert files_on_disk(repo) == before
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")) == (head, status)
    assert git(repo, "show", "actsmith/set-x-to-2:app.py") == "x = 2\n"
    message = git(repo, "log", "-1", "--format=%B", "actsmith/set-x-to-2")
    assert message.startswith("Set x to 2\n\nset x to 2\n") and "- app.py: changed" in message
    assert git(repo, "worktree", "list").count("\n") == 1  # the run's worktree was removed


def test_commit_commits_only_the_runs_files(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n", "lib.py": "y = 1\n"})
    (repo / "lib.py").write_text("y = 'my uncommitted edit'\n")
    (repo / "notes.txt").write_text("my untracked notes\n")
    replay = tmp_path / "replay.yaml"
    replay.write_text(
        "- |\n  <execute>\n  open('app.py', 'w').write('x = 2\\n')\n  open('new.py', 'w').write('z = 1\\n')\n"
        "  </execute>\n- <execute>finish('bumped x, added z')</execute>\n"
    )
    run = run_cli(["run", "--commit", "--model", f"replay:{replay}", "Bump x"], repo)
    assert run.code == 0, run.stderr
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == ["app.py", "new.py"]
    assert git(repo, "status", "--porcelain").splitlines() == [" M lib.py", "?? notes.txt"]
    assert (repo / "lib.py").read_text() == "y = 'my uncommitted edit'\n"


def test_commit_is_skipped_when_the_run_does_not_finish(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    replay = tmp_path / "replay.yaml"
    replay.write_text("- |\n  <execute>\n  open('app.py', 'w').write('x = 2\\n')\n  </execute>\n")
    run = run_cli(["run", "--commit", "--max-steps", "1", "--model", f"replay:{replay}", "Bump x"], repo)
    assert run.code == 3
    assert git(repo, "rev-parse", "HEAD") == head
    assert "not made" in run.stdout


def test_the_map_is_refreshed_for_files_whose_definitions_appear(run_agent):
    new_module = "def compute_total(items):\\n    return sum(items)\\n\\n\\nclass Basket:\\n    pass\\n"
    run = run_agent(
        [
            f"<execute>\nopen('billing.py', 'w').write('{new_module}')\n</execute>",
            "<execute>\nopen('billing.py', 'a').write('# a comment only\\n')\n</execute>",
            "<execute>finish('added billing')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    added, commented = (event["text"] for event in run.events("observation")[:2])
    assert "Repository map, refreshed" in added
    assert "billing.py" in added and "compute_total(items)" in added and "class Basket" in added
    assert "Repository map" not in commented  # no definition appeared, vanished or moved
