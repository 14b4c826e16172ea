"""Turn a test run's output into one result per test.

pytest is read from its JUnit XML report (always requested, through PYTEST_ADDOPTS); Go from
`go test -json`; Cargo from libtest's text output (its JSON output needs nightly Rust); unittest from
its verbose text. Anything else stays raw: the report shows the output, condensed by a model when long.

Tracebacks are trimmed to the frames inside the repository; paths are shown relative to its root.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import PurePosixPath

from agent_cli.testing.results import TestResult

MAX_MESSAGE_LINES = 12
MAX_TRACEBACK_LINES = 40
MAX_VALUE_CHARS = 300
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Output as plain text: colour codes and other control characters out."""
    return CONTROL.sub("", ANSI.sub("", text.replace("\r\n", "\n")))


def parse_results(
    kind: str, output: str, reports: dict[str, str], root: str
) -> tuple[str, dict[str, TestResult]]:
    """(format, results by id); format "raw" with no results when nothing could be parsed."""
    junit = reports.get("junit.xml")
    if junit:
        results = parse_junit(junit, root)
        if results is not None:
            return "junit", results
    attempts: list[tuple[str, Callable[[str, str], dict[str, TestResult]]]] = [
        ("go-json", parse_go_json),
        ("libtest", parse_libtest),
        ("unittest", parse_unittest),
    ]
    preferred = {"go": "go-json", "cargo": "libtest", "unittest": "unittest"}.get(kind)
    attempts.sort(key=lambda attempt: attempt[0] != preferred)
    for name, parse in attempts:
        results = parse(output, root)
        if results:
            return name, results
    return "raw", {}


# ----------------------------------------------------------------------------------------- shared bits


