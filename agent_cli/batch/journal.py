"""DIR/journal.jsonl: what the batch did, one JSON object a line, appended and synced to disk before
the batch goes on, so a driver killed at any moment leaves a journal a resume can trust.

    {"event": "run", ...}                        a driver started on this folder
    {"event": "branch", "id", "repo", "branch", "base"}   the batch created this branch
    {"event": "started", "id", "attempt", "node"}
    {"event": "spent", "id", "cost"}             model calls paid since the last such line
    {"event": "lost", "id", "attempt", "reason"} a Ray node died under the task; tried once more
    {"event": "result", ...result.json}          a task ended (not_started: it will run again)
    {"event": "end", "exit_code", ...}
    {"event": "published", "id", "pr_url", "pr_number", "repository", "branch", "commit"}
                                                 `batch publish` pushed the branch, opened or updated its PR

A line cut short by a kill is ignored when read back.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_cli.batch.results import TaskResult

JOURNAL = "journal.jsonl"


@dataclass
class JournalState:
    """The journal read back: what a resume needs."""

    results: dict[str, TaskResult] = field(default_factory=dict)  # the latest result of each task
    started: dict[str, int] = field(default_factory=dict)  # attempts begun, per task
    branches: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, branch) -> base commit
    spent: float = 0.0  # every model call the batch paid for, in all its runs
    published: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> its latest publish

    def final(self, task_id: str) -> TaskResult | None:
        result = self.results.get(task_id)
        return result if result is not None and result.final else None


class Journal:
    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, "time": round(time.time(), 3), **data}, ensure_ascii=False)
        with self._lock:
            if self._fd < 0:
                return
            os.write(self._fd, (line + "\n").encode("utf-8"))
            os.fsync(self._fd)

    def result(self, result: TaskResult) -> None:
        self.write("result", **result.to_json())

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_journal(folder: Path) -> JournalState:
    state = JournalState()
    path = folder / JOURNAL
    if not path.exists():
        return state
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the last line of a killed driver
        kind = entry.get("event")
        if kind == "result":
            result = TaskResult.from_json(entry)
            state.results[result.id] = result
        elif kind == "started":
            state.started[entry["id"]] = max(state.started.get(entry["id"], 0), int(entry["attempt"]))
        elif kind == "branch":
            state.branches[(entry["repo"], entry["branch"])] = entry["base"]
        elif kind == "spent":
            state.spent += float(entry.get("cost") or 0.0)
        elif kind == "published":
            state.published[entry["id"]] = entry
    return state
