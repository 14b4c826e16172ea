"""The test report the model reads: failures grouped by error signature, under a hard size cap, whatever
the number of failures. Synthetic JUnit XML through the real parser and gate (scripted executor), then
the real CLI with Docker and a replay model on a repository where one change fails 300 tests alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

import pytest
from conftest import make_repo, run_cli, write_replay

from agent_cli.model import ModelReply, Usage
from agent_cli.sandbox import RunTests
from agent_cli.testing.detect import TestCommand, configured_command
from agent_cli.testing.execute import Job, RawRun
from agent_cli.testing.gate import SuiteRunner, Summariser
from agent_cli.testing.report import REPORT_MAX_CHARS, signature
from agent_cli.testing.results import TestResult

COMMAND = TestCommand("python3 -m pytest -q", "pytest", "detected")
WORKDIR, SCRATCH = "/workspace", "/tmp/actsmith"


class Executor:
    """Answers every test run with `answer(job)`."""

    def __init__(self, answer: Callable[[Job], RawRun]):
        self.answer = answer

    def run(self, job: Job) -> RawRun:
        return self.answer(job)


def case(file: str, name: str, message: str | None = None, trace: str = "") -> str:
    module = file.removesuffix(".py").replace("/", ".")
    failure = f"<failure message={quoteattr(message)}>{escape(trace)}</failure>" if message else ""
    return f'<testcase classname="{module}" name="{name}" file="{file}">{failure}</testcase>'


def junit(cases: list[str]) -> str:
    return f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>"


def reports_after(before: str, after: str) -> list[str]:
    """The reports of three refused finish() calls, the last one final: the baseline gets `before`,
    every later run `after`."""
    runs = iter([before])
    executor = Executor(
        lambda job: RawRun(exit_code=1, output="...", reports={"junit.xml": next(runs, after)})
    )
    runner = SuiteRunner(COMMAND, executor, WORKDIR, SCRATCH, max_rounds=2, snapshot=lambda: b"tar")
    runner.start_baseline()
    return [runner.gate(step, 100.0).report for step in (2, 3, 4)]


def group_counts(report: str, title: str) -> tuple[int, list[int], int]:
    """(the section's test count, each group's count as listed, the tests said to be left out)."""
    section = report.split(title)[1].split("\n\n")[0]
    total = int(re.match(r" \((\d+)", section).group(1))
    counts = []
    for line in section.splitlines()[1:]:
        if match := re.match(r"- (\d+) tests ", line):
            counts.append(int(match.group(1)))
        elif line.startswith("- ") and not line.startswith("- and "):
            counts.append(1)
    hidden = re.search(r"^- and \d+ more errors? \((\d+) tests?\) not shown", section, re.MULTILINE)
    return total, counts, int(hidden.group(1)) if hidden else 0


TRACE = (
    "tests/test_widget.py:14: in test_paint\n    paint(widget, colour)\n"
    "widget.py:40: in paint\n    return widget.colour.rgb()\n"
    "E   AttributeError: 'Widget' object has no attribute 'colour'"
)


def test_600_identical_failures_read_as_one_group_of_600():
    before = junit([case("tests/test_widget.py", f"test_paint[{n}]") for n in range(600)])
    after = junit(
        [
            case(
                "tests/test_widget.py",
                f"test_paint[{n}]",
                f"AttributeError: 'Widget' object at 0x7f3a{n:04x} has no attribute 'colour'",
                TRACE,
            )
            for n in range(600)
        ]
    )
    report = reports_after(before, after)[0]
    assert len(report) <= REPORT_MAX_CHARS
    assert "Regressions: passed before your first edit, fail now (600 tests, 1 distinct error):" in report
    assert "- 600 tests with the same error (tests/test_widget.py::test_paint[0], " in report
    assert "AttributeError: 'Widget' object at 0x7f3a0000 has no attribute 'colour'" in report
    assert "widget.py:40: in paint" in report  # the first one's traceback, inside the repository
    assert report.count("has no attribute 'colour'") == 1  # one group, told once
    assert group_counts(report, "fail now") == (600, [600], 0)


EXCEPTIONS = ("AttributeError", "TypeError", "KeyError", "ValueError", "NameError")
WHAT = ("reader", "writer", "handler", "resolver", "stream", "future", "timer", "socket", "request", "cookie")


def tornado_like() -> tuple[str, str, int]:
    """1,000 tests of which 874 fail with 50 distinct errors and long tracebacks: 2 of the errors
    (35 tests) failed before the run too."""
    deep = "".join(
        f"tornado/layer{d}.py:{d * 10}: in call_{d}\n    return call_{d + 1}(x)\n" for d in range(30)
    )
    before, after, failing = [], [], 0
    for n in range(1000):
        file, name = f"tornado/test/test_mod{n % 25}.py", f"test_case_{n}"
        kind = n % 50
        message = f"{EXCEPTIONS[kind % 5]}: the {WHAT[kind // 5]} of 'tornado.util' failed at call {n}"
        trace = f"{file}:{n}: in {name}\n    call_0(x)\n" + deep + f"E   {message}"
        fails, failed_before = n < 874, n < 874 and n % 25 == 3
        failing += fails
        before.append(case(file, name, message if failed_before else None, trace))
        after.append(case(file, name, message if fails else None, trace))
    return junit(before), junit(after), failing


def test_874_failures_of_50_errors_stay_under_the_cap_and_every_count_adds_up():
    before, after, failing = tornado_like()
    assert failing == 874
    reports = reports_after(before, after)
    for report in reports:
        assert len(report) <= REPORT_MAX_CHARS, len(report)
        assert "Ran `python3 -m pytest -q` after step" in report and ": 126 passed, 874 failed." in report
        regressions = group_counts(report, "Regressions: passed before your first edit, fail now")
        older = group_counts(
            report, "unrelated to the task as far as the harness can tell (they never block finish())"
        )
        assert regressions[0] + older[0] == 874
        for total, counts, hidden in (regressions, older):
            assert sum(counts) + hidden == total and counts == sorted(counts, reverse=True)
        assert "(839 tests, 48 distinct errors):" in report and "(35 tests, 2 distinct errors):" in report
        assert re.search(r"^- and \d+ more errors \(\d+ tests\) not shown", report, re.MULTILINE)
        assert "tornado/test/test_mod0.py::test_case_0" in report and "TypeError: the reader of" in report
        assert "tornado/layer29.py:290: in call_29" in report  # the innermost frame, where it was raised
    assert "finish() ends the run" in reports[-1]


class Chatty:
    """A summary model that ignores the prompt's 15-line limit."""

    name = "chatty"

    def complete(self, messages, *, timeout=None):
        return ModelReply(
            "\n".join(f"widget {n} failed: " + "why " * 200 for n in range(200)), Usage(), "chatty", 0.0
        )


