"""AGENTS.md: the root file in the system prompt, a folder's right after the model first works there."""

from __future__ import annotations

import os

import pytest
from conftest import clean_env, make_repo, run_cli, write_replay

pytestmark = pytest.mark.docker

ROOT_RULE = "Always use tabs-free four-space indentation; run make lint before finishing."
FOLDER_RULE = "In payments/, amounts are integer cents, never floats."
OTHER_RULE = "docs/ is generated: never edit it by hand."


def test_root_and_folder_agents_md_reach_the_model_when_they_should(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "repo",
        {
            "AGENTS.md": f"# Rules\n{ROOT_RULE}\n",
            "payments/AGENTS.md": FOLDER_RULE + "\n",
            "payments/charge.py": "def charge(amount):\n    return amount\n",
            "docs/AGENTS.md": OTHER_RULE + "\n",
            "docs/index.md": "# docs\n",
            "app.py": "x = 1\n",
        },
    )
    replies = [
        "<execute>\nprint(open('app.py').read())\n</execute>",
        "<execute>\nview('payments/charge.py')\n</execute>",
        "<execute>\nreplace('payments/charge.py', 'return amount', 'return int(amount)')\n</execute>",
        "<execute>\nfinish('cents')\n</execute>",
    ]
    replay = write_replay(tmp_path / "replay.yaml", replies)
    trajectory = tmp_path / "t.jsonl"
    result = run_cli(
        ["run", "task", "--model", f"replay:{replay}", "--no-tests", "--trajectory", str(trajectory)],
        repo,
        env=clean_env(),
    )
    assert result.code == 0, result.stderr
    calls = result.events("model_call")
    system = calls[0]["messages"][0]["content"]
    assert "## The repository's instructions (AGENTS.md)" in system and ROOT_RULE in system
    assert FOLDER_RULE not in system and OTHER_RULE not in system
    observations = [event["text"] for event in result.events("observation")]
    assert FOLDER_RULE not in observations[0]
    assert "[Instructions for payments/ from payments/AGENTS.md" in observations[1]
    assert FOLDER_RULE in observations[1]
    assert FOLDER_RULE not in observations[2]  # once
    assert all(OTHER_RULE not in text for text in observations)  # never worked in docs/
    # What the model saw last holds the folder's text exactly once.
    assert "\n".join(m["content"] for m in calls[-1]["messages"]).count(FOLDER_RULE) == 1


def test_claude_md_stands_in_for_a_missing_agents_md_and_a_symlinked_one_is_not_read(tmp_path, sandbox_image):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST SECRET VALUE\n")
    repo = make_repo(tmp_path / "repo", {"CLAUDE.md": "Prefer small functions.\n", "app.py": "x = 1\n"})
    os.symlink(secret, repo / "AGENTS.md")
    replay = write_replay(tmp_path / "replay.yaml", ["<execute>\nfinish('ok')\n</execute>"])
    trajectory = tmp_path / "t.jsonl"
    result = run_cli(
        ["run", "task", "--model", f"replay:{replay}", "--no-tests", "--trajectory", str(trajectory)],
        repo,
        env=clean_env(),
    )
    assert result.code == 0, result.stderr
    system = result.events("model_call")[0]["messages"][0]["content"]
    assert "(CLAUDE.md)" in system and "Prefer small functions." in system
    assert "HOST SECRET VALUE" not in trajectory.read_text()
    doctor = run_cli(["doctor"], repo)
    assert "agents.md  CLAUDE.md" in doctor.stdout


def test_the_after_edit_command_runs_on_the_changed_files_and_the_model_sees_it(tmp_path, sandbox_image):
    # A "formatter" that rewrites tabs and says which files it saw; it exits 1 to show that is not fatal.
    repo = make_repo(
        tmp_path / "repo",
        {
            "app.py": "x = 1\n",
            ".actsmith.toml": "after_edit = \"sed -i 's/\\\\t/    /' {files} && echo formatted {files} && exit 1\"\n",
        },
    )
    replies = [
        "<execute>\nopen('my file.py', 'w').write('def f():\\n\\treturn 1\\n')\n</execute>",
        "<execute>\nprint(repr(open('my file.py').read()))\n</execute>",
        "<execute>\nfinish('added f')\n</execute>",
    ]
    replay = write_replay(tmp_path / "replay.yaml", replies)
    trajectory = tmp_path / "t.jsonl"
    result = run_cli(
        ["run", "task", "--model", f"replay:{replay}", "--no-tests", "--trajectory", str(trajectory)],
        repo,
        env=clean_env(),
    )
    assert result.code == 0, result.stderr
    first, second, _ = (event["text"] for event in result.events("observation"))
    assert "[After the edit: `sed -i" in first and "exited 1:" in first
    assert "formatted my file.py" in first
    assert "'def f():\\n    return 1\\n'" in second  # the formatter's rewrite is on disk
    assert "After the edit" not in second  # a step that changed nothing runs nothing
    assert (repo / "my file.py").read_text() == "def f():\n    return 1\n"
    assert result.events("end")[0]["files_changed"] == ["my file.py"]
