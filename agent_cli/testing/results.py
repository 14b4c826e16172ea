"""What a test run produced: one result per test when the runner's output could be parsed."""

from __future__ import annotations

from dataclasses import dataclass, field

FAILING = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """One test's outcome. `id` is what the runner itself accepts to select the test again."""

    __test__ = False  # not a pytest test class

    id: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""  # the assertion or error, first lines
    expected: str | None = None  # only when the runner labels the two values
    actual: str | None = None
    traceback: str = ""  # trimmed to frames inside the repository
    file: str | None = None  # relative to the repository root

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING


@dataclass
class SuiteRun:
    """One execution of a test command, with its parsed results (none when the output was raw)."""

    command: str
    trigger: str  # baseline | run_tests | finish
    exit_code: int | None
    timed_out: bool
    duration_s: float
    output: str  # what the command printed, stdout and stderr together, head and tail kept
    format: str  # junit | go-json | libtest | unittest | raw
    results: dict[str, TestResult] = field(default_factory=dict)
    selected: tuple[str, ...] = ()  # the failing tests this run was limited to, if any
    lost: str | None = None  # why there is no outcome at all (the sandbox went away...)
    step: int = 0
    scope: str = "full"  # full | failing (the tests that blocked last time) | custom (the model's command)
    stopped_at: str | None = None  # where a timed-out run was interrupted, when the output says

    @property
    def parsed(self) -> bool:
        return self.format != "raw" and self.lost is None

    @property
    def complete(self) -> bool:
        """Every test of the suite ran to an outcome: a baseline to compare anything with."""
        return self.lost is None and not self.timed_out and self.scope == "full"

    @property
    def failures(self) -> list[TestResult]:
        return [result for result in self.results.values() if result.failing]

    @property
    def failed(self) -> bool:
        """The command did not succeed, whatever its parsed results say."""
        return self.lost is not None or self.timed_out or self.exit_code != 0 or bool(self.failures)

    @property
    def unusable(self) -> bool:
        """No per-test results and a failure: the suite could not run at all (a missing module, a
        collection error, a command not found), so it cannot tell a good change from a bad one."""
        return not self.results and self.failed

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results.values():
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return counts

    def counts_text(self) -> str:
        """`5 passed, 1 failed, 1 error`; for raw output, what the exit code says."""
        if self.lost is not None:
            return "no result"
        if not self.parsed or not self.results:
            ending = "timed out" if self.timed_out else f"exit code {self.exit_code}"
            return f"no per-test results, {ending}"
        counts = self.counts()
        words = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}
        parts = []
        for outcome, word in words.items():
            if counts.get(outcome):
                n = counts[outcome]
                parts.append(f"{n} {'error' if word == 'errors' and n == 1 else word}")
        return ", ".join(parts) + (" (timed out)" if self.timed_out else "")