def test_raw_output_of_long_lines_and_a_chatty_diagnosis_stay_under_the_cap():
    output = "\n".join(f"{n} " + "noise " * 1_000 for n in range(200)) + "\nFAIL widget\n"
    executor = Executor(lambda job: RawRun(exit_code=2, output=output))
    runner = SuiteRunner(
        configured_command("make test"), executor, WORKDIR, SCRATCH, summariser=Summariser(Chatty())
    )
    report = runner.check(1, RunTests(), 100.0).report
    assert len(report) <= REPORT_MAX_CHARS
    assert "Diagnosis (a model condensed" in report and "widget 0 failed: why why" in report
    assert "Last lines of the output (" in report and "FAIL widget" in report


def test_ids_of_thousands_of_characters_are_cut_and_the_groups_still_shown():
    names = [f"test_{n}[" + "x" * 7_000 + "]" for n in range(3)]
    before = junit([case("tests/test_a.py", name) for name in names])
    report = reports_after(
        before, junit([case("tests/test_a.py", name, "AssertionError: no") for name in names])
    )[0]
    assert len(report) <= REPORT_MAX_CHARS
    assert (
        "- 3 tests with the same error (tests/test_a.py::test_0[xxx" in report
        and "AssertionError: no" in report
    )


def test_a_report_that_cannot_fit_even_with_the_least_detail_is_cut_with_a_note():
    command = configured_command("python3 check.py " + "--verbose " * 1_000)
    runner = SuiteRunner(command, Executor(lambda job: RawRun(exit_code=2, output="boom")), WORKDIR, SCRATCH)
    report = runner.check(1, RunTests(), 100.0).report
    assert len(report) <= REPORT_MAX_CHARS
    assert report.startswith("[Test report for run_tests()]\n\nRan `python3 check.py --verbose")
    assert report.endswith("[The report was cut at 6,000 characters.]\n")


