"""The test-runner agent: a baseline before the first edit, a report on run_tests(), a gate on finish().

The baseline runs in a thread, beside the first model call, on a copy of the repository as it was
before the run (unpacked inside the container from the pre-run checkpoint tree), so the model's first
edits cannot race it. Every later run is of the live repository, when the model asks (run_tests()) or
finishes; tests that blocked last time run first, then the whole suite once they pass.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent_cli.errors import ActsmithError
from agent_cli.events import EventStream, ModelCalled, TestsRan
from agent_cli.model import Model, Usage
from agent_cli.outcome import TestOutcome
from agent_cli.sandbox import RunTests
from agent_cli.templates import render
from agent_cli.testing.compare import Comparison, compare
from agent_cli.testing.detect import TestCommand, kind_of
from agent_cli.testing.execute import Executor, Job
from agent_cli.testing.parsers import clean, failure_cause, hung_test, interrupted_at, parse_results
from agent_cli.testing.report import render_report, report_context
from agent_cli.testing.results import SuiteRun, TestResult

LONG_OUTPUT_CHARS = 4_000  # raw output longer than this is condensed by the summary model
SUMMARY_INPUT_CHARS = 30_000


def unavailable_report() -> str:
    """The report when the agent runs without a test runner (a library caller left it out)."""
    return render_report(report_context(None, "run_tests", available=False))


@dataclass
class TestVerdict:
    """What the tests say after run_tests() or finish(): the report for the model, and the gate."""

    __test__ = False

    report: str
    passed: bool = True  # finish() may end the run
    final: bool = False  # the rounds ran out: the run ends here with exit 1
    message: str = ""
    usage: Usage = field(default_factory=Usage)


class TestRunner(Protocol):
    """The agent loop's view of the tests."""

    def status(self) -> str | None:
        """A line or two for the state block the model sees every turn (None: nothing to say)."""
        ...

    def check(self, step: int, request: RunTests, time_left: float) -> TestVerdict:
        """Run the tests because the model called run_tests()."""
        ...

    def gate(self, step: int, time_left: float) -> TestVerdict:
        """Run the tests because the model called finish(); `passed` says whether the run may end."""
        ...

    def untested_reason(self) -> str | None:
        """Why an accepted finish() was not checked by the tests (None: it was, or the gate is off)."""
        ...


