"""Protected paths: a change to one is undone after the step, the model is told, nothing keeps it."""

from __future__ import annotations

import pytest
from conftest import clean_env, git, make_repo, run_cli, write_replay

from agent_cli.protect import ProtectedPaths


@pytest.mark.parametrize(
    ("glob", "path", "protected"),
    [
        (".github/workflows/**", ".github/workflows/ci.yml", True),
        (".github/workflows/**", ".github/workflows/deep/x.yml", True),
        (".github/workflows/**", ".github/other.yml", False),
        ("*.lock", "poetry.lock", True),
        ("*.lock", "sub/dir/yarn.lock", True),
        ("migrations/", "migrations/0001.py", True),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/pkg/a.py", False),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/pkg/a.py", True),
        ("config.toml", "config.toml", True),
        ("config.toml", "other/config.toml", True),
        ("/config.toml", "other/config.toml", False),
    ],
)
def test_globs_match_paths_from_the_repository_root(glob, path, protected):
    assert (ProtectedPaths((glob,)).match(path) is not None) is protected


@pytest.mark.docker
def test_a_protected_file_changed_and_a_protected_file_created_are_undone_and_the_model_told(
    tmp_path, sandbox_image
):
    repo = make_repo(
        tmp_path / "repo",
        {
            "app.py": "x = 1\n",
            "schema.sql": "create table t (id int);\n",
            ".actsmith.toml": 'protect = ["schema.sql", ".github/workflows/**"]\n',
        },
    )
    action = """<execute>
import os
os.makedirs(".github/workflows", exist_ok=True)
open(".github/workflows/x.yml", "w").write("on: push\\n")
open("schema.sql", "a").write("drop table t;\\n")
open("app.py", "w").write("x = 2\\n")
</execute>"""
    replay = write_replay(
        tmp_path / "replay.yaml",
        [action, "<execute>\nprint(open('schema.sql').read())\nfinish('changed app.py')\n</execute>"],
    )
    trajectory = tmp_path / "t.jsonl"
    result = run_cli(
        [
            "run",
            "task",
            "--model",
            f"replay:{replay}",
            "--no-tests",
            "--commit",
            "--trajectory",
            str(trajectory),
        ],
        repo,
        env=clean_env(),
    )
    assert result.code == 0, result.stderr
    first, second = (event["text"] for event in result.events("observation"))
    assert "[Refused: .github/workflows/x.yml is protected (`.github/workflows/**`)" in first
    assert "[Refused: schema.sql is protected (`schema.sql`)" in first
    assert "drop table" not in second  # the model's next action already sees the file put back
    assert not (repo / ".github").exists()
    assert (repo / "schema.sql").read_text() == "create table t (id int);\n"
    end = result.events("end")[0]
    assert end["files_changed"] == ["app.py"]
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["app.py"]