def test_signatures_set_values_aside_but_not_the_error():
    def sig(message: str) -> str:
        return signature(TestResult("t", "failed", message))

    assert sig("AttributeError: 'A' object has no attribute 'x'") == sig(
        "AttributeError: 'B' object has no attribute 'y'"
    )
    assert sig("assert 3 == 4") == sig("assert 10 == 12.5")
    assert sig("OSError: /tmp/pytest-of-me/pytest-3/test_a0/f.txt is locked") == sig(
        "OSError: /tmp/pytest-of-me/pytest-7/test_b1/f.txt is locked"
    )
    assert sig("ValueError: <Obj at 0x7f00ab12>") == sig("ValueError: <Obj at 0x55d0ff00>")
    assert sig("KeyError: 'a'") != sig("IndexError: 'a'")
    assert sig("assert test_1 == 2") != sig("assert test_2 == 2")  # names keep their digits


# ----------------------------------------------------------------------------------------- end to end

PARAMETRISED = (
    "import pytest\n\nfrom shapes import Square\n\n\n"
    "@pytest.mark.parametrize('side', range(300))\n"
    "def test_area(side):\n    assert Square(side).area() == side * side\n"
)
SHAPES = "class Square:\n    def __init__(self, side):\n        self.side = side\n\n    def area(self):\n        return self.side * self.side\n"
RENAME = "<execute>\nreplace('shapes.py', 'self.side = side', 'self.length = side')\n</execute>"
FINISH = "<execute>\nfinish('renamed side to length')\n</execute>"


@pytest.mark.docker
def test_300_parametrised_failures_reach_the_model_as_one_group_under_the_cap(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "shapes", {"shapes.py": SHAPES, "tests/test_shapes.py": PARAMETRISED})
    replay = write_replay(tmp_path / "replay.yaml", [RENAME, FINISH, FINISH])
    trajectory = tmp_path / "trajectory.jsonl"
    args = ["run", "rename side", "--model", f"replay:{replay}", "--trajectory", str(trajectory)]
    run = run_cli(args, repo, timeout=300)
    assert run.code == 3, run.stdout + run.stderr  # the replay ran out after the refused finish() calls
    refused = [o["text"] for o in run.events("observation") if "finish() was not accepted" in o["text"]]
    assert len(refused) == 2
    for report in refused:
        assert len(report) <= REPORT_MAX_CHARS
        assert "Regressions: passed before your first edit, fail now (300 tests, 1 distinct error):" in report
        assert "- 300 tests with the same error (tests/test_shapes.py::test_area[0], " in report
        assert "AttributeError: 'Square' object has no attribute 'side'" in report
        assert "shapes.py:6: in area" in report
    finish_runs = [e for e in run.events("tests_run") if e["trigger"] == "finish"]
    assert len(finish_runs) == 2 and all(len(e["failing"]) == 300 for e in finish_runs)  # the full list