@dataclass
class Summariser:
    """A model role that condenses long raw test output into a diagnosis (prompts/test_summary.md)."""

    model: Model
    events: EventStream | None = None

    def diagnose(self, run: SuiteRun) -> tuple[str | None, Usage]:
        output = run.output
        if len(output) > SUMMARY_INPUT_CHARS:
            output = (
                output[: SUMMARY_INPUT_CHARS // 5] + "\n[...]\n" + output[-SUMMARY_INPUT_CHARS * 4 // 5 :]
            )
        content = render("test_summary", run=run, output=output, cut=len(output) < len(run.output))
        messages = [{"role": "user", "content": content}]
        try:
            reply = self.model.complete(messages)
        except ActsmithError:
            return None, Usage()  # the raw output is shown instead; the run goes on
        if self.events is not None:
            self.events.emit(
                ModelCalled(
                    run.step, messages, reply.content, reply.usage, round(reply.latency_s, 3), "test_summary"
                )
            )
        return reply.content.strip() or None, reply.usage


def test_environment(reports: str, timeout: float) -> dict[str, str]:
    """Set for every test command: any pytest inside it (even under make or npm) writes JUnit XML
    outside the repository, with short tracebacks, keeps going past a module that fails to import,
    and dumps the stack of a test that runs long (only the dump of a run the timeout stops is read)."""
    hang_after = max(1, min(60, int(timeout / 3)))
    return {
        "PYTEST_ADDOPTS": (
            f"--junitxml={reports}/junit.xml -o junit_family=xunit1 --tb=short --continue-on-collection-errors"
            f" -o faulthandler_timeout={hang_after}"
        ),
        "CI": "true",  # test tools stop asking questions and watching files
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "CARGO_TERM_COLOR": "never",
    }


@dataclass
class SuiteRunner:
    """Runs the repository's test command in the sandbox and keeps the baseline and the latest result."""

    command: TestCommand | None
    executor: Executor
    workdir: str  # the repository, as the sandbox sees it
    scratch: str  # the sandbox's private folder: reports and the baseline's copy go there
    task: str = ""
    gate_on: bool = True  # --no-tests: no baseline, no gate; run_tests() still works
    max_rounds: int = 3  # reports sent back on finish() before a failing finish() ends the run
    timeout: float = 600.0
    snapshot: Callable[[], bytes] | None = None  # the pre-run repository as a tar, for the baseline
    summariser: Summariser | None = None
    events: EventStream = field(default_factory=EventStream)
    environment_problem: str | None = None  # the environment lacks the dependencies: no gate

    def __post_init__(self) -> None:
        self.baseline: SuiteRun | None = None
        self.latest: Comparison | None = None
        self.measured: Comparison | None = None  # the latest run that gave a result
        self.rounds = 0  # reports sent back on finish()
        self.final = False
        self.passed = False
        self.blocking_ids: tuple[str, ...] = ()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._background: SuiteRun | None = None
        self._baseline_done = threading.Event()

    # ------------------------------------------------------------------------------------ baseline

    def start_baseline(self) -> None:
        """Run the suite on the pre-run copy in a thread; the first model call does not wait for it."""
        if not self.gate_on or self.command is None or self.snapshot is None:
            return
        self._thread = threading.Thread(
            target=self._background_baseline, name="actsmith-baseline", daemon=True
        )
        self._thread.start()

    def _background_baseline(self) -> None:
        try:
            self._background = self._run_baseline()
        except Exception as error:  # reported and retried from the loop's thread, never lost silently
            self._background = SuiteRun(
                self._command_text(), "baseline", None, False, 0.0, "", "raw", lost=str(error)
            )
        finally:
            self._baseline_done.set()

    def _run_baseline(self) -> SuiteRun:
        assert self.command is not None and self.snapshot is not None
        return self._execute(
            self.command.command,
            "baseline",
            0,
            self.timeout,
            cwd=f"{self.scratch}/baseline",
            snapshot=self.snapshot(),
        )

    def _collect_baseline(self, wait: float = 0.0) -> SuiteRun | None:
        """The baseline once it is done, recorded from the loop's thread. With `wait`, block for it,
        and run it again here (once) when the first attempt was lost."""
        if self.baseline is not None or self._thread is None or not self._baseline_done.wait(wait):
            return self.baseline
        run = self._background
        if run is None or run.lost is not None:
            if not wait:
                return None
            self.events.notice(
                f"tests: the baseline run was lost ({run.lost if run else 'no result'}); running it again"
            )
            run = self._run_baseline()
        self.baseline = run
        self._record(run)
        if run.unusable:
            self.events.notice(
                f"tests: before the run, they could not run: {self.baseline_problem()}; "
                "they do not gate this run (set up the environment: see setup)",
                "warning",
            )
        else:
            self.events.notice(f"tests: before the run, {run.counts_text()} ({run.duration_s:.1f}s)")
        return run

    def baseline_problem(self) -> str | None:
        """Why the baseline gives nothing to compare with, in one line; None when it does."""
        run = self.baseline
        if run is None or not run.unusable:
            return None
        return run.lost or failure_cause(run.output, run.exit_code)

    def untested_reason(self) -> str | None:
        """Why a finish() accepted now was not checked by the tests (None: it was, or --no-tests)."""
        if not self.gate_on:
            return None
        if self.environment_problem:
            return f"{self.environment_problem}: the tests ran without them"
        if self.command is None:
            return "no test command was found (set test_cmd)"
        problem = self.baseline_problem()
        return f"the tests could not run before the run: {problem}" if problem else None

    # --------------------------------------------------------------------------------- the seam

    def status(self) -> str | None:
        if self.command is None:
            return None
        baseline = self._collect_baseline()
        lines = []
        if self._thread is None:
            pass  # no baseline in this run
        elif baseline is None:
            lines.append("- before your first edit: still running (the baseline)")
        elif baseline.lost:
            lines.append(f"- before your first edit: no result ({baseline.lost})")
        elif baseline.unusable:
            lines.append(
                f"- before your first edit: the tests could not run ({self.baseline_problem()}); "
                "they are not gating finish()"
            )
        else:
            failing = ", ".join(t.id for t in baseline.failures[:3]) + (
                ", ..." if len(baseline.failures) > 3 else ""
            )
            lines.append(
                f"- before your first edit: {baseline.counts_text()}"
                + (f" (failing: {failing})" if failing else "")
            )
        if self.latest is not None:
            run = self.latest.run
            lines.append(
                f"- your last run, after step {run.step}: {run.counts_text()}; {self.latest.status_text()}"
            )
        if not lines:
            return None
        return "\n".join([f"`{self.command.command}`", *lines])

    def check(self, step: int, request: RunTests, time_left: float) -> TestVerdict:
        timeout = min(self.timeout, request.timeout or math.inf, max(time_left, 1.0))
        if request.command is not None:
            run = self._execute(
                request.command, "run_tests", step, timeout, kind=kind_of(request.command), scope="custom"
            )
        elif self.command is None:
            return TestVerdict(render_report({**report_context(None, "run_tests"), **self._gate_context()}))
        else:
            run = self._run_suite("run_tests", step, timeout)
        comparison = compare(run, self._baseline_for_comparison(time_left), self.task)
        if request.command is None:
            self._remember(comparison)
        report, usage = self._report(comparison, "run_tests")
        return TestVerdict(report, usage=usage)

    def gate(self, step: int, time_left: float) -> TestVerdict:
        if not self.gate_on or self.command is None or self.environment_problem:
            return TestVerdict("")
        run = self._run_suite("finish", step, min(self.timeout, max(time_left, 1.0)))
        comparison = compare(run, self._baseline_for_comparison(time_left), self.task)
        self._remember(comparison)
        if not comparison.blocks:
            self.passed = True
            return TestVerdict("")
        self.final = self.rounds >= self.max_rounds
        if not self.final:
            self.rounds += 1
        report, usage = self._report(comparison, "finish")
        message = (
            f"the tests still fail after {_rounds(self.rounds)} of test reports: {comparison.status_text()}"
        )
        return TestVerdict(report, passed=False, final=self.final, message=message, usage=usage)

    def judge(self, step: int, time_left: float) -> Comparison | None:
        """The whole suite on the work as it stands after `step`, against the baseline: what a caller
        comparing several attempts (candidates) judges them by. The run of an accepted finish() at that
        step is that already; otherwise the suite runs once more. None without a test command."""
        if self.command is None:
            return None
        latest = self.latest
        if self.passed and latest is not None and latest.run.scope == "full" and latest.run.step == step:
            return latest
        run = self._execute(self.command.command, "judge", step, min(self.timeout, max(time_left, 1.0)))
        return compare(run, self._baseline_for_comparison(time_left), self.task)

    def summary(self) -> TestOutcome:
        """The last measured test run (whatever ended the run) against the baseline, for the end of
        the run; "unchecked" only when no run after the baseline gave a result."""
        measured = self._outcome_facts()
        if self.command is None:
            state = "untested" if self.gate_on else "none"
            return TestOutcome(state, "no test command found (set test_cmd or --test-cmd)", **measured)
        if self.gate_on and self.environment_problem:
            return TestOutcome("untested", f"not gating: {self.environment_problem}", **measured)
        if self.gate_on and self.baseline_problem():
            text = f"not gating: they could not run before the run ({self.baseline_problem()})"
            return TestOutcome("untested", text, **measured)
        before = (
            f"before the run: {self.baseline.counts_text()}"
            if self.baseline and not self.baseline.lost
            else ""
        )
        last = self.measured
        if not self.gate_on:
            text = f"last run, after step {last.run.step}: {last.run.counts_text()}" if last else "not run"
            return TestOutcome("off", f"no gate (--no-tests); {text}", **measured)
        if last is None:
            text = "not checked at the end (the run did not finish)" + (f"; {before}" if before else "")
            return TestOutcome("unchecked", text, **measured)
        run = last.run
        text = run.counts_text() + (f" ({before})" if before else "") + f"; {last.status_text()}"
        if self.final and last is self.latest:
            return TestOutcome("failed", f"still failing after {_rounds(self.rounds)}: {text}", **measured)
        state = "failed" if last.blocks else "passed"
        if self.passed and last is self.latest:
            return TestOutcome(state, text, **measured)
        subset = f" (the {len(run.selected)} that failed before)" if run.selected else ""
        when = f"the last run{subset}, at {run.trigger}() after step {run.step}"
        return TestOutcome(
            state, f"not checked at the end (the run did not finish); {when}: {text}", **measured
        )

    def _outcome_facts(self) -> dict:
        """The last measured run in figures: when it ran, its counts, what blocked, the baseline's."""
        baseline = self.baseline.counts() if self.baseline and self.baseline.parsed else None
        last = self.measured
        if last is None:
            return {"baseline": baseline}
        return {
            "step": last.run.step,
            "trigger": last.run.trigger,
            "counts": last.run.counts(),
            "regressions": len(last.regressions),
            "new_failures": len(last.new_failures) + len(last.unknown),
            "preexisting": len(last.task_failures) + len(last.preexisting),
            "baseline": baseline,
        }

    def close(self) -> None:
        """Nothing to wait for: a baseline still running ends with the sandbox."""

    # ------------------------------------------------------------------------------------ runs

    def _command_text(self) -> str:
        return self.command.command if self.command else ""

    def _baseline_for_comparison(self, time_left: float) -> SuiteRun | None:
        if not self.gate_on:
            return None
        return self._collect_baseline(wait=max(min(time_left, self.timeout + 120.0), 1.0))

    def _run_suite(self, trigger: str, step: int, timeout: float) -> SuiteRun:
        """Tests that blocked last time first, for fast feedback; the whole suite once they pass."""
        assert self.command is not None
        subset = self.command.select(self.blocking_ids)
        if subset is not None:
            run = self._execute(subset, trigger, step, timeout, scope="failing", selected=self.blocking_ids)
            if run.parsed and compare(run, self._collect_baseline(), self.task).blocks:
                return run
        return self._execute(self.command.command, trigger, step, timeout)

    def _remember(self, comparison: Comparison) -> None:
        self.latest = comparison
        if comparison.run.lost is None:  # a run that gave no result measured nothing
            self.measured = comparison
        self.blocking_ids = tuple(t.id for t in comparison.blocking)

    def _execute(
        self,
        command: str,
        trigger: str,
        step: int,
        timeout: float,
        *,
        cwd: str | None = None,
        snapshot: bytes | None = None,
        kind: str | None = None,
        scope: str = "full",
        selected: tuple[str, ...] = (),
    ) -> SuiteRun:
        cwd = cwd or self.workdir
        reports = f"{self.scratch}/tests/{next(self._ids)}"
        environment = test_environment(reports, timeout)
        shadow = self.workdir if cwd != self.workdir else None
        raw = self.executor.run(Job(command, timeout, reports, cwd, environment, snapshot, shadow))
        fmt, results = "raw", dict[str, TestResult]()
        if raw.lost is None:
            fmt, results = parse_results(kind or self._kind(), raw.output, raw.reports, cwd)
        output = clean(raw.output)
        stopped_at = None
        if raw.timed_out:
            hung = hung_test(output, cwd, timeout)
            if hung is not None and not (hung.id in results and results[hung.id].failing):
                results = {**results, hung.id: hung}
            stopped_at = hung.id if hung else interrupted_at(output, cwd)
        run = SuiteRun(
            command,
            trigger,
            raw.exit_code,
            raw.timed_out,
            raw.duration_s,
            output,
            fmt,
            results,
            selected=selected,
            lost=raw.lost,
            step=step,
            scope=scope,
            stopped_at=stopped_at,
        )
        if trigger != "baseline":
            self._record(run)
        return run

    def _kind(self) -> str:
        return self.command.kind if self.command else "custom"

    def _record(self, run: SuiteRun) -> None:
        self.events.emit(
            TestsRan(
                step=run.step,
                trigger=run.trigger,
                command=run.command,
                scope=run.scope,
                exit_code=run.exit_code,
                timed_out=run.timed_out,
                duration_s=run.duration_s,
                format=run.format,
                counts=run.counts(),
                failing=[t.id for t in run.failures],
                lost=run.lost,
                hung=run.stopped_at,
            )
        )

    # ---------------------------------------------------------------------------------- report

    def _report(self, comparison: Comparison, trigger: str) -> tuple[str, Usage]:
        run = comparison.run
        diagnosis, usage = None, Usage()
        show_output = (
            not run.parsed or not run.results or (comparison.command_problem is not None and not run.failures)
        )
        if show_output and run.failed and len(run.output) > LONG_OUTPUT_CHARS and self.summariser:
            diagnosis, usage = self.summariser.diagnose(run)
        context = report_context(comparison, trigger, show_output=show_output, diagnosis=diagnosis)
        context.update(self._gate_context())
        return render_report(context), usage

    def _gate_context(self) -> dict:
        return {
            "command": self.command,
            "baseline": self.baseline if self.gate_on else None,
            "gate_on": self.gate_on,
            "rounds": self.rounds,
            "max_rounds": self.max_rounds,
            "final": self.final,
        }


def _rounds(count: int) -> str:
    return f"{count} round{'s' if count != 1 else ''}"
