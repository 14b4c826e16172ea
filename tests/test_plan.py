"""Plan mode: the model looks and plans; the tree, the index, branches, refs and stash stay as they were."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from conftest import clean_env, git, make_repo, run_cli, write_replay

pytestmark = pytest.mark.docker

PLAN = "## Plan\\n\\n1. Change `greet()` in app.py to say hello.\\n2. Add a test."


def state_of(repo: Path) -> dict[str, object]:
    """Everything plan mode must leave alone: every file of the tree (ignored ones too), the index,
    every ref, the stash, HEAD."""
    files = {
        str(path.relative_to(repo)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(repo).parts
    }
    return {
        "files": files,
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "stash": git(repo, "stash", "list"),
        "head": git(repo, "symbolic-ref", "HEAD"),
        "exclude": (repo / ".git" / "info" / "exclude").read_text(),
    }


def test_plan_leaves_tree_index_and_refs_byte_identical_and_prints_the_plan(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": "def greet():\n    return 'hi'\n", "README.md": "# r\n"})
    (repo / "notes.txt").write_text("my uncommitted notes\n")  # the user's own work in progress
    (repo / "app.py").write_text("def greet():\n    return 'hi'  # edited\n")
    before = state_of(repo)
    attempt = """<execute>
for path in ("app.py", "new.py", ".actsmith/x"):
    try:
        open(path, "a").write("x\\n")
        print(path, "written")
    except OSError as error:
        print(path, "refused:", error.strerror)
print(open("notes.txt").read())
</execute>"""
    replay = write_replay(tmp_path / "replay.yaml", [attempt, f'<execute>\nfinish("{PLAN}")\n</execute>'])
    result = run_cli(["run", "say hello", "--plan", "--model", f"replay:{replay}"], repo, env=clean_env())

    assert result.code == 0, result.stderr
    assert state_of(repo) == before
    assert "## Plan\n\n1. Change `greet()` in app.py to say hello.\n2. Add a test.\n" in result.stdout


def test_plan_mode_tells_the_model_it_plans_and_records_the_trajectory_outside_the_tree(
    tmp_path, sandbox_image
):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    replay = write_replay(
        tmp_path / "replay.yaml",
        [
            "<execute>\ntry:\n    open('app.py', 'w').write('y')\nexcept OSError as e:\n    print(e.strerror)\n</execute>",
            f'<execute>\nfinish("{PLAN}")\n</execute>',
        ],
    )
    result = run_cli(
        ["run", "plan it", "--plan", "--json", "--model", f"replay:{replay}"], repo, env=clean_env()
    )
    assert result.code == 0, result.stderr
    import json

    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    system = next(e for e in events if e["event"] == "model_call")["messages"][0]["content"]
    assert "## Plan mode" in system and "read-only" in system
    observation = next(e for e in events if e["event"] == "observation")["text"]
    assert "Read-only file system" in observation
    end = next(e for e in events if e["event"] == "end")
    assert end["status"] == "finished" and end["files_changed"] == [] and end["summary"].startswith("## Plan")
    trajectory = Path(end["trajectory"])
    common = Path(
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert trajectory.is_file() and common in trajectory.parents
    assert not (repo / ".actsmith").exists()
