"""The test report the coder reads (prompts/test_report.md): failures grouped by error, under a hard cap.

A change that breaks one thing often fails hundreds of tests the same way: a rename fails every test
that reaches the old name, a parametrised test fails once per parameter. Listed one by one they would
fill the model's context. So failures are grouped by their error signature (the message with numbers,
hex addresses, quoted values and temporary paths taken out): 600 tests failing with one
`AttributeError` read as one group of 600, with a few example ids and the first one's traceback.

Whatever the number of failures, the report stays within REPORT_MAX_CHARS: it is rendered with less
and less detail (fewer example ids, shorter messages and tracebacks, fewer groups, each left-out group
counted) until it fits. The full list of failing tests stays in the trajectory's `tests_run` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent_cli.templates import render
from agent_cli.testing.compare import Comparison
from agent_cli.testing.parsers import first_lines, last_lines
from agent_cli.testing.results import TestResult

REPORT_MAX_CHARS = 6_000  # what the model reads after run_tests() or a refused finish(), at most
LINE_CHARS = 300  # one line of a message, traceback or output; longer ones are cut
DIAGNOSIS_LINES = 15  # what prompts/test_summary.md asks the summary model for
# The sections of the report, in the order the template shows them; the detailed ones show each
# group's message and traceback, the others one line per group.
DETAILED_SECTIONS = ("regressions", "new_failures", "unknown", "task_failures")
LISTED_SECTIONS = ("preexisting",)

# Taken out of a message to make its signature, in this order (a quoted temp path is a quoted value).
TEMP_PATH = (re.compile(r"(?:/private)?/(?:tmp|var/tmp|var/folders)/[^\s'\",)\]]*"), "<tmp>")
HEX = (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0x<hex>")
QUOTED = (re.compile(r"'[^'\n]*'|\"[^\"\n]*\""), "'<value>'")
NUMBER = (re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)?"), "<n>")  # not the digits of a name (test_1, py3)
SIGNATURE_NOISE = (TEMP_PATH, HEX, QUOTED, NUMBER)
# Within a group, messages that differ in their quoted values (the names a rename missed) are worth
# showing; those that differ only in addresses, numbers or temp paths are not.
VARIANT_NOISE = (TEMP_PATH, HEX, NUMBER)


def signature(test: TestResult) -> str:
    """What a failure has in common with others of the same cause: its message, values aside."""
    if not test.message.strip():
        return f"({test.outcome}, no message)"
    return _without(SIGNATURE_NOISE, test.message)


def _without(noise: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str:
    for pattern, stand_in in noise:
        text = pattern.sub(stand_in, text)
    return " ".join(text.split())


@dataclass(frozen=True)
class FailureGroup:
    """Failing tests with one error signature, in the order the runner reported them."""

    tests: tuple[TestResult, ...]

    @property
    def first(self) -> TestResult:
        return self.tests[0]

    @property
    def count(self) -> int:
        return len(self.tests)

    def variants(self) -> list[tuple[str, int]]:
        """Messages of the group that differ from the first test's in more than numbers and addresses
        (a rename may miss several names with one error), one first line for each, most frequent
        first, with how many tests show it."""
        lines: dict[str, str] = {}
        counts: dict[str, int] = {}
        for test in self.tests:
            key = _without(VARIANT_NOISE, _first_line(test.message))
            lines.setdefault(key, _first_line(test.message))
            counts[key] = counts.get(key, 0) + 1
        counts.pop(_without(VARIANT_NOISE, _first_line(self.first.message)), None)
        return [(lines[key], n) for key, n in sorted(counts.items(), key=lambda item: -item[1])]


def group_failures(tests: list[TestResult]) -> list[FailureGroup]:
    """Tests grouped by signature, the largest group first (then in the runner's order)."""
    grouped: dict[str, list[TestResult]] = {}
    for test in tests:
        grouped.setdefault(signature(test), []).append(test)
    groups = [FailureGroup(tuple(members)) for members in grouped.values()]
    return sorted(groups, key=lambda group: -group.count)  # stable: ties keep the runner's order


@dataclass(frozen=True)
class Detail:
    """How much of each section and group one rendering shows."""

    groups: int  # per detailed section
    listed: int  # per one-line section
    examples: int  # test ids named per group
    message_lines: int
    traceback_lines: int
    variants: int  # other messages of a group shown
    tail_lines: int  # of raw output


# From the most detailed to the least; the first whose rendering fits the cap is used.
LEVELS = (
    Detail(groups=8, listed=10, examples=5, message_lines=12, traceback_lines=12, variants=3, tail_lines=40),
    Detail(groups=8, listed=8, examples=3, message_lines=6, traceback_lines=8, variants=2, tail_lines=30),
    Detail(groups=6, listed=6, examples=3, message_lines=4, traceback_lines=6, variants=1, tail_lines=20),
    Detail(groups=4, listed=4, examples=2, message_lines=3, traceback_lines=4, variants=0, tail_lines=12),
    Detail(groups=2, listed=2, examples=2, message_lines=2, traceback_lines=2, variants=0, tail_lines=6),
    Detail(groups=1, listed=1, examples=1, message_lines=1, traceback_lines=0, variants=0, tail_lines=3),
)


@dataclass(frozen=True)
class ShownGroup:
    """A group as the template shows it: texts already cut to the rendering's detail."""

    count: int
    ids: list[str]
    message: str
    expected: str | None
    actual: str | None
    traceback: str
    variants: list[tuple[str, int]]

    @property
    def more(self) -> int:
        return self.count - len(self.ids)


@dataclass(frozen=True)
class ShownSection:
    tests: int  # failing tests in the section
    groups_total: int
    groups: list[ShownGroup]

    @property
    def hidden_groups(self) -> int:
        return self.groups_total - len(self.groups)

    @property
    def hidden_tests(self) -> int:
        return self.tests - sum(group.count for group in self.groups)


def render_report(context: dict[str, Any]) -> str:
    """prompts/test_report.md with the most detail that fits REPORT_MAX_CHARS. `context` is
    `report_context()`'s, with the runner's own state added."""
    comparison: Comparison | None = context["cmp"]
    sections = {
        name: group_failures(getattr(comparison, name)) if comparison else []
        for name in (*DETAILED_SECTIONS, *LISTED_SECTIONS)
    }
    output = context["run"].output.rstrip("\n").splitlines() if context["show_output"] else []
    text = ""
    for detail in LEVELS:
        shown = {
            name: _shown_section(groups, detail, name in DETAILED_SECTIONS) if groups else None
            for name, groups in sections.items()
        }
        tail = output[-(detail.tail_lines // 2 if context["diagnosis"] else detail.tail_lines) :]
        text = render(
            "test_report",
            **context,
            sections=shown,
            examples=detail.examples,
            tail="\n".join(_clip(line) for line in tail),
            tail_cut=len(output) - len(tail),
            max_chars=REPORT_MAX_CHARS,
        )
        if len(text) <= REPORT_MAX_CHARS:
            return text
    return _cut(text)


def report_context(
    comparison: Comparison | None,
    trigger: str,
    *,
    show_output: bool = False,
    diagnosis: str | None = None,
    available: bool = True,
) -> dict[str, Any]:
    """What prompts/test_report.md needs; the runner adds its own state (baseline, rounds)."""
    return {
        "available": available,
        "trigger": trigger,
        "command": None,
        "cmp": comparison,
        "run": comparison.run if comparison else None,
        "baseline": None,
        "gate_on": False,
        "show_output": show_output,
        "diagnosis": _cut_lines(diagnosis, DIAGNOSIS_LINES) if diagnosis else None,
        "rounds": 0,
        "max_rounds": 0,
        "final": False,
    }


def _shown_section(groups: list[FailureGroup], detail: Detail, detailed: bool) -> ShownSection:
    limit = detail.groups if detailed else detail.listed
    shown = [_shown_group(group, detail, detailed) for group in groups[:limit]]
    return ShownSection(sum(group.count for group in groups), len(groups), shown)


def _shown_group(group: FailureGroup, detail: Detail, detailed: bool) -> ShownGroup:
    first = group.first
    trace = [_clip(line) for line in first.traceback.splitlines()]
    message = _cut_lines(first.message, detail.message_lines if detailed else 1)
    return ShownGroup(
        count=group.count,
        ids=[_clip(test.id) for test in group.tests[: detail.examples]],
        message=message if detailed else _first_line(message),
        expected=first.expected,
        actual=first.actual,
        traceback=last_lines(trace, detail.traceback_lines) if detailed and detail.traceback_lines else "",
        variants=[(_clip(line), n) for line, n in group.variants()[: detail.variants]] if detailed else [],
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..."


def _cut_lines(text: str, count: int) -> str:
    return first_lines("\n".join(_clip(line) for line in text.splitlines()), count)


def _cut(text: str) -> str:
    """The last resort, when even the least detail does not fit (a command of thousands of characters,
    a baseline that failed with a long error): the report's head, cut at a line when one ends near
    the cap, and a note saying so."""
    note = f"[The report was cut at {REPORT_MAX_CHARS:,} characters.]\n"
    head = text[: REPORT_MAX_CHARS - len(note) - len("...\n")]
    line_end = head.rfind("\n")
    head = head[:line_end] if line_end > len(head) - LINE_CHARS else head + "..."
    return f"{head}\n{note}"
