"""The test gate end to end: the real CLI, real pytest and unittest suites in temp git repositories,
the real Docker sandbox, replay models. Assertions read the text the model received next, from the
trajectory's model_call events."""

from __future__ import annotations

import re

import pytest
from conftest import CliRun, make_repo, run_cli, write_replay

pytestmark = pytest.mark.docker

CALC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = (
    "import time\n\nfrom calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    time.sleep(1.5)  # keeps the baseline busy while the model makes its first edit\n"
    "    assert mul(2, 3) == 6\n"
)
TEST_LEGACY = 'def test_version_string():\n    assert "1.0" == "1.00"  # broken before any run\n'
BREAK_ADD = "<execute>\nreplace('calc.py', 'return a + b', 'return a - b')\n</execute>"
RESTORE_ADD = (
    "<execute>\nreplace('calc.py', 'return a - b', 'return a + b')\nfinish('restored add')\n</execute>"
)
FINISH = "<execute>\nfinish('changed add')\n</execute>"


@pytest.fixture
def calc_repo(tmp_path):
    return make_repo(
        tmp_path / "calc",
        {"calc.py": CALC, "tests/test_calc.py": TEST_CALC, "tests/test_legacy.py": TEST_LEGACY},
    )


def run_replies(repo, tmp_path, replies: list[str], *extra: str, task: str = "improve calc") -> CliRun:
    replay = write_replay(tmp_path / "replay.yaml", replies)
    trajectory = tmp_path / "trajectory.jsonl"
    args = ["run", task, "--model", f"replay:{replay}", "--trajectory", str(trajectory), *extra]
    return run_cli(args, repo, timeout=240)


def summary_text(run: CliRun) -> str:
    """The terminal output with the panel's borders and line wrapping taken out."""
    return " ".join(run.stdout.replace("│", " ").split())


def sent_to_model(run: CliRun) -> list[str]:
    """The last message of every model call: the observation plus the state block, as sent."""
    return [call["messages"][-1]["content"] for call in run.events("model_call") if call["role"] == "coder"]


def test_a_finish_that_breaks_a_test_is_sent_back_and_the_fix_finishes_with_exit_0(
    calc_repo, tmp_path, sandbox_image
):
    run = run_replies(calc_repo, tmp_path, [BREAK_ADD, FINISH, RESTORE_ADD])
    assert run.code == 0, run.stdout + run.stderr
    before_edit, after_edit, after_finish = sent_to_model(run)
    # The edit came while the baseline was still running; it ran on the pre-run copy regardless.
    assert "before your first edit: still running" in before_edit
    assert "before your first edit: still running" in after_edit
    assert "finish() was not accepted" in after_finish
    assert "Regressions: passed before your first edit, fail now (1):" in after_finish
    assert "- tests/test_calc.py::test_add\n  assert -1 == 5" in after_finish
    assert "expected: 5\n  actual:   -1" in after_finish
    assert "tests/test_calc.py:7: in test_add" in after_finish
    # The failure that predates the run is listed apart and never blocks.
    preexisting = after_finish.split("Failing before your first edit too")[1]
    assert "tests/test_legacy.py::test_version_string" in preexisting
    assert "tests/test_legacy.py" not in after_finish.split("Failing before your first edit too")[0]
    assert "before your first edit: 2 passed, 1 failed" in after_finish  # the state block
    result = run.events("result")[0]
    assert (result["status"], result["exit_code"]) == ("finished", 0)
    baseline = next(e for e in run.events("tests_run") if e["trigger"] == "baseline")
    assert baseline["failing"] == ["tests/test_legacy.py::test_version_string"]
    last = run.events("tests_run")[-1]
    assert (last["trigger"], last["scope"], last["failing"]) == (
        "finish",
        "full",
        ["tests/test_legacy.py::test_version_string"],
    )
    # Detection says what it chose, in the terminal and the trajectory.
    assert "tests: `python3 -m pytest -q` (found Python tests such as tests/test_calc.py)" in run.stderr
    assert run.events("tests")[0]["command"] == "python3 -m pytest -q"
    assert (
        "tests 2 passed, 1 failed (before the run: 2 passed, 1 failed); 1 failure from before"
        in summary_text(run)
    )


def test_a_regression_never_fixed_ends_the_run_with_exit_1_after_the_round_limit(
    calc_repo, tmp_path, sandbox_image
):
    run = run_replies(calc_repo, tmp_path, [BREAK_ADD, FINISH, FINISH], "--max-test-rounds", "1")
    assert run.code == 1, run.stdout + run.stderr
    assert len(run.events("model_call")) == 3
    assert "This is report 1 of 1" in sent_to_model(run)[2]
    result = run.events("result")[0]
    assert (result["status"], result["exit_code"]) == ("tests_failed", 1)
    assert "still fail after 1 round" in result["message"]
    final_report = run.events("observation")[-1]["text"]
    assert "finish() ends the run, but the tests still fail" in final_report
    assert "tests/test_calc.py::test_add" in final_report
    summary = summary_text(run)
    assert "tests still failing after 1 round:" in summary
    assert "1 regression (tests/test_calc.py::test_add)" in summary


