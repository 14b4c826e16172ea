"""SPEC.yaml: a batch's name, its tasks (explicit, or one task text over many repositories) and the
settings they run with. Every problem is one line naming the field, raised before anything starts.

    name: drop-six
    model: anthropic/claude-sonnet-4-5      # any setting, for every task
    max_cost_total: 40                      # USD for the whole batch
    tasks:
      - id: billing-drop-six
        repo: ../billing                    # a local path (relative to this file) or a git URL
        task: "Remove the six dependency"
        model: replay:replays/billing.yaml  # any setting, for this task
        github: acme/billing                # where `batch publish` opens its pull request
    # or: task: "..." with repos: [../billing, https://example.org/team/auth.git]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_cli.errors import UsageError
from agent_cli.model import REPLAY_PREFIX
from agent_cli.settings import FIELDS, setting_value

BRANCH_ROOT = "actsmith"
# Set by the batch for every task: its own worktree and branch, its trajectory beside its result.
MANAGED = {
    "worktree": "every task works in its own worktree",
    "commit": "each task's branch holds its result",
    "trajectory": "each task's trajectory is DIR/tasks/<id>/trajectory.jsonl",
}
TASK_KEYS = ("id", "repo", "task")
OPTIONAL_TASK_KEYS = ("github",)
BATCH_KEYS = ("name", "tasks", "task", "repos", "max_cost_total")
MODEL_SETTINGS = ("model", "summary_model", "test_designer_model", "candidate_models")
# One path component of a git ref, readable in a shell: what names and ids may be.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/:\s]+@[^/:\s]+:")
GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TaskSpec:
    id: str
    repo: str  # a local path made absolute, or a git URL as written
    task: str
    settings: dict[str, Any]  # the batch's settings with this task's over them, already checked
    field: str  # where it was declared (tasks[2], repos[0]): errors name it
    github: str | None = None  # OWNER/NAME its pull request goes to (default: from its origin)

    @property
    def id_field(self) -> str:
        """Where its id comes from: its own `id`, or (in a matrix) its repository's name."""
        return f"{self.field}.id" if self.field.startswith("tasks[") else self.field

    @property
    def is_url(self) -> bool:
        return is_url(self.repo)


@dataclass(frozen=True)
class BatchSpec:
    path: Path
    name: str
    max_cost_total: float | None
    tasks: tuple[TaskSpec, ...]

    def branch(self, task_id: str) -> str:
        return f"{BRANCH_ROOT}/{self.name}/{task_id}"

    @property
    def default_out(self) -> Path:
        return self.path.parent / ".actsmith" / "batches" / self.name


def is_url(repo: str) -> bool:
    return bool(_URL.match(repo))


def load_spec(path: Path) -> BatchSpec:
    import yaml

    path = Path(os.path.abspath(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such batch spec") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({getattr(error, 'strerror', None) or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a batch spec is a mapping with name and tasks (or task and repos)")
    return _parse(path, data)


def _parse(path: Path, data: dict[str, Any]) -> BatchSpec:
    where = str(path)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith((".lock", ".")):
        raise UsageError(
            f"{where}: name: {name!r} must be a word of letters, digits, '.', '_' or '-' "
            f"(it names the branches {BRANCH_ROOT}/<name>/<id>)"
        )
    shared = _settings(path, data, "", exclude=BATCH_KEYS)
    cap = data.get("max_cost_total")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int | float) or cap <= 0):
        raise UsageError(f"{where}: max_cost_total = {cap!r} must be a number of USD above 0")
    tasks = _explicit_tasks(path, data.get("tasks"), shared) + _matrix_tasks(path, data, shared)
    if not tasks:
        raise UsageError(f"{where}: tasks: none given (a list of tasks, or task with repos)")
    seen: dict[str, str] = {}
    for task in tasks:
        if task.id in seen:
            raise UsageError(
                f"{where}: {task.id_field}: duplicate task id {task.id!r} (also {seen[task.id]})"
            )
        seen[task.id] = task.field
    return BatchSpec(path, name, float(cap) if cap is not None else None, tuple(tasks))


