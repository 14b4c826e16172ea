"""What a batch folder says about itself, read from its files alone: one row per task (from the
journal and each task's result.json), and report.md / report.html rendered from the Jinja2 templates
beside this module. `actsmith batch status` and `actsmith batch report` work on any batch folder,
running or finished, on any machine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from agent_cli.batch.journal import JOURNAL, read_journal
from agent_cli.batch.results import STATUSES, PullSeen, TaskResult, read_pull, read_result
from agent_cli.model import Usage
from agent_cli.ui import format_tokens

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_SHOWN_CHARS = 4_000  # of one action or observation in report.html
MAX_DIFF_CHARS = 200_000
RUNNING, WAITING = "running", "waiting"


@dataclass
class Step:
    number: int
    thought: str
    code: str
    observation: str = ""


@dataclass
class Row:
    id: str
    status: str  # a batch status, or running / waiting for a task without a result yet
    result: TaskResult | None
    steps: list[Step] = field(default_factory=list)
    diff: str = ""
    pull: PullSeen | None = None  # its pull request (batch publish), as last seen

    @property
    def files(self) -> int:
        return len(self.result.files_changed) if self.result else 0

    @property
    def cost(self) -> str:
        cost = self.result.cost if self.result else None
        return "?" if self.result and cost is None else f"${cost or 0:.4f}"

    @property
    def candidates_table(self) -> str:
        from agent_cli.candidates.render import markdown_table

        return markdown_table(self.result.candidates) if self.result else ""


@dataclass
class Summary:
    name: str
    out: Path
    rows: list[Row]
    github: dict[str, str] = field(default_factory=dict)  # task id -> the spec's `github: OWNER/NAME`

    @property
    def published(self) -> bool:
        return any(row.pull is not None for row in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in (*STATUSES, RUNNING, WAITING)}
        for row in self.rows:
            counts[row.status] += 1
        return {status: count for status, count in counts.items() if count}

    @property
    def cost(self) -> float:
        return sum((row.result.cost or 0.0) for row in self.rows if row.result)

    @property
    def tokens(self) -> str:
        """Every task's tokens in and out, with the share read from the prompt cache."""
        total = Usage()
        for row in self.rows:
            if row.result:
                total.add(row.result.usage)
        return format_tokens(total)


def summarise(out: Path, *, details: bool = False) -> Summary:
    """Every task of the batch's latest run, in spec order, with its latest result."""
    journal = out / JOURNAL
    if not journal.is_file():
        raise FileNotFoundError(journal)
    state = read_journal(out)
    name, order, github = _latest_run(journal)
    rows = []
    for task_id in order:
        folder = out / "tasks" / task_id
        result = read_result(folder)
        attempts = state.started.get(task_id, 0)
        if result is None or result.attempt < attempts:
            rows.append(Row(task_id, RUNNING if attempts else WAITING, result, pull=read_pull(folder)))
            continue
        row = Row(task_id, result.status, result, pull=read_pull(folder))
        if details:
            row.steps = read_steps(folder / "trajectory.jsonl", _shown_candidate(result))
            row.diff = _read(folder / "patch.diff", MAX_DIFF_CHARS)
        rows.append(row)
    return Summary(name, out, rows, github)


def write_reports(out: Path) -> Path:
    """report.md and report.html in the batch folder; returns report.md's path."""
    summary = summarise(out, details=True)
    (out / "report.md").write_text(
        _templates().get_template("report.md.j2").render(s=summary), encoding="utf-8"
    )
    html = _templates().get_template("report.html.j2").render(s=summary)
    (out / "report.html").write_text(html, encoding="utf-8")
    return out / "report.md"


def render_pull_body(**context: Any) -> str:
    """A published task's pull request body (templates/pull.md.j2)."""
    return _templates().get_template("pull.md.j2").render(**context)


def read_steps(trajectory: Path, candidate: int | None = None) -> list[Step]:
    """The steps of the task's last attempt (a trajectory keeps every attempt, each from `start`);
    with candidates, those of one of them (its events carry its number)."""
    if not trajectory.is_file():
        return []
    steps: dict[int, Step] = {}
    for line in trajectory.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("candidate") != candidate:
            continue
        kind = event.get("event")
        if kind == "start":
            steps = {}
        elif kind == "action":
            steps[event["step"]] = Step(
                event["step"], _cut(event.get("thought", "")), _cut(event.get("code", ""))
            )
        elif kind == "observation" and event.get("step") in steps:
            steps[event["step"]].observation = _cut(event.get("text", ""))
    return [steps[number] for number in sorted(steps)]


def _shown_candidate(result: TaskResult) -> int | None:
    """With candidates, whose steps the report shows: the one applied, else the first."""
    if not result.candidates:
        return None
    won = [c["number"] for c in result.candidates if c.get("won")]
    return won[0] if won else result.candidates[0]["number"]


def _latest_run(journal: Path) -> tuple[str, list[str], dict[str, str]]:
    """The name, the tasks and their `github:` of the batch's latest run."""
    name, order, github = "", [], {}
    for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "run":
            name, order, github = entry["name"], list(entry["tasks"]), dict(entry.get("github") or {})
    return name, order, github


def _cut(text: str) -> str:
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    half = MAX_SHOWN_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - MAX_SHOWN_CHARS} characters cut ...]\n{text[-half:]}"


def _read(path: Path, limit: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} characters cut ...]\n"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