def test_a_suite_that_hangs_is_cut_by_its_timeout(calc_repo, tmp_path, sandbox_image):
    hang = "<execute>\nreplace('calc.py', '    return a + b', '    while True:\\n        pass')\nfinish('x')\n</execute>"
    fix = "<execute>\nreplace('calc.py', '    while True:\\n        pass', '    return a + b')\nfinish('fixed')\n</execute>"
    run = run_replies(calc_repo, tmp_path, [hang, fix], "--test-timeout", "6")
    assert run.code == 0, run.stdout + run.stderr
    report = sent_to_model(run)[1]
    # The time it ran is measured (6 s or a little more on a loaded machine), not asserted.
    assert re.search(
        r"the tests did not finish within \d+ s \(stopped in tests/test_calc.py::test_add\)", report
    )
    assert "which did not happen before your first edit" in report
    hung = next(e for e in run.events("tests_run") if e["trigger"] == "finish")
    assert hung["timed_out"] and hung["hung"] == "tests/test_calc.py::test_add"


def test_run_tests_reports_unittest_failures_and_no_tests_turns_the_gate_off(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "ut",
        {
            "calc.py": CALC,
            "tests/test_calc.py": (
                "import unittest\n\nfrom calc import add\n\n\nclass TestCalc(unittest.TestCase):\n"
                "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
            ),
        },
    )
    replies = [
        BREAK_ADD,
        "<execute>\nprint('checking')\nrun_tests()\nprint('never printed')\n</execute>",
        FINISH,
    ]
    run = run_replies(repo, tmp_path, replies, "--no-tests")
    assert run.code == 0, run.stdout + run.stderr  # no gate: finish() ends the run despite the failure
    report = sent_to_model(run)[2]
    assert report.startswith("stdout:\nchecking\n") and "never printed" not in report
    assert "Ran `python3 -m unittest discover -v -s tests` after step 2" in report
    assert "- test_calc.TestCalc.test_add\n  AssertionError: -1 != 5\n  expected: 5\n  actual:   -1" in report
    assert 'File "tests/test_calc.py", line 8, in test_add' in report
    assert [e["trigger"] for e in run.events("tests_run")] == ["run_tests"]  # no baseline, no gate run
    assert "no baseline or gate (--no-tests)" in run.stderr


def test_a_configured_command_with_raw_output_is_condensed_by_the_summary_model(
    calc_repo, tmp_path, sandbox_image
):
    script = "import sys\nfor i in range(600):\n    print('noise', i)\nprint('FAILED widget: expected 4, got 5')\nsys.exit(3)\n"
    (calc_repo / "check.py").write_text(script)
    summary = write_replay(tmp_path / "summary.yaml", ["widget fails: expected 4, got 5 (check.py)"])
    replies = ["<execute>\nrun_tests()\n</execute>", "<execute>\nfinish('looked')\n</execute>"]
    run = run_replies(
        calc_repo, tmp_path, replies, "--test-cmd", "python3 check.py", "--summary-model", f"replay:{summary}"
    )
    assert run.code == 0, run.stdout + run.stderr  # the command failed before the run too: no block
    report = sent_to_model(run)[1]
    assert "Diagnosis (a model condensed" in report and "widget fails: expected 4, got 5" in report
    assert "FAILED widget: expected 4, got 5" in report  # the tail of the raw output is kept
    summary_calls = [c for c in run.events("model_call") if c.get("role") == "test_summary"]
    assert len(summary_calls) == 1 and "noise 599" in summary_calls[0]["messages"][0]["content"]


def test_without_a_summary_model_a_replay_gets_the_raw_tail_and_keeps_every_reply(
    calc_repo, tmp_path, sandbox_image
):
    script = "import sys\nfor i in range(600):\n    print('noise', i)\nprint('FAILED widget: expected 4, got 5')\nsys.exit(3)\n"
    (calc_repo / "check.py").write_text(script)
    replies = ["<execute>\nrun_tests()\n</execute>", "<execute>\nfinish('looked')\n</execute>"]
    run = run_replies(calc_repo, tmp_path, replies, "--test-cmd", "python3 check.py")
    assert run.code == 0, run.stdout + run.stderr  # the finish() reply reached the coder, not a summariser
    report = sent_to_model(run)[1]
    assert "Diagnosis" not in report and "Last lines of the output (561 earlier lines not shown):" in report
    assert "FAILED widget: expected 4, got 5" in report
    assert [c["role"] for c in run.events("model_call")] == ["coder", "coder"]