def _explicit_tasks(path: Path, entries: Any, shared: dict[str, Any]) -> list[TaskSpec]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise UsageError(f"{path}: tasks: must be a list of tasks, each with id, repo and task")
    tasks = []
    for number, entry in enumerate(entries):
        field = f"tasks[{number}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: {field}: must be a mapping with id, repo and task")
        for key in TASK_KEYS:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UsageError(f"{path}: {field}.{key}: missing (a task needs id, repo and task)")
        task_id = _task_id(path, f"{field}.id", entry["id"])
        settings = {**shared, **_settings(path, entry, f"{field}.", exclude=TASK_KEYS + OPTIONAL_TASK_KEYS)}
        repo = _repo(path, f"{field}.repo", entry["repo"])
        github = _github(path, f"{field}.github", entry.get("github"))
        tasks.append(TaskSpec(task_id, repo, entry["task"], settings, field, github))
    return tasks


def _matrix_tasks(path: Path, data: dict[str, Any], shared: dict[str, Any]) -> list[TaskSpec]:
    """One task text over many repositories; each task's id is its repository's name."""
    text, repos = data.get("task"), data.get("repos")
    if text is None and repos is None:
        return []
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{path}: task: missing (repos needs the task to run on each of them)")
    if not isinstance(repos, list) or not repos or not all(isinstance(r, str) and r for r in repos):
        raise UsageError(f"{path}: repos: must be a list of repository paths or git URLs")
    tasks = []
    for number, raw in enumerate(repos):
        field = f"repos[{number}]"
        name = raw.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
        task_id = _task_id(path, field, name)
        tasks.append(TaskSpec(task_id, _repo(path, field, raw), text, dict(shared), field))
    return tasks


def _task_id(path: Path, field: str, value: str) -> str:
    if not _NAME.fullmatch(value) or value.endswith((".lock", ".")) or ".." in value:
        raise UsageError(
            f"{path}: {field}: {value!r} cannot be a task id: use letters, digits, '.', '_' and '-' "
            f"(it names the branch {BRANCH_ROOT}/<name>/<id>)"
        )
    return value


def _github(path: Path, field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not GITHUB_REPOSITORY.fullmatch(value):
        raise UsageError(f"{path}: {field}: {value!r} is not a GitHub repository OWNER/NAME")
    return value


def _repo(path: Path, field: str, value: str) -> str:
    if is_url(value):
        return value
    repo = Path(value)
    return os.path.abspath(repo if repo.is_absolute() else path.parent / repo)


def _settings(path: Path, entry: dict[str, Any], prefix: str, *, exclude: tuple[str, ...]) -> dict[str, Any]:
    """The settings a mapping sets, converted and checked; paths are relative to the spec file."""
    values = {}
    for key, raw in entry.items():
        if key in exclude:
            continue
        name = str(key).replace("-", "_")
        field = f"{prefix}{key}"
        if name in MANAGED:
            raise UsageError(f"{path}: {field}: set by the batch ({MANAGED[name]})")
        if name not in FIELDS:
            known = ", ".join((*exclude, *sorted(n for n in FIELDS if n not in MANAGED)))
            raise UsageError(f"{path}: {field}: unknown key (known: {known})")
        value = setting_value(name, raw, f"{path}: {prefix.rstrip('.') or 'top level'}")
        if name in MODEL_SETTINGS and isinstance(value, str):
            value = _replay_relative(path, field, value)
        elif name in MODEL_SETTINGS and isinstance(value, tuple):
            value = tuple(_replay_relative(path, f"{field}[{n}]", model) for n, model in enumerate(value))
        values[name] = value
    return values


def _replay_relative(path: Path, field: str, model: str) -> str:
    """replay:PATH relative to the spec file, and present: a missing file is the spec's error."""
    if not model.startswith(REPLAY_PREFIX):
        return model
    replay = Path(model[len(REPLAY_PREFIX) :].strip())
    replay = replay if replay.is_absolute() else path.parent / replay
    if not replay.is_file():
        raise UsageError(f"{path}: {field}: replay file {replay} not found")
    return f"{REPLAY_PREFIX}{os.path.abspath(replay)}"