def repo_path(path: str, root: str) -> str | None:
    """`path` relative to the repository root, or None when it lies outside the repository."""
    path = path.strip()
    for prefix in (root.rstrip("/") + "/", "/workspace/"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    if path.startswith("/") or path.startswith("<") or "site-packages/" in path:
        return None
    return path.removeprefix("./")


def first_lines(text: str, count: int = MAX_MESSAGE_LINES) -> str:
    lines = clean(text).strip("\n").splitlines()
    kept = lines[:count]
    if len(lines) > count:
        kept.append(f"[{len(lines) - count} more lines]")
    return "\n".join(kept)


def last_lines(lines: list[str], count: int = MAX_TRACEBACK_LINES) -> str:
    if len(lines) <= count:
        return "\n".join(lines)
    return "\n".join([f"[{len(lines) - count} earlier lines cut]", *lines[-count:]])


def short(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 3] + "..."


def _outside_note(dropped: int) -> list[str]:
    return (
        [f"[{dropped} frame{'s' if dropped > 1 else ''} outside the repository left out]"] if dropped else []
    )


PYTEST_FRAME = re.compile(r"^(?P<path>[^\s:][^:]*):(?P<line>\d+): (?:in \S|\w+)")
PYTHON_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')


def trim_traceback(text: str, root: str) -> str:
    """Keep the frames of a Python or pytest traceback that are inside the repository.

    A frame is its location line plus the indented source lines under it; everything else (the
    exception, pytest's `E` lines, notes) is kept as it is.
    """
    kept: list[str] = []
    dropped = 0
    skipping = False
    for line in clean(text).rstrip("\n").splitlines():
        frame = PYTEST_FRAME.match(line) or PYTHON_FRAME.match(line)
        if frame:
            relative = repo_path(frame.group("path"), root)
            skipping = relative is None
            if relative is None:
                dropped += 1
                continue
            line = line.replace(frame.group("path"), relative, 1)
        elif skipping and line.startswith((" ", "\t")) and not line.lstrip().startswith("E "):
            continue  # the source line of a frame left out
        else:
            skipping = False
        kept.append(line)
    if dropped:
        kept = _outside_note(dropped) + kept
    return last_lines(kept)


INTERRUPTED_AT = re.compile(r"^(?P<path>\S+):(?P<line>\d+): KeyboardInterrupt$", re.MULTILINE)
# Python's faulthandler (pytest's faulthandler_timeout) dumping a test that runs too long.
FAULTHANDLER_DUMP = re.compile(r"^Timeout \((?P<after>[\d:.]+)\)!$", re.MULTILINE)
FAULTHANDLER_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')
TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")


def hung_test(output: str, root: str, timeout: float) -> TestResult | None:
    """The test a timeout stopped, from the last traceback dump pytest's faulthandler wrote while it
    ran too long: named as pytest names it (file::function), with its stack inside the repository."""
    dumps = list(FAULTHANDLER_DUMP.finditer(output))
    if not dumps:
        return None
    frames: list[tuple[str, str, str]] = []  # innermost first, as faulthandler lists them
    for line in output[dumps[-1].end() :].splitlines():
        frame = FAULTHANDLER_FRAME.match(line)
        if frame is None:
            if frames:
                break  # the end of the first thread's stack: the one running the test
            continue  # the "Thread 0x... (most recent call first):" header
        path = repo_path(frame.group("path"), root)
        if path is not None:
            frames.append((path, frame.group("line"), frame.group("function")))
    if not frames:
        return None
    in_tests = [f for f in frames if TEST_FILE.search(f[0]) and f[2].startswith("test")]
    path, line, function = in_tests[-1] if in_tests else frames[-1]
    stack = "\n".join(f"{p}:{n}: in {f}" for p, n, f in reversed(frames))
    return TestResult(
        f"{path}::{function}",
        "error",
        message=f"did not finish: the run was stopped at its timeout ({timeout:g} s) while this test was at {path}:{line}",
        traceback=stack,
        file=path,
    )


def interrupted_at(output: str, root: str) -> str | None:
    """Where pytest (or Python) was when the timeout interrupted it, as `path:line` in the repository."""
    for match in reversed(list(INTERRUPTED_AT.finditer(output))):
        path = repo_path(match.group("path"), root)
        if path is not None:
            return f"{path}:{match.group('line')}"
    return None


# ---------------------------------------------------------------------------------------------- pytest

PYTEST_COMPARISON = re.compile(r"^(?:AssertionError: )?assert (?P<actual>.+?) == (?P<expected>.+)$")
MAX_XML_BYTES = 20_000_000


def parse_junit(xml: str, root: str) -> dict[str, TestResult] | None:
    """pytest's JUnit XML (xunit1 flavour, which names each test's file); None when not JUnit."""
    # The report comes from inside the sandbox: no DTDs, so no entity expansion on the host.
    if len(xml) > MAX_XML_BYTES or "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        return None
    try:
        tree = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    results: dict[str, TestResult] = {}
    for case in tree.iter("testcase"):
        if not case.get("name"):
            continue  # pytest leaves an empty one for the test a timeout interrupted
        result = _junit_case(case, root)
        previous = results.get(result.id)
        if previous is None or (result.failing and not previous.failing):
            results[result.id] = result
    return results


def _junit_case(case: ElementTree.Element, root: str) -> TestResult:
    test_id, file = _pytest_id(case, root)
    problem = next((c for c in case if c.tag in ("failure", "error")), None)
    if problem is None:
        outcome = "skipped" if case.find("skipped") is not None else "passed"
        return TestResult(test_id, outcome, file=file)
    message = problem.get("message") or ""
    if problem.tag == "error" and message.startswith("failed on setup with "):
        message = message.removeprefix("failed on setup with ").strip('"') + " (in a fixture, at setup)"
    elif message == "collection failure":
        message = "collecting this module failed: " + _last_exception_line(problem.text or "")
    expected, actual = _pytest_values(message)
    return TestResult(
        test_id,
        "failed" if problem.tag == "failure" else "error",
        first_lines(message),
        expected,
        actual,
        _without_exception_lines(trim_traceback(problem.text or "", root)),
        file,
    )


def _without_exception_lines(traceback: str) -> str:
    """pytest's `E` lines repeat the message shown above the traceback."""
    return "\n".join(line for line in traceback.splitlines() if not line.startswith("E "))


def _pytest_id(case: ElementTree.Element, root: str) -> tuple[str, str | None]:
    """pytest's node id, `path/to/test_x.py::Class::test_name[param]`, from xunit1 attributes."""
    name = case.get("name") or ""
    classname = case.get("classname") or ""
    file = case.get("file")
    file = repo_path(file, root) if file else None
    if file is None:
        return ".".join(p for p in (classname, name) if p), None
    if not classname:  # a module that failed to be collected: its own node id is its path
        return file, file
    module = str(PurePosixPath(file).with_suffix("")).replace("/", ".")
    rest = classname[len(module) :].lstrip(".") if classname.startswith(module) else ""
    return "::".join(p for p in (file, *rest.split("."), name) if p), file


def _pytest_values(message: str) -> tuple[str | None, str | None]:
    """pytest shows `assert left == right` with the right side as the expected value."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    match = PYTEST_COMPARISON.match(first)
    if not match:
        return None, None
    return short(match.group("expected")), short(match.group("actual"))


def _last_exception_line(text: str) -> str:
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return lines[-1] if lines else (text.strip().splitlines() or [""])[-1]


# -------------------------------------------------------------------------------------------------- Go

GO_LOCATION = re.compile(r"^\s+(\S+\.go:\d+): ?(.*)$")
GO_NOISE = re.compile(r"^(=== (RUN|PAUSE|CONT|NAME)|--- (FAIL|PASS|SKIP)|FAIL\b|ok\b|PASS$)")
GO_GOT_WANT = re.compile(
    r"(?:\bgot:?|=)\s+(?P<actual>.+?),?\s+(?:but\s+)?want(?:ed)?:?\s+(?P<expected>.+)$", re.IGNORECASE
)
GO_EXPECTED_GOT = re.compile(
    r"\bexpected:?\s+(?P<expected>.+?),?\s+(?:got|actual):?\s+(?P<actual>.+)$", re.IGNORECASE
)
TESTIFY_VALUE = re.compile(r"^\s*(?P<label>expected|actual)\s*:\s*(?P<value>.*)$", re.IGNORECASE)


def parse_go_json(output: str, root: str) -> dict[str, TestResult]:
    """`go test -json` events: one result per test, and one per package that failed to build."""
    outputs: dict[tuple[str, str], list[str]] = {}
    outcomes: dict[tuple[str, str], str] = {}
    for line in output.splitlines():
        event = _go_event(line)
        if event is None:
            continue
        key = (event.get("Package") or event.get("ImportPath") or "", event.get("Test") or "")
        action = event.get("Action")
        if action in ("output", "build-output"):
            outputs.setdefault(key, []).append(event.get("Output") or "")
        elif action in ("pass", "fail", "skip"):
            outcomes[key] = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
    results: dict[str, TestResult] = {}
    failing_packages = {package for (package, test), o in outcomes.items() if test and o == "failed"}
    failing_tests = {(package, test) for (package, test), o in outcomes.items() if test and o == "failed"}
    for (package, test), outcome in outcomes.items():
        if not test and (outcome != "failed" or package in failing_packages):
            continue  # a package's own result only matters when no test explains its failure
        if outcome == "failed" and _failing_subtest(package, test, failing_tests):
            continue  # the subtest that failed says why
        test_id = f"{package}::{test}" if test else package
        lines = outputs.get((package, test), [])
        results[test_id] = _go_result(test_id, outcome, "".join(lines), root)
    return results


def _failing_subtest(package: str, test: str, failing: set[tuple[str, str]]) -> bool:
    return any(p == package and t.startswith(test + "/") for p, t in failing)


def _go_event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "Action" in event else None


def _go_result(test_id: str, outcome: str, text: str, root: str) -> TestResult:
    if outcome != "failed":
        return TestResult(test_id, outcome)
    lines = [
        line.replace("\t", "    ").rstrip()
        for line in clean(text).splitlines()
        if line.strip() and not GO_NOISE.match(line.strip())
    ]
    stack_at = next((i for i, line in enumerate(lines) if line.startswith("goroutine ")), len(lines))
    messages, locations = [], []
    for line in lines[:stack_at]:
        located = GO_LOCATION.match(line)
        if located:
            locations.append(located.group(1))
        text_part = located.group(2) if located else line.strip()
        if text_part.strip():
            messages.append(text_part.strip())
    expected, actual = _go_values(messages)
    stack = _trim_go_stack(lines[stack_at:], root) if stack_at < len(lines) else ""
    return TestResult(
        test_id,
        "failed",
        first_lines("\n".join(messages) or "failed"),
        expected,
        actual,
        stack or "\n".join(dict.fromkeys(locations[:10])),
    )


def _go_values(messages: list[str]) -> tuple[str | None, str | None]:
    labelled: dict[str, str] = {}
    for message in messages:
        value = TESTIFY_VALUE.match(message)
        if value:
            labelled.setdefault(value.group("label").lower(), value.group("value"))
    if len(labelled) == 2:
        return short(labelled["expected"]), short(labelled["actual"])
    for message in messages:
        match = GO_GOT_WANT.search(message) or GO_EXPECTED_GOT.search(message)
        if match:
            return short(match.group("expected")), short(match.group("actual"))
    return None, None


def _trim_go_stack(lines: list[str], root: str) -> str:
    """A goroutine dump without the frames of the Go runtime and the standard library."""
    kept: list[str] = []
    dropped = 0
    for index, line in enumerate(lines):
        location = re.match(r"^\s+(/\S+\.go):\d+", line)
        if location:
            relative = repo_path(location.group(1), root)
            if relative is None:
                dropped += 1
                if kept and index and kept[-1] == lines[index - 1]:
                    kept.pop()  # the function line that goes with this location
                continue
            line = line.replace(location.group(1), relative, 1)
        kept.append(line)
    return last_lines(_outside_note(dropped) + kept)


# ---------------------------------------------------------------------------------------------- libtest

LIBTEST_RESULT = re.compile(r"^test (?P<name>\S+)(?: - should panic)? \.\.\. (?P<status>ok|FAILED|ignored)")
LIBTEST_SECTION = re.compile(r"^---- (?P<name>\S+) stdout ----$")
PANIC_AT = re.compile(r"panicked at (?:'(?P<old>.*)', )?(?P<location>[^\s:]+:\d+:\d+):?")
LEFT_RIGHT = re.compile(r"^\s*(?P<side>left|right)\s*:\s*`?(?P<value>.*?)`?,?$")


def parse_libtest(output: str, root: str) -> dict[str, TestResult]:
    """Rust's test harness (`cargo test`): `test name ... ok|FAILED` lines, then the failures' output."""
    text = clean(output)
    if "test result:" not in text:
        return {}
    outcomes: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        result = LIBTEST_RESULT.match(line)
        section = LIBTEST_SECTION.match(line)
        if result:
            status = result.group("status")
            outcomes[result.group("name")] = {"ok": "passed", "FAILED": "failed"}.get(status, "skipped")
        if section:
            current = section.group("name")
            sections[current] = []
        elif current is not None:
            if line.startswith(("failures:", "test result:", "---- ")):
                current = None
            else:
                sections[current].append(line)
    return {
        name: _libtest_result(name, outcome, sections.get(name, []), root)
        for name, outcome in outcomes.items()
    }


def _libtest_result(name: str, outcome: str, lines: list[str], root: str) -> TestResult:
    if outcome != "failed":
        return TestResult(name, outcome)
    location = ""
    message_lines: list[str] = []
    backtrace: list[str] = []
    values: dict[str, str] = {}
    for line in lines:
        if backtrace or line.startswith("stack backtrace:"):
            backtrace.append(line)
            continue
        panic = PANIC_AT.search(line)
        side = LEFT_RIGHT.match(line)
        if panic:
            location = repo_path(panic.group("location"), root) or panic.group("location")
            if panic.group("old"):
                message_lines.append(panic.group("old"))
        elif side:
            values[side.group("side")] = side.group("value")
        elif line.strip() and not line.startswith("note: "):
            message_lines.append(line.strip())
    # Rust's assert_eq!(left, right) has no notion of expected; by convention the right side is.
    return TestResult(
        name,
        "failed",
        first_lines("\n".join(message_lines) or "panicked"),
        short(values.get("right")),
        short(values.get("left")),
        _trim_rust_backtrace(backtrace[1:], root) or location,
        location.split(":")[0] or None,
    )


RUST_FRAME_AT = re.compile(r"^\s+at (?P<path>\S+?):\d+(:\d+)?$")


def _trim_rust_backtrace(lines: list[str], root: str) -> str:
    """`N: symbol` / `at path:line:col` pairs, only those inside the repository."""
    kept: list[str] = []
    dropped = 0
    for index, line in enumerate(lines):
        at = RUST_FRAME_AT.match(line)
        if not at or index == 0:
            continue
        relative = repo_path(at.group("path"), root)
        if relative is None:
            dropped += 1
            continue
        kept += [
            lines[index - 1].strip(),
            "    at " + line.strip()[3:].replace(at.group("path"), relative, 1),
        ]
    return last_lines(_outside_note(dropped) + kept) if kept else ""


# --------------------------------------------------------------------------------------------- unittest

UNITTEST_LINE = re.compile(r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?: \.\.\. (?P<status>.*))?$")
UNITTEST_STATUS = re.compile(
    r"^(?P<doc>.*?) ?\.\.\. (?P<status>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$"
)
UNITTEST_BLOCK = re.compile(r"^(?P<kind>FAIL|ERROR): (?P<name>\w+) \((?P<where>[\w.]+)\)")
UNITTEST_VALUES = re.compile(r"^AssertionError: (?P<actual>.+?) != (?P<expected>.+?)(?: : .*)?$")
RULE = re.compile(r"^(=+|-+)$")


def parse_unittest(output: str, root: str) -> dict[str, TestResult]:
    """`python -m unittest -v`: `name (module.Class.name) ... ok` lines, then FAIL/ERROR blocks."""
    text = clean(output)
    if not re.search(r"^Ran \d+ tests? in ", text, re.MULTILINE):
        return {}
    lines = text.splitlines()
    outcomes = _unittest_outcomes(lines)
    blocks = _unittest_blocks(lines)
    results = {test_id: TestResult(test_id, outcome) for test_id, outcome in outcomes.items()}
    for test_id, (kind, body) in blocks.items():
        results[test_id] = _unittest_failure(test_id, kind, body, root)
    return results


def _unittest_id(name: str, where: str) -> str:
    # Python 3.11+ prints module.Class.name in the parentheses; older ones module.Class.
    return where if where.endswith("." + name) else f"{where}.{name}"


def _unittest_outcomes(lines: list[str]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    pending: str | None = None  # a test whose docstring line carries its status
    for line in lines:
        header = UNITTEST_LINE.match(line)
        if header:
            test_id = _unittest_id(header.group("name"), header.group("where"))
            status = header.group("status")
            if status is None:
                pending = test_id
                continue
            outcomes[test_id] = _unittest_outcome(status)
            pending = None
        elif pending is not None and (status := UNITTEST_STATUS.match(line)):
            outcomes[pending] = _unittest_outcome(status.group("status"))
            pending = None
    return outcomes


def _unittest_outcome(status: str) -> str:
    status = status.strip()
    if status in ("ok", "expected failure"):
        return "passed"
    if status == "FAIL" or status == "unexpected success":
        return "failed"
    if status == "ERROR":
        return "error"
    return "skipped" if status.startswith("skipped") else "passed"


def _unittest_blocks(lines: list[str]) -> dict[str, tuple[str, list[str]]]:
    blocks: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for index, line in enumerate(lines):
        block = UNITTEST_BLOCK.match(line)
        if block and index and RULE.match(lines[index - 1]):
            current = []
            test_id = _unittest_id(block.group("name"), block.group("where"))
            blocks[test_id] = ("failed" if block.group("kind") == "FAIL" else "error", current)
        elif current is not None:
            if line.startswith("Ran ") or (RULE.match(line) and line.startswith("=")):
                current = None
            elif not RULE.match(line):
                current.append(line)
    return blocks


def _unittest_failure(test_id: str, outcome: str, body: list[str], root: str) -> TestResult:
    text = "\n".join(body).strip("\n")
    exception_at = max(
        (i for i, line in enumerate(body) if re.match(r"^\w[\w.]*(Error|Exception|Exit|Interrupt)\b", line)),
        default=None,
    )
    message = "\n".join(body[exception_at:]).strip() if exception_at is not None else text
    values = UNITTEST_VALUES.match(message.splitlines()[0]) if message else None
    return TestResult(
        test_id,
        outcome,
        first_lines(message),
        short(values.group("expected")) if values else None,
        short(values.group("actual")) if values else None,
        trim_traceback("\n".join(body[:exception_at]) if exception_at is not None else "", root),
    )


# The line that says why a test command produced no results, most telling first.
CAUSES = (
    re.compile(r"^(?:E\s+)?(?P<cause>(?:[A-Za-z_][\w.]*)?(?:Error|Exception)\b: .+)$"),
    re.compile(r"(?P<cause>No module named .+)$"),
    re.compile(r"(?P<cause>\S+: (?:\d+: )?\S*:? ?(?:command )?not found)\s*$"),
    re.compile(r"^(?P<cause>ERROR: .+)$"),
    re.compile(r"^(?P<cause>no tests ran.*)$"),
)


def failure_cause(output: str, exit_code: int | None) -> str:
    """One line saying why a run failed as a whole: the first error message it printed."""
    lines = [line.strip() for line in clean(output).splitlines() if line.strip()]
    for pattern in CAUSES:
        for line in lines:
            match = pattern.search(line)
            if match:
                return short(match.group("cause")) or ""
    return short(lines[-1]) if lines else f"exit code {exit_code}"  # type: ignore[return-value]
