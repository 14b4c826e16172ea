"""Faults a hostile new user found, one test each, through the real CLI, git and Docker (issue 10).
Each of these failed before the Session rework."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clean_env, git, make_repo, run_cli, wait_until, write_replay
from openai_stub import Hang, Reply, ServerError, StubServer, Unauthorized

from agent_cli.trajectory import read_trajectory

pytestmark = pytest.mark.docker


def summary_of(stdout: str) -> str:
    """The terminal summary with the panel's borders and wrapping taken out."""
    return " ".join(stdout.replace("│", " ").split())


@pytest.fixture
def stub():
    server = StubServer().start()
    yield server
    server.stop()


def stub_run(repo: Path, stub: StubServer, trajectory: Path, *extra: str, timeout: float = 180):
    args = ["run", "do it", "--model", "openai/stub-model", "--api-base", stub.api_base]
    return run_cli(
        [*args, "--trajectory", str(trajectory), *extra],
        repo,
        env=clean_env(OPENAI_API_KEY="local-stub-key-123456"),
        timeout=timeout,
    )


# 1 ------------------------------------------------------------------------------------------------


def test_a_model_server_that_never_answers_is_stopped_by_max_time(repo, tmp_path, sandbox_image, stub):
    stub.script(*[Hang(seconds=600)] * 10)
    # The subprocess timeout is the assertion's backstop: before the fix this run took ~10 minutes.
    run = stub_run(repo, stub, tmp_path / "t.jsonl", "--max-time", "6", timeout=90)
    assert run.code == 3, run.stderr
    assert "time limit reached" in summary_of(run.stdout)


def test_every_retry_is_one_line_and_recorded_even_when_it_then_succeeds(repo, tmp_path, sandbox_image, stub):
    stub.script(ServerError(500), ServerError(503), Reply("<execute>finish('third time')</execute>"))
    run = stub_run(repo, stub, tmp_path / "t.jsonl")
    assert run.code == 0, run.stderr
    retry_lines = [line for line in run.stderr.splitlines() if "retrying in" in line]
    assert len(retry_lines) == 2 and "attempt 1 failed" in retry_lines[0]
    retries = run_events(tmp_path / "t.jsonl", "model_retry")
    assert [r["attempt"] for r in retries] == [1, 2] and "InternalServerError" in retries[0]["error"]


def test_the_model_timeout_is_a_setting(repo, tmp_path, sandbox_image, stub):
    stub.script(Hang(seconds=600), Reply("<execute>finish('after a timeout')</execute>"))
    run = stub_run(repo, stub, tmp_path / "t.jsonl", "--model-timeout", "2")
    assert run.code == 0, run.stderr
    (retry,) = run_events(tmp_path / "t.jsonl", "model_retry")
    assert "Timeout" in retry["error"] or "timed out" in retry["error"].lower()


def start_of(events: list[dict]) -> dict:
    return next(event for event in events if event["event"] == "start")


def run_events(path: Path, kind: str) -> list[dict]:
    return [e for e in read_trajectory(path) if e["event"] == kind]


# 2 ------------------------------------------------------------------------------------------------


def start_run(repo: Path, replay: Path, *extra: str, task: str = "slow") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agent_cli", "run", task, "--model", f"replay:{replay}", *extra],
        cwd=repo,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_in_place_run_is_refused_and_a_killed_runs_lock_is_taken_over(repo, tmp_path, sandbox_image):
    slow = write_replay(tmp_path / "slow.yaml", ["<execute>\nimport time\ntime.sleep(300)\n</execute>"])
    first = start_run(repo, slow, "--trajectory", str(tmp_path / "first.jsonl"))
    try:
        wait_until(lambda: (tmp_path / "first.jsonl").exists(), 120, "the first run's start")
        quick = write_replay(tmp_path / "quick.yaml", ["<execute>finish('x')</execute>"])
        second = run_cli(["run", "quick", "--model", f"replay:{quick}"], repo)
        assert second.code == 2
        assert "another actsmith session" in second.stderr and "--worktree" in second.stderr
        assert second.stderr.strip().count("\n") == 0
        first.send_signal(signal.SIGKILL)  # no clean-up at all: the lock must not outlive it
        first.wait(30)
        third = run_cli(["run", "quick", "--model", f"replay:{quick}"], repo)
        assert third.code == 0, third.stderr
    finally:
        first.kill()
        first.communicate()


def test_concurrent_worktree_runs_of_the_same_task_work_side_by_side(repo, tmp_path, sandbox_image):
    procs = []
    for n in (1, 2):
        replay = write_replay(
            tmp_path / f"r{n}.yaml",
            [
                f"<execute>\ncreate('mine{n}.txt', 'run {n}\\n')\nimport time\ntime.sleep(2)\nfinish('run {n}')\n</execute>"
            ],
        )
        trajectory = tmp_path / f"t{n}.jsonl"
        procs.append(
            (
                start_run(repo, replay, "--worktree", "--trajectory", str(trajectory), task="same task"),
                trajectory,
            )
        )
    outcomes = []
    for proc, trajectory in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        outcomes.append((summary_of(stdout), read_trajectory(trajectory)))
    run_ids = {start_of(events)["run_id"] for _, events in outcomes}
    branches = {start_of(events)["branch"] for _, events in outcomes}
    assert len(run_ids) == 2 and len(branches) == 2
    for n, (_summary, events) in enumerate(outcomes, start=1):
        end = next(e for e in events if e["event"] == "end")
        assert end["files_changed"] == [f"mine{n}.txt"]  # each sees only its own work
        assert git(repo, "show", f"{end['branch']}:mine{n}.txt") == f"run {n}\n"
    assert git(repo, "status", "--porcelain") == ""


