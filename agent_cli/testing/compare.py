"""Compare a test run with the baseline (the same suite on the repository before the run).

Blocking, at finish(): regressions (passed before, fail now), failing tests the baseline did not have
(written during the run), and a command that fails or hangs now but did not before. Tests that failed
before the run too never block: they are listed apart, those the task names first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent_cli.testing.results import SuiteRun, TestResult

MIN_NAME_CHARS = 4  # shorter test-name words match too much task text to count as a mention


@dataclass
class Comparison:
    run: SuiteRun
    baseline: SuiteRun | None
    regressions: list[TestResult] = field(default_factory=list)
    new_failures: list[TestResult] = field(default_factory=list)  # tests the baseline did not have
    task_failures: list[TestResult] = field(default_factory=list)  # failed before too; the task names them
    preexisting: list[TestResult] = field(default_factory=list)
    unknown: list[TestResult] = field(default_factory=list)  # no baseline outcome to compare with
    fixed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # passed before, absent from this full run
    command_problem: str | None = None  # a failure of the command itself (raw output, hang, crash)
    command_blocks: bool = False

    @property
    def blocking(self) -> list[TestResult]:
        return [*self.regressions, *self.new_failures, *self.unknown]

    @property
    def blocks(self) -> bool:
        return bool(self.blocking) or self.command_blocks

    def status_text(self) -> str:
        """A few words for the per-turn state block and the summary."""
        parts = []
        for items, one, many in (
            (self.regressions, "regression", "regressions"),
            (self.new_failures, "new failing test", "new failing tests"),
            (self.unknown, "failing test (no baseline)", "failing tests (no baseline)"),
            (
                self.task_failures + self.preexisting,
                "failure from before the run",
                "failures from before the run",
            ),
        ):
            if items:
                ids = ", ".join(r.id for r in items[:3]) + (", ..." if len(items) > 3 else "")
                parts.append(f"{len(items)} {one if len(items) == 1 else many} ({ids})")
        if self.command_problem and not parts:
            parts.append(self.command_problem)
        if self.fixed:
            parts.append(f"{len(self.fixed)} fixed")
        return "; ".join(parts) if parts else "no failures"


def compare(run: SuiteRun, baseline: SuiteRun | None, task: str = "") -> Comparison:
    result = Comparison(run, baseline)
    before = baseline.results if baseline is not None and baseline.parsed else None
    for test in run.failures:
        _classify(result, test, before, baseline, task)
    if before is not None:
        result.fixed = sorted(
            i for i, r in run.results.items() if r.outcome == "passed" and i in before and before[i].failing
        )
        if not run.selected and run.complete and baseline is not None and baseline.complete:
            result.not_run = sorted(
                i for i, r in before.items() if r.outcome == "passed" and i not in run.results
            )
    result.command_problem, result.command_blocks = _command_problem(run, baseline)
    return result


def _classify(
    result: Comparison,
    test: TestResult,
    before: dict[str, TestResult] | None,
    baseline: SuiteRun | None,
    task: str,
) -> None:
    if before is None:
        # No per-test baseline: a failing test counts as from before only if the whole suite failed then.
        if baseline is not None and baseline.lost is None and baseline.failed:
            _from_before(result, test, task)
        else:
            result.unknown.append(test)
        return
    previous = before.get(test.id)
    if previous is None:
        # Absent from a baseline that stopped early: we cannot tell, and an unknown never blocks.
        if baseline is not None and baseline.complete:
            result.new_failures.append(test)
        else:
            _from_before(result, test, task)
    elif previous.failing:
        _from_before(result, test, task)
    else:
        result.regressions.append(test)


def _from_before(result: Comparison, test: TestResult, task: str) -> None:
    (result.task_failures if mentioned(task, test) else result.preexisting).append(test)


def _command_problem(run: SuiteRun, baseline: SuiteRun | None) -> tuple[str | None, bool]:
    """What went wrong with the command as a whole, and whether it blocks (it did not happen before)."""
    if run.lost is not None:
        return run.lost, False  # our failure, not the code's: the report says so, finish() goes through
    fine_before = baseline is not None and baseline.lost is None and not baseline.timed_out
    if run.timed_out:
        where = f" (stopped in {run.stopped_at})" if run.stopped_at else ""
        return f"the tests did not finish within {run.duration_s:.0f} s{where}", fine_before
    if run.exit_code != 0 and not run.failures:
        what = f"the test command failed (exit code {run.exit_code})"
        if run.results and baseline is not None and baseline.exit_code == run.exit_code:
            return what, False
        return what, fine_before and baseline is not None and baseline.exit_code == 0
    return None, False


def mentioned(task: str, test: TestResult) -> bool:
    """Whether the task names this test: its function, class or file."""
    words = set(re.split(r"[:/.\[\]\s]+", test.id)) | ({test.file} if test.file else set())
    words = {
        w.removesuffix(".py") for w in words if len(w) >= MIN_NAME_CHARS and w not in ("tests", "test", "py")
    }
    return any(re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", task) for word in words)
