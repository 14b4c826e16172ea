"""Run one task of a batch on this machine: a Session on the task's own branch, in its own worktree
and sandbox, its model calls through the batch's gate. Both backends call `run_task`: the local one
on the user's repository, a Ray worker on a clone of the bundle the driver shipped."""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.batch.events import SessionWatcher, TaskProgress
from agent_cli.batch.gate import GateService, TaskGate
from agent_cli.cancel import CancelToken
from agent_cli.candidates.events import Untagged
from agent_cli.candidates.opening import open_session
from agent_cli.errors import ActsmithError
from agent_cli.events import EventStream
from agent_cli.gitops import GitError, git
from agent_cli.model import Usage
from agent_cli.outcome import Category, Status, TestOutcome
from agent_cli.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent_cli.settings import Settings


@dataclass(frozen=True)
class TaskJob:
    """Everything a task needs to run anywhere (it travels to Ray workers whole)."""

    id: str
    task: str
    settings: Settings  # resolved on the driver: spec, environment, the repository's .actsmith.toml
    branch: str
    base: str  # the commit the branch was created from, and where every attempt starts
    attempt: int


@dataclass
class TaskRun:
    """How a task's session ended, before the driver turns it into a result."""

    session_status: Status
    category: Category
    exit_code: int
    message: str
    summary: str | None
    steps: int
    cost: float | None
    tests: TestOutcome | None
    tip: str  # the branch's commit after the task
    wall_s: float
    node: str
    refused: bool  # the batch's cost cap refused one of its model calls
    usage: Usage = field(default_factory=Usage)  # tokens of every model call, cache reads and writes too
    candidates: list[dict[str, Any]] = field(default_factory=list)  # with `candidates`: every attempt


def run_task(
    job: TaskJob,
    repo: Path,
    trajectory: Path,
    gate: GateService,
    cancel: CancelToken,
    publish: Callable[[TaskProgress], None],
    node: str = "",
) -> TaskRun:
    started = time.monotonic()
    workspace = Workspace.open(repo)
    drop_stale_worktrees(workspace, job.branch)
    settings = replace(job.settings, worktree=True, commit=False, trajectory=trajectory)
    task_gate = TaskGate(gate, job.id, cancel, settings.api_base)
    session = open_session(
        settings,
        workspace,
        label=job.task,
        events=EventStream([Untagged(SessionWatcher(job.id, publish))]),
        cancel=cancel,
        branch=job.branch,
        task=job.task,
        gate=task_gate,
    )
    try:
        with session:
            session.run(job.task)
    except ActsmithError:  # it could not open; the session recorded why (its outcome) and closed
        pass
    finally:
        gate.release(job.id)
    outcome = session.outcome
    assert outcome is not None
    return TaskRun(
        session_status=outcome.status,
        category=outcome.category,
        exit_code=outcome.exit_code,
        message=outcome.message,
        summary=outcome.summary,
        steps=outcome.steps,
        cost=outcome.usage.cost if outcome.usage is not None else 0.0,
        tests=outcome.tests,
        tip=workspace.branch_tip(job.branch) or job.base,
        wall_s=round(time.monotonic() - started, 3),
        node=node or socket.gethostname(),
        refused=task_gate.refused,
        usage=outcome.usage or Usage(),
        candidates=[asdict(candidate) for candidate in outcome.candidates or []],
    )


def drop_stale_worktrees(workspace: Workspace, branch: str) -> None:
    """A driver killed mid-task leaves the task's worktree with its branch checked out, which would
    stop the next attempt from checking it out. Only one driver works on a batch at a time, so any
    worktree on the batch's branch is such a leftover (its steps are kept as checkpoint refs)."""
    listing = git(workspace.root, "worktree", "list", "--porcelain", exact=False).decode("utf-8", "replace")
    for block in listing.split("\n\n"):
        lines = block.splitlines()
        if f"branch refs/heads/{branch}" in lines:
            path = lines[0].removeprefix("worktree ")
            with contextlib.suppress(GitError):
                git(workspace.root, "worktree", "remove", "--force", path, exact=False)
    git(workspace.root, "worktree", "prune", exact=False)


def prepare_environment_ahead(
    settings: Settings, repo: Path, commit: str, events: EventStream, cancel: CancelToken | None = None
) -> None:
    """Build (or find) the environment image a task's sandbox will start from, from the files at
    `commit`, while other tasks run: its session then finds it at the cost of one API call (or,
    when no detected setup could install, falls back at once: the failures are remembered)."""
    from agent_cli.environment import prepare
    from agent_cli.sandbox import SandboxRequest
    from agent_cli.testing.execute import snapshot_tar

    snapshot = snapshot_tar(repo, commit)
    with tempfile.TemporaryDirectory(prefix="actsmith-batch-env-") as folder:
        with tarfile.open(fileobj=io.BytesIO(snapshot)) as archive:
            archive.extractall(folder, filter="data")
        request = SandboxRequest(Path(folder), repo, lambda: snapshot, cancel=cancel)
        prepare(settings, request, events)
