"""The test-runner agent without Docker: detection on fixture trees, parsers on real runner output,
the comparison with the baseline, and the gate's rounds driven by a scripted executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_cli.model import ModelReply, Usage
from agent_cli.sandbox import RunTests, control_from
from agent_cli.testing.compare import compare, mentioned
from agent_cli.testing.detect import TestCommand, configured_command, detect_test_command
from agent_cli.testing.execute import Job, RawRun
from agent_cli.testing.gate import SuiteRunner, Summariser
from agent_cli.testing.parsers import parse_results, trim_traceback
from agent_cli.testing.results import SuiteRun, TestResult

FIXTURES = Path(__file__).parent / "fixtures" / "testrunner"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


# ------------------------------------------------------------------------------------------- detection

WORKDIR, SCRATCH = "/workspace", "/tmp/actsmith"
UNITTEST_FILE = "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        pass\n"


@pytest.mark.parametrize(
    ("files", "command", "reason"),
    [
        (
            {"conftest.py": "", "tests/test_a.py": "def test_a(): pass\n"},
            "python3 -m pytest -q",
            "conftest.py",
        ),
        (
            {"pyproject.toml": "[tool.pytest.ini_options]\n", "src/a.py": ""},
            "python3 -m pytest -q",
            "pyproject",
        ),
        ({"tests/test_a.py": "import pytest\n"}, "python3 -m pytest -q", "imports pytest"),
        (
            {"requirements-dev.txt": "pytest>=8\n", "t/test_a.py": UNITTEST_FILE},
            "python3 -m pytest -q",
            "dependency",
        ),
        ({"test_plain.py": "def test_a():\n    assert 1\n"}, "python3 -m pytest -q", "test_plain.py"),
        ({"tests/test_a.py": UNITTEST_FILE}, "python3 -m unittest discover -v -s tests", "unittest"),
        (
            {"tests/__init__.py": "", "tests/test_a.py": UNITTEST_FILE, "pkg/__init__.py": ""},
            "python3 -m unittest discover -v",
            "unittest",
        ),
        ({"package.json": json.dumps({"scripts": {"test": "jest"}})}, "npm test", "jest"),
        (
            {"package.json": json.dumps({"scripts": {"test": "vitest run"}}), "yarn.lock": ""},
            "yarn test",
            "vitest",
        ),
        (
            {"package.json": '{"scripts": {"test": "node --test"}}', "pnpm-lock.yaml": ""},
            "pnpm test",
            "node --test",
        ),
        (
            {"go.mod": "module example.com/calc\n", "calc.go": "package calc\n"},
            "go test -json ./...",
            "go.mod",
        ),
        (
            {"Cargo.toml": "[package]\nname = 'calc'\n", "src/lib.rs": ""},
            "cargo test --no-fail-fast",
            "Cargo.toml",
        ),
        ({"Makefile": "build:\n\tcc x.c\n\ntest: build\n\t./run-tests\n"}, "make test", "Makefile"),
    ],
)
def test_detection_picks_the_ecosystems_command(tmp_path, files, command, reason):
    found = detect_test_command(tree(tmp_path, files))
    assert found is not None
    assert found.command == command
    assert reason in found.reason


@pytest.mark.parametrize(
    "files",
    [
        {"README.md": "# nothing to test\n", "app.py": "print(1)\n"},
        {"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})},
        {"Makefile": "TEST := 1\nall:\n\techo\n"},
        {"node_modules/x/test_thing.py": "import pytest\n", "venv/lib/test_y.py": "def test_y(): pass\n"},
    ],
)
def test_detection_finds_nothing_where_there_are_no_tests(tmp_path, files):
    assert detect_test_command(tree(tmp_path, files)) is None


def test_the_first_ecosystem_wins_and_the_others_are_named(tmp_path):
    files = {
        "tests/test_a.py": "def test_a(): pass\n",
        "package.json": json.dumps({"scripts": {"test": "jest"}}),
        "Makefile": "test:\n\tpytest\n",
    }
    found = detect_test_command(tree(tmp_path, files))
    assert found.command == "python3 -m pytest -q"
    assert "also found `npm test`" in found.reason and "`make test`" in found.reason


def test_a_configured_command_is_used_as_it_is_and_never_narrowed():
    command = configured_command("make check")
    assert (command.command, command.kind, command.configured) == ("make check", "custom", True)
    assert command.select(["tests/test_a.py::test_a"]) is None
    assert configured_command("pytest -x tests").kind == "pytest"


def test_failing_tests_can_be_selected_for_pytest_go_and_cargo(tmp_path):
    pytest_cmd = detect_test_command(tree(tmp_path / "py", {"conftest.py": ""}))
    assert (
        pytest_cmd.select(["tests/test_a.py::test_x[1 2]"])
        == "python3 -m pytest -q 'tests/test_a.py::test_x[1 2]'"
    )
    go_cmd = detect_test_command(tree(tmp_path / "go", {"go.mod": "module m\n"}))
    assert go_cmd.select(["m/calc::TestAdd", "m/calc::TestTable/zero"]) == (
        "go test -json -run '^(TestAdd|TestTable)$' m/calc"
    )
    cargo_cmd = detect_test_command(tree(tmp_path / "rs", {"Cargo.toml": ""}))
    assert cargo_cmd.select(["tests::adds"]) == "cargo test --no-fail-fast -- --exact tests::adds"
    unittest_cmd = detect_test_command(tree(tmp_path / "ut", {"tests/test_a.py": UNITTEST_FILE}))
    assert unittest_cmd.select(["test_a.T.test_x"]) is None  # its ids depend on -s: rerun the suite


# --------------------------------------------------------------------------------------------- parsers


def results_of(kind: str, fixture: str, root: str = "/workspace") -> tuple[str, dict[str, TestResult]]:
    text = (FIXTURES / fixture).read_text()
    if fixture.endswith(".xml"):
        return parse_results(kind, "", {"junit.xml": text}, root)
    return parse_results(kind, text, {}, root)


def test_pytest_junit_gives_ids_assertions_values_and_repository_frames():
    fmt, results = results_of("pytest", "pytest7_junit.xml")
    assert fmt == "junit"
    add = results["tests/test_calc.py::test_add"]
    assert (add.outcome, add.expected, add.actual) == ("failed", "3", "-1")
    assert add.message.startswith("assert -1 == 3")
    assert add.traceback == "tests/test_calc.py:6: in test_add\n    assert add(1, 2) == 3"
    assert results["tests/test_calc.py::TestThing::test_param[1]"].outcome == "passed"
    assert results["tests/test_calc.py::TestThing::test_list"].expected == "[1, 2, 4]"
    div = results["tests/test_calc.py::test_div"]
    assert div.message == "ZeroDivisionError: division by zero"
    assert "calc.py:8: in helper" in div.traceback
    collection = results["tests/test_broken.py"]
    assert collection.outcome == "error" and "No module named 'nonexistent_module'" in collection.message
    assert "/usr/lib/python3" not in collection.traceback and "1 frame outside" in collection.traceback
    assert "in a fixture" in results["tests/test_calc.py::test_fixture"].message
    assert results["tests/test_calc.py::test_skip"].outcome == "skipped"


def test_junit_with_a_doctype_is_refused():
    xml = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites><testcase name="t"/></testsuites>'
    )
    assert parse_results("pytest", "", {"junit.xml": xml}, "/workspace") == ("raw", {})


def test_go_json_gives_subtests_testify_values_panics_and_build_failures():
    fmt, results = results_of("go", "go_test.jsonl")
    assert fmt == "go-json"
    add = results["example.com/calc::TestAdd"]
    assert (add.message, add.expected, add.actual, add.traceback) == (
        "Add(1, 2) = -1, want 3",
        "3",
        "-1",
        "calc_test.go:9",
    )
    assert "example.com/calc::TestTable" not in results  # its failing subtest stands for it
    table = results["example.com/calc::TestTable/zero"]
    assert (table.expected, table.actual) == ("0", "7")
    panic = results["example.com/calc::TestPanics"]
    assert panic.message.startswith("panic: runtime error: integer divide by zero")
    assert "calc.go:8" in panic.traceback and "/usr/local/go" not in panic.traceback
    assert "undefined: missing" in results["example.com/calc/broken"].message
    assert results["example.com/calc::TestSub"].outcome == "passed"
    assert "example.com/calc/util" not in results  # no test files is not a failure


@pytest.mark.parametrize("fixture", ["cargo_plain.txt", "cargo_backtrace.txt"])
def test_cargo_libtest_output_gives_left_and_right(fixture):
    fmt, results = results_of("cargo", fixture)
    assert fmt == "libtest"
    adds = results["tests::adds"]
    assert (adds.outcome, adds.message, adds.expected, adds.actual) == (
        "failed",
        "assertion `left == right` failed",
        "3",
        "-1",
    )
    assert "src/lib.rs:11:9" in adds.traceback
    assert "/rustc/" not in adds.traceback
    assert results["tests::works"].outcome == "passed"


def test_unittest_verbose_output_gives_every_outcome():
    fmt, results = results_of("unittest", "unittest_verbose.txt")
    assert fmt == "unittest"
    assert {i: r.outcome for i, r in results.items()} == {
        "test_calc.TestCalc.test_add": "failed",
        "test_calc.TestCalc.test_div": "error",
        "test_calc.TestCalc.test_ok": "passed",  # its docstring line carries the status
        "test_calc.TestCalc.test_skip": "skipped",
        "test_calc.TestCalc.test_words": "failed",
    }
    add = results["test_calc.TestCalc.test_add"]
    assert (add.message, add.expected, add.actual) == ("AssertionError: -1 != 3", "3", "-1")
    assert 'File "tests/test_calc.py", line 8, in test_add' in add.traceback
    assert 'File "calc.py", line 6, in div' in results["test_calc.TestCalc.test_div"].traceback


def test_output_no_parser_knows_stays_raw():
    assert parse_results("npm", "FAIL src/a.test.js\n  ● adds\n", {}, "/workspace") == ("raw", {})


def test_tracebacks_keep_only_frames_inside_the_repository():
    text = (
        "Traceback (most recent call last):\n"
        '  File "/workspace/app/main.py", line 3, in run\n'
        "    helper()\n"
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "ValueError: bad\n"
    )
    assert trim_traceback(text, "/workspace") == (
        "[1 frame outside the repository left out]\n"
        "Traceback (most recent call last):\n"
        '  File "app/main.py", line 3, in run\n'
        "    helper()\n"
        "ValueError: bad"
    )


# -------------------------------------------------------------------------------------------- compare


def run_of(outcomes: dict[str, str], **fields) -> SuiteRun:
    results = {
        i: TestResult(i, o, message=f"{i} broke" if o == "failed" else "") for i, o in outcomes.items()
    }
    failing = any(o == "failed" for o in outcomes.values())
    base = {"exit_code": 1 if failing else 0, "timed_out": False, "duration_s": 1.0, "output": ""}
    base.update(fields)
    return SuiteRun("python3 -m pytest -q", "finish", format="junit", results=results, **base)


def test_regressions_block_while_failures_from_before_the_run_never_do():
    baseline = run_of({"t::a": "passed", "t::b": "failed", "t::c": "failed", "t::d": "passed"})
    now = run_of({"t::a": "failed", "t::b": "failed", "t::c": "passed", "t::d": "passed", "t::new": "failed"})
    result = compare(now, baseline, task="make t::b pass")
    assert [t.id for t in result.regressions] == ["t::a"]
    assert [t.id for t in result.new_failures] == ["t::new"]
    assert [t.id for t in result.task_failures] == []  # "b" is too short to count as named
    assert [t.id for t in result.preexisting] == ["t::b"]
    assert result.fixed == ["t::c"]
    assert result.blocks
    fixed = compare(run_of({"t::a": "passed", "t::b": "failed", "t::d": "passed"}), baseline)
    assert not fixed.blocks
    assert fixed.not_run == []  # t::c failed before: only tests that passed count as gone


def test_a_test_the_task_names_is_listed_first_among_old_failures():
    test = TestResult("tests/test_calc.py::test_subtract", "failed")
    assert mentioned("Make test_subtract pass", test)
    assert mentioned("fix the failures in tests/test_calc.py", test)
    assert not mentioned("speed up the parser", test)


def test_a_hang_blocks_only_when_the_suite_finished_before_the_run():
    baseline = run_of({"t::a": "passed"})
    hung = run_of({"t::a": "passed"}, timed_out=True, exit_code=-9, stopped_at="tests/test_a.py:7")
    result = compare(hung, baseline)
    assert result.command_blocks and "stopped in tests/test_a.py:7" in result.command_problem
    assert not compare(hung, run_of({}, timed_out=True)).command_blocks


def test_raw_output_compares_exit_codes():
    raw = {"format": "raw", "results": {}}
    passed_before = SuiteRun("make test", "baseline", 0, False, 1.0, "ok", **raw)
    failed_before = SuiteRun("make test", "baseline", 2, False, 1.0, "boom", **raw)
    fails_now = SuiteRun("make test", "finish", 2, False, 1.0, "boom", **raw)
    assert compare(fails_now, passed_before).command_blocks
    assert not compare(fails_now, failed_before).command_blocks


def test_a_baseline_that_stopped_early_makes_unknown_tests_non_blocking():
    partial = run_of({"t::a": "passed"}, timed_out=True)
    result = compare(run_of({"t::a": "passed", "t::b": "failed"}), partial)
    assert not result.new_failures and [t.id for t in result.preexisting] == ["t::b"]


# ------------------------------------------------------------------------------- run_tests() requests


def test_run_tests_requests_arrive_as_typed_control_values():
    assert control_from({"kind": "run_tests", "command": "make t", "timeout": 5}) == RunTests("make t", 5.0)
    assert control_from({"kind": "run_tests", "command": None, "timeout": None}) == RunTests()
    # What reached the host passed through the model's code: nonsense is dropped, never trusted.
    assert control_from({"kind": "run_tests", "command": "  ", "timeout": -1}) == RunTests()
    assert control_from({"kind": "rm -rf"}) is None and control_from("finish") is None


# ------------------------------------------------------------------------------ the gate, scripted


def junit(outcomes: dict[str, str]) -> str:
    cases = []
    for name, outcome in outcomes.items():
        inner = (
            '<failure message="assert 1 == 2">tests/test_a.py:3: in x</failure>'
            if outcome == "failed"
            else ""
        )
        cases.append(
            f'<testcase classname="tests.test_a" name="{name}" file="tests/test_a.py">{inner}</testcase>'
        )
    return f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>"


class ScriptedExecutor:
    """Answers each job from a function of its command; records what ran."""

    def __init__(self, answer):
        self.answer = answer
        self.jobs: list[Job] = []

    def run(self, job: Job) -> RawRun:
        self.jobs.append(job)
        return self.answer(job)


def pytest_answer(state: dict[str, str]):
    def answer(job: Job) -> RawRun:
        selected = [name for name in state if f"::{name}" in job.command]
        outcomes = {n: state[n] for n in selected} if selected else dict(state)
        failing = "failed" in outcomes.values()
        return RawRun(exit_code=int(failing), output="...", reports={"junit.xml": junit(outcomes)})

    return answer


def gate_runner(executor, **kwargs) -> SuiteRunner:
    command = TestCommand("python3 -m pytest -q", "pytest", "detected")
    runner = SuiteRunner(command, executor, WORKDIR, SCRATCH, snapshot=lambda: b"tar", **kwargs)
    runner.start_baseline()
    return runner


def test_the_gate_sends_regressions_back_then_ends_the_run_past_the_round_limit():
    state = {"test_a": "passed", "test_b": "failed"}
    executor = ScriptedExecutor(pytest_answer(state))
    runner = gate_runner(executor, max_rounds=2)
    assert executor.jobs[0].snapshot == b"tar" and executor.jobs[0].cwd == f"{SCRATCH}/baseline"
    state["test_a"] = "failed"
    verdicts = [runner.gate(step, 100.0) for step in (3, 4, 5)]
    assert [(v.passed, v.final) for v in verdicts] == [(False, False), (False, False), (False, True)]
    assert "report 1 of 2" in verdicts[0].report and "report 2 of 2" in verdicts[1].report
    assert "tests/test_a.py::test_a" in verdicts[0].report and "assert 1 == 2" in verdicts[0].report
    assert "still fail after 2 reports" in verdicts[2].report
    # Failing first: later rounds ran only the regression, the full suite never again while it failed.
    assert [j.command for j in executor.jobs[2:]] == ["python3 -m pytest -q tests/test_a.py::test_a"] * 2
    assert runner.summary().state == "failed"


def test_the_gate_runs_the_whole_suite_once_the_failing_tests_pass():
    state = {"test_a": "passed", "test_b": "failed", "test_c": "passed"}
    executor = ScriptedExecutor(pytest_answer(state))
    runner = gate_runner(executor)
    state["test_a"] = "failed"
    assert not runner.gate(2, 100.0).passed
    state["test_a"] = "passed"
    assert runner.gate(3, 100.0).passed
    assert [j.command for j in executor.jobs[-2:]] == [
        "python3 -m pytest -q tests/test_a.py::test_a",
        "python3 -m pytest -q",
    ]
    summary = runner.summary()
    assert summary.state == "passed" and "1 failure from before the run" in summary.text
    assert "before your first edit: 2 passed, 1 failed" in runner.status()


def test_without_the_gate_finish_is_never_held_and_run_tests_still_reports():
    executor = ScriptedExecutor(pytest_answer({"test_a": "failed"}))
    runner = SuiteRunner(
        configured_command("python3 -m pytest -q"),
        executor,
        WORKDIR,
        SCRATCH,
        gate_on=False,
        snapshot=lambda: b"",
    )
    runner.start_baseline()
    assert executor.jobs == []  # no baseline
    assert runner.gate(1, 100.0).passed
    report = runner.check(2, RunTests(), 100.0).report
    assert "Failing (1)" in report and "tests/test_a.py::test_a" in report


class ReplySummary:
    name = "replay:summary"

    def __init__(self):
        self.messages = []

    def complete(self, messages, *, timeout=None):
        self.messages.append(messages)
        return ModelReply("make test fails: widget.c:12 expected 4, got 5", Usage(10, 5, 0.0), self.name, 0.1)


def test_long_raw_output_is_condensed_by_the_summary_model():
    long_output = "\n".join(f"line {i} of noisy build output" for i in range(400)) + "\nFAIL widget\n"
    executor = ScriptedExecutor(lambda job: RawRun(exit_code=2, output=long_output))
    model = ReplySummary()
    runner = SuiteRunner(
        configured_command("make test"),
        executor,
        WORKDIR,
        SCRATCH,
        gate_on=False,
        summariser=Summariser(model),
    )
    verdict = runner.check(1, RunTests(), 100.0)
    assert "widget.c:12 expected 4, got 5" in verdict.report
    assert "FAIL widget" in verdict.report  # the tail is still shown
    assert "FAIL widget" in model.messages[0][0]["content"] and "make test" in model.messages[0][0]["content"]
    assert verdict.usage.total_tokens == 15
    short = SuiteRunner(
        configured_command("make test"),
        ScriptedExecutor(lambda job: RawRun(exit_code=2, output="boom")),
        WORKDIR,
        SCRATCH,
    )
    short.summariser = Summariser(model)
    assert "boom" in short.check(1, RunTests(), 100.0).report and len(model.messages) == 1
