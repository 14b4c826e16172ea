"""`--candidates` end to end: the real CLI, a real git repository, real Docker sandboxes (one per
attempt and one for the test designer) and a replay model for each."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CliRun, clean_env, git, make_repo, run_cli, wait_until, write_replay
from test_run_e2e import containers_of

from agent_cli.trajectory import read_trajectory

pytestmark = pytest.mark.docker

TASK = "clamp ignores high: clamp(50, 0, 10) should be 10"
BUGGY = "def add(a, b):\n    return a + b\n\n\ndef clamp(x, low, high):\n    return max(low, x)\n"
SUITE = (
    "from calc import add, clamp\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_clamp_low():\n    assert clamp(-5, 0, 10) == 0\n"
)
DESIGNED = "tests/test_clamp_designed.py"
DESIGNED_TESTS = (
    "from calc import clamp\n\n\ndef test_clamp_high():\n    assert clamp(50, 0, 10) == 10\n\n\n"
    "def test_clamp_inside():\n    assert clamp(5, 0, 10) == 5\n\n\n"
    "def test_clamp_at_high():\n    assert clamp(10, 0, 10) == 10\n"
)
DESIGNER = [
    f"I'll write the tests first.\n<execute>\ncreate({DESIGNED!r}, {DESIGNED_TESTS!r})\n</execute>",
    "<execute>finish('three tests for clamp')</execute>",
]
OLD = "    return max(low, x)"
WRONG = "    return max(low, x)  # clamps from below"  # harmless: the suite passes, the task is not done
RIGHT = "    return min(high, max(low, x))"
REGRESSION = "    return min(high, x)"  # passes the designed tests, breaks test_clamp_low


def edit(new: str, summary: str) -> list[str]:
    return [
        f"<execute>replace('calc.py', {OLD!r}, {new!r})</execute>",
        f"<execute>finish({summary!r})</execute>",
    ]


@pytest.fixture
def calc(tmp_path) -> Path:
    return make_repo(tmp_path / "calc", {"calc.py": BUGGY, "tests/test_calc.py": SUITE, "conftest.py": ""})


def run_candidates(
    tmp_path: Path, repo: Path, replies: list[list[str]], *extra: str, designer: bool
) -> CliRun:
    args = ["run", TASK, "--candidates", str(len(replies)), "--max-test-rounds", "0", "--no-setup"]
    for number, script in enumerate(replies, start=1):
        args += ["--candidate-model", f"replay:{write_replay(tmp_path / f'c{number}.yaml', script)}"]
    if designer:
        args += [
            "--design-tests",
            "--test-designer-model",
            f"replay:{write_replay(tmp_path / 'd.yaml', DESIGNER)}",
        ]
    args += ["--trajectory", str(tmp_path / "run.jsonl"), *extra]
    return run_cli(args, repo, timeout=600)


def the_end(run) -> dict:
    """The run's own `end` (each attempt's session has one too, tagged with its number)."""
    (end,) = [e for e in run.events("end") if "candidate" not in e]
    return end


def test_the_right_candidate_is_applied_the_others_are_kept_under_refs(tmp_path, calc, sandbox_image):
    run = run_candidates(
        tmp_path,
        calc,
        [
            edit(WRONG, "documented clamp"),
            edit(RIGHT, "clamp honours high"),
            edit(REGRESSION, "clamp to high"),
        ],
        designer=True,
    )
    assert run.code == 0, run.stdout + run.stderr
    # The right one is in the checkout, and nothing else: the designed tests stay in the run folder.
    assert (calc / "calc.py").read_text() == BUGGY.replace(OLD, RIGHT)
    assert git(calc, "status", "--porcelain") == " M calc.py\n"
    end = the_end(run)
    assert end["status"] == "finished" and end["exit_code"] == 0
    by_number = {c["number"]: c for c in end["candidates"]}
    assert len(by_number) == 3
    assert [c["number"] for c in end["candidates"] if c["won"]] == [2]
    assert (by_number[1]["category"], by_number[2]["category"], by_number[3]["category"]) == (
        "succeeded",
        "succeeded",
        "tests_failed",
    )
    assert [by_number[n]["designed_passed"] for n in (1, 2, 3)] == [2, 3, 3]
    assert by_number[2]["why"] == "most designed tests passed (3 of 3; #1: 2)"
    assert "regression" in by_number[3]["why"]  # the gate came first: 3 of 3 designed did not save it
    # Every attempt's work is kept under refs/actsmith/candidates/<run>/<n>.
    run_id = end["run_id"]
    for number, line in ((1, WRONG), (2, RIGHT), (3, REGRESSION)):
        ref = f"refs/actsmith/candidates/{run_id}/{number}"
        assert by_number[number]["ref"] == ref
        assert line in git(calc, "show", f"{ref}:calc.py")
        assert git(calc, "show", f"{ref}:{DESIGNED}") == DESIGNED_TESTS
    assert not git(calc, "branch", "--list", "actsmith/*")  # the scratch branches are gone
    kept = calc / ".actsmith" / "runs" / run_id / "designed-tests" / DESIGNED
    assert kept.read_text() == DESIGNED_TESTS
    summary = " ".join(run.stdout.replace("│", " ").split())
    assert "candidate 2 of 3 applied: most designed tests passed" in summary
    assert f"actsmith undo --run {run_id}" in summary
    # Another candidate can be taken instead, and that is undone like any run.
    show = run_cli(["candidates", "show", run_id, "3"], calc)
    assert show.code == 0 and f"+{REGRESSION}" in show.stdout
    taken = run_cli(["candidates", "apply", run_id, "1"], calc)
    assert taken.code == 0, taken.stderr
    assert (calc / "calc.py").read_text() == BUGGY.replace(OLD, WRONG)
    assert run_cli(["undo"], calc).code == 0
    assert (calc / "calc.py").read_text() == BUGGY.replace(OLD, RIGHT)
    assert run_cli(["undo", "--run", run_id], calc).code == 0  # and the run itself, as one
    assert (calc / "calc.py").read_text() == BUGGY


def test_when_every_candidate_fails_nothing_is_applied_and_the_run_exits_1(tmp_path, calc, sandbox_image):
    run = run_candidates(
        tmp_path,
        calc,
        [edit(REGRESSION, "clamp to high"), edit("    return high", "always high")],
        designer=False,
    )
    assert run.code == 1, run.stdout + run.stderr
    assert (calc / "calc.py").read_text() == BUGGY
    end = the_end(run)
    assert end["status"] == "tests_failed" and end["files_changed"] == [] and end["undo"] is None
    assert [c["category"] for c in end["candidates"]] == ["tests_failed", "tests_failed"]
    assert not any(c["won"] for c in end["candidates"])
    assert "nothing applied" in end["message"] and "the closest" in end["message"]


def test_a_candidate_that_edits_a_designed_test_gains_nothing_and_the_tests_can_be_kept(
    tmp_path, calc, sandbox_image
):
    cheat = [
        f"<execute>replace('calc.py', {OLD!r}, {WRONG!r})\n"
        f"replace({DESIGNED!r}, 'clamp(50, 0, 10) == 10', 'clamp(50, 0, 10) == 50')</execute>",
        "<execute>finish('documented clamp; the high test expected 50')</execute>",
    ]
    run = run_candidates(
        tmp_path, calc, [edit(WRONG, "documented clamp"), cheat], "--keep-designed-tests", designer=True
    )
    assert run.code == 0, run.stdout + run.stderr
    assert (calc / DESIGNED).read_text() == DESIGNED_TESTS  # applied with the change, as asked
    honest, cheater = the_end(run)["candidates"]
    # Its edit was undone at once, so it passed what the honest one passed, with the same change.
    assert cheater["designed_passed"] == honest["designed_passed"] == 2
    assert cheater["lines_changed"] == honest["lines_changed"]
    assert honest["won"] and not cheater["won"]
    assert git(calc, "show", f"{cheater['ref']}:{DESIGNED}") == DESIGNED_TESTS
    refused = [
        e["text"]
        for e in run.events("observation")
        if e.get("candidate") == 2 and "is protected" in e["text"]
    ]
    assert refused and DESIGNED in refused[0]


def test_ctrl_c_stops_every_candidate_and_leaves_no_container(tmp_path, calc, sandbox_image, docker_client):
    sleep = ["<execute>\nreplace('calc.py', 'max', 'min')\nimport time\ntime.sleep(120)\n</execute>"]
    args = ["run", TASK, "--candidates", "2", "--no-setup", "--trajectory", str(tmp_path / "run.jsonl")]
    for number in (1, 2):
        args += ["--candidate-model", f"replay:{write_replay(tmp_path / f'c{number}.yaml', sleep)}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_cli", *args],
        cwd=calc,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    trajectory = tmp_path / "run.jsonl"
    try:
        # Each action edits its worktree's calc.py, then sleeps: both are running once both edits show.
        worktrees = calc / ".git" / "actsmith" / "worktrees"
        wait_until(
            lambda: sum("min(low" in path.read_text() for path in worktrees.glob("*/calc.py")) == 2,
            180,
            "both candidates' actions",
        )
        assert len(containers_of(docker_client, proc.pid)) == 2
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert containers_of(docker_client, proc.pid) == []
    events = read_trajectory(trajectory)
    (end,) = [e for e in events if e["event"] == "end" and "candidate" not in e]
    assert end["status"] == "interrupted"
    assert [c["category"] for c in end["candidates"]] == ["interrupted", "interrupted"]
    assert (calc / "calc.py").read_text() == BUGGY  # nothing applied


def test_a_batch_spec_runs_its_tasks_candidates(tmp_path, calc, sandbox_image):
    write_replay(tmp_path / "wrong.yaml", edit(WRONG, "documented clamp"))
    write_replay(tmp_path / "right.yaml", edit(RIGHT, "clamp honours high"))
    write_replay(tmp_path / "d.yaml", DESIGNER)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "clamp",
                "candidates": 2,
                "candidate_models": ["replay:wrong.yaml", "replay:right.yaml"],
                "design_tests": True,
                "test_designer_model": "replay:d.yaml",
                "setup": [],
                "tasks": [{"id": "calc", "repo": "calc", "task": TASK}],
            }
        )
    )
    run = run_cli(["batch", "run", str(spec), "--out", str(tmp_path / "out")], tmp_path, timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "out" / "tasks" / "calc" / "result.json").read_text())
    assert result["status"] == "succeeded"
    assert [(c["number"], c["won"]) for c in result["candidates"]] == [(1, False), (2, True)]
    assert RIGHT in git(calc, "show", "actsmith/clamp/calc:calc.py")  # the winner, on the task's branch
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Candidates of calc" in report
    assert "| 2 | `replay:" in report and "**applied**: most designed tests passed (3 of 3; #1: 2)" in report


def test_actsmith_ci_runs_candidates_and_its_comment_shows_them(tmp_path, sandbox_image):
    from ci_helpers import HELLO, REPOSITORY, TOKEN, Actions
    from github_stub import GitHubStub

    stub = GitHubStub(REPOSITORY, TOKEN).start()
    stub.add_collaborator("monalisa", 583231, "write")  # who labels the issue in the fixture
    try:
        actions = Actions(tmp_path, stub)
        breaks = "<execute>\nreplace('app.py', \"return 'hi'\", \"return 'bye'\")\nfinish('bye')\n</execute>"
        models = [
            write_replay(tmp_path / f"ci-{n}.yaml", [script]) for n, script in ((1, breaks), (2, HELLO))
        ]
        ran = actions.run(
            "issues",
            actions.event("issues_labeled"),
            [HELLO],
            "--candidates",
            "2",
            "--max-test-rounds",
            "0",
            *(option for path in models for option in ("--candidate-model", f"replay:{path}")),
        )
        assert ran.code == 0, ran.stdout + ran.stderr
        assert "return 'hello'" in actions.origin_file("refs/heads/actsmith/issue-5", "app.py")
        assert ran.outputs["conclusion"] == "success"
        (bodies,) = stub.comment_bodies.values()  # one comment, edited in place
        final = bodies[-1]
        assert "**Candidates**" in final and "| # | model | outcome |" in final
        assert "| 1 | `replay:" in final and "| tests_failed |" in final
        assert "**applied**: the only one with a change the gate accepted" in final
    finally:
        stub.stop()