# 3, 4 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [("--test-timeout", "0"), ("--test-timeout", "-5"), ("--max-output", "10"), ("--max-steps", "-1")],
)
def test_nonsense_limits_are_exit_2_naming_the_setting(repo, flag, value):
    run = run_cli(["run", "x", "--model", "replay:none.yaml", flag, value], repo)
    assert run.code == 2
    assert run.stderr.startswith(f"error: {flag}:") and "out of range" in run.stderr
    assert run.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("task", ["", "   ", "\n\t"])
def test_an_empty_task_is_exit_2(repo, task):
    run = run_cli(["run", task, "--model", "replay:none.yaml"], repo)
    assert run.code == 2 and "the task is empty" in run.stderr


# 5 ------------------------------------------------------------------------------------------------


def test_a_repository_under_a_literal_dollar_home_path_works(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "$HOME" / "project", {"a.txt": "a\n"})
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('found it')</execute>"])
    run = run_cli(["run", "x", "--model", f"replay:{replay}"], repo)
    assert run.code == 0, run.stderr
    assert "found it" in run.stdout


# 6 ------------------------------------------------------------------------------------------------


def test_a_run_stopped_by_a_model_error_after_edits_says_what_changed_and_how_to_undo(
    repo, tmp_path, sandbox_image, stub
):
    stub.script(Reply("<execute>\nreplace('app.py', 'hi', 'hello')\n</execute>"), Unauthorized())
    run = stub_run(repo, stub, tmp_path / "t.jsonl")
    assert run.code == 2, run.stderr
    summary = summary_of(run.stdout)
    assert "model_error" in summary and "authentication failed" in summary
    assert "1 file changed" in summary
    run_id = start_of(read_trajectory(tmp_path / "t.jsonl"))["run_id"]
    assert f"actsmith undo --run {run_id}" in summary
    undone = run_cli(["undo", "--run", run_id], repo)
    assert undone.code == 0 and "return 'hi'" in (repo / "app.py").read_text()


def test_a_step_limit_after_edits_says_what_changed(run_agent):
    run = run_agent(
        ["<execute>\nreplace('app.py', 'hi', 'hey')\n</execute>", "<execute>print(1)</execute>"],
        "--max-steps",
        "1",
    )
    assert run.code == 3
    summary = summary_of(run.stdout)
    assert "step limit" in summary and "1 file changed" in summary and "actsmith undo --run" in summary


# 8 ------------------------------------------------------------------------------------------------


def test_the_outline_after_a_move_shows_the_files_as_they_are_now(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "r",
        {
            "shapes.py": "class Square:\n    def area(self):\n        return 4\n\n\ndef unit():\n    return Square()\n"
        },
    )
    move = (
        "<execute>\n"
        "create('square.py', 'class Square:\\n    def area(self):\\n        return 4\\n')\n"
        "create('shapes.py', 'from square import Square\\n\\n\\ndef unit_square():\\n    return Square()\\n', overwrite=True)\n"
        "</execute>"
    )
    replay = write_replay(tmp_path / "r.yaml", [move, "<execute>finish('moved')</execute>"])
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(
        ["run", "move Square", "--model", f"replay:{replay}", "--trajectory", str(trajectory)], repo
    )
    assert run.code == 0, run.stderr
    text = run_events(trajectory, "observation")[0]["text"]
    outline = text.split("[Repository map", 1)[1].split("```")[1]
    by_file: dict[str, str] = {}
    for line in outline.strip().splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
            by_file[current] = ""
        else:
            by_file[current] += line + "\n"
    assert "class Square" in by_file["square.py"]  # in its new module...
    assert "class Square" not in by_file["shapes.py"]  # ...and no longer in the old one
    assert "def unit_square" in by_file["shapes.py"] and "def unit()" not in outline  # the rename shows


# 9 ------------------------------------------------------------------------------------------------


def test_a_hanging_test_is_named_with_its_stack_inside_the_repository(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "calc",
        {
            "calc.py": "def add(a, b):\n    return a + b\n",
            "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
    )
    hang = "<execute>\nreplace('calc.py', '    return a + b', '    while True:\\n        pass')\nfinish('x')\n</execute>"
    replay = write_replay(tmp_path / "r.yaml", [hang, "<execute>finish('y')</execute>"])
    trajectory = tmp_path / "t.jsonl"
    args = ["run", "speed", "--model", f"replay:{replay}", "--trajectory", str(trajectory)]
    run = run_cli([*args, "--test-timeout", "6", "--max-test-rounds", "0"], repo, timeout=240)
    assert run.code == 1, run.stdout + run.stderr
    report = run_events(trajectory, "observation")[0]["text"]
    assert "tests/test_calc.py::test_add" in report
    assert "did not finish" in report
    # The loop is two lines (`while True:` / `pass`): the dump catches it on either.
    assert re.search(r"calc\.py:[23]: in add", report) and "tests/test_calc.py:5: in test_add" in report
    (finish_run,) = [r for r in run_events(trajectory, "tests_run") if r["trigger"] == "finish"]
    assert finish_run["hung"] == "tests/test_calc.py::test_add"


# --json ---------------------------------------------------------------------------------------------


def test_json_mode_prints_only_the_events_of_the_trajectory(run_agent, tmp_path):
    run = run_agent(["<execute>print('hello')</execute>", "<execute>finish('done')</execute>"], "--json")
    assert run.code == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines()]  # every line is JSON
    kinds = [event["event"] for event in printed]
    assert kinds == [event["event"] for event in run.trajectory]
    for kind in ("start", "tests", "task", "step", "model_call", "action", "observation", "result", "end"):
        assert kind in kinds
    end = printed[-1]
    assert end["event"] == "end" and end["status"] == "finished_untested" and end["exit_code"] == 0
    assert "╭" not in run.stdout and run.stderr == ""
