"""The CLI itself: fast help (heavy libraries stay unimported), usage errors."""

import subprocess
import sys


def test_help_does_not_import_litellm_docker_or_git():
    code = (
        "import sys, agent_cli.cli\n"
        "heavy = [m for m in ('litellm', 'docker', 'git', 'jinja2', 'agent_cli.agent') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "agent_cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "run" in out and "sandbox" in out


def test_run_help_lists_the_options_the_docs_promise():
    out = subprocess.run(
        [sys.executable, "-m", "agent_cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    for option in (
        "--repo",
        "--model",
        "--max-steps",
        "--max-cost",
        "--action-timeout",
        "--trajectory",
        "--image",
    ):
        assert option in out


def test_a_missing_task_is_a_usage_error_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "agent_cli", "run"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "task" in proc.stderr.lower()
