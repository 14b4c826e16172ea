"""The batch driver: plan from the spec and the journal, make each task's branch, hand the tasks to a
backend (threads here, or Ray), and turn what comes back into results, journal lines and events.

Everything a user can get wrong is found before any task starts (exit 2, one line). Resume rules: a
task with a final result in the journal is skipped (its files untouched) unless `--retry-failed`
asks again for a failed one; a task that never got a final result (interrupted, killed, not started)
runs again. Every attempt starts from the branch's base commit (an earlier attempt's work is kept
under refs/actsmith/attempts/). The cost cap counts what earlier runs paid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent_cli.batch import repos
from agent_cli.batch.events import BatchEnded, BatchStarted, TaskFinished, TaskProgress, TaskStarted
from agent_cli.batch.gate import BatchGate, SharedGate
from agent_cli.batch.journal import Journal, JournalState, read_journal
from agent_cli.batch.report import write_reports
from agent_cli.batch.results import (
    FAILED,
    INFRA_ERROR,
    NOT_STARTED,
    Tally,
    TaskResult,
    batch_status,
    write_result,
)
from agent_cli.batch.spec import BatchSpec, TaskSpec
from agent_cli.batch.task import TaskJob, TaskRun
from agent_cli.cancel import CancelToken
from agent_cli.candidates.runner import models_of
from agent_cli.errors import EXIT_INTERRUPTED, EXIT_LIMIT, ActsmithError, UsageError
from agent_cli.events import EventStream
from agent_cli.outcome import Category
from agent_cli.settings import Settings, load_settings
from agent_cli.workspace import InPlaceLock, Workspace

TICK_S = 0.25  # how often the driver journals what was spent while tasks run
CAPPED = "not started: the batch's max_cost_total was spent"
INTERRUPTED = "not started: the batch was interrupted"


@dataclass(frozen=True)
class BatchOptions:
    out: Path
    jobs: int | None = None  # None: as many as the machine (or the Ray cluster) can hold
    backend: str = "local"  # local | ray
    ray_address: str | None = None
    retry_failed: bool = False


@dataclass(frozen=True)
class Dispatch:
    """One task for a backend: the job, and where its branch and its files are on this machine."""

    job: TaskJob
    repo: Path
    folder: Path  # DIR/tasks/<id>

    @property
    def trajectory(self) -> Path:
        return self.folder / "trajectory.jsonl"


class Backend(Protocol):
    jobs: int  # tasks at once

    def gate(self, cap: float | None, spent: float) -> BatchGate:
        """The shared gate where this backend's tasks can reach it."""
        ...

    def run(self, dispatches: list[Dispatch], driver: Driver) -> None:
        """Run every dispatch (or report it not started), calling back the driver; return when done."""
        ...


class Driver:
    """What the backends call back, from any thread."""

    def __init__(self, spec: BatchSpec, options: BatchOptions, events: EventStream, cancel: CancelToken):
        self.spec = spec
        self.options = options
        self.events = events
        self.cancel = cancel
        self.gate: BatchGate = SharedGate(cap=spec.max_cost_total)  # the backend's, once running
        self.tally = Tally()
        self.journal: Journal | None = None
        self._tasks = {task.id: task for task in spec.tasks}
        self._repos = repos.Repositories(options.out / "repos")
        self._roots: dict[str, Path] = {}  # task id -> repository root
        self._refusals: set[str] = set()

    def sandbox_memory(self) -> int:
        """The largest memory limit a task's sandbox will have (what bounds the default -j)."""
        from agent_cli.settings import parse_size

        limits = [parse_size(str(task.settings.get("memory", Settings.memory))) for task in self.spec.tasks]
        return max((limit or 0 for limit in limits), default=0) or Settings().memory_bytes

    # ---------------------------------------------------------------------------------- the run

    def run(self, backend: Backend) -> Tally:
        started = time.monotonic()
        out = self.options.out
        with exclusive(out):
            state = read_journal(out)
            pending, done = self._plan(state)
            dispatches = self._prepare(pending, state)  # every check passed: now the journal is written
            self.journal = journal = Journal(out)
            journal.write(
                "run",
                spec=str(self.spec.path),
                name=self.spec.name,
                tasks=[task.id for task in self.spec.tasks],
                backend=self.options.backend,
                jobs=backend.jobs,
                pid=_pid(),
                github={task.id: task.github for task in self.spec.tasks if task.github},
            )
            for task_id, base in dispatches.branches:
                journal.write("branch", id=task_id, **base)
            for result in done:
                self.tally.add(result)
            self.gate = backend.gate(self.spec.max_cost_total, state.spent)
            self.events.emit(
                BatchStarted(
                    self.spec.name,
                    str(out),
                    self.options.backend,
                    backend.jobs,
                    [task.id for task in self.spec.tasks],
                    [d.job.id for d in dispatches.ready],
                    self.spec.max_cost_total,
                    round(state.spent, 6),
                )
            )
            for task_id, message in dispatches.failed:
                self._record_failure(task_id, message)
            try:
                with self.cancel.watching():
                    if dispatches.ready:
                        backend.run(dispatches.ready, self)
            finally:
                self.tick()
                self.tally.capped = self.tally.capped or self.gate.capped() or bool(self._refusals)
                self.tally.interrupted = self.cancel.cancelled
                reason = "interrupted" if self.tally.interrupted else "cost cap" if self.tally.capped else ""
                journal.write("end", exit_code=self.tally.exit_code, counts=self.tally.counts, reason=reason)
                journal.close()
                report = write_reports(out)
                self.events.emit(
                    BatchEnded(
                        self.tally.exit_code,
                        {status: count for status, count in self.tally.counts.items() if count},
                        round(self.tally.cost, 6),
                        round(time.monotonic() - started, 3),
                        str(report),
                        reason,
                        self.tally.usage,
                    )
                )
        return self.tally

    def _plan(self, state: JournalState) -> tuple[list[TaskSpec], list[TaskResult]]:
        pending, done = [], []
        for task in self.spec.tasks:
            final = state.final(task.id)
            if final is not None and not (self.options.retry_failed and final.status in FAILED):
                done.append(final)
            else:
                pending.append(task)
        return pending, done

    def _prepare(self, pending: list[TaskSpec], state: JournalState) -> _Prepared:
        """Open or clone each repository, resolve each task's settings, check its branch; then make
        the branches. A problem in the spec or a repository stops everything (exit 2); a URL that
        cannot be cloned fails its tasks only (infra_error)."""
        prepared = _Prepared()
        plans: list[tuple[TaskSpec, Path, Settings]] = []
        for task in pending:
            try:
                root = self._repos.root(task.repo, task.is_url)
            except ActsmithError as error:
                if not task.is_url:
                    raise UsageError(f"{self.spec.path}: {task.field}.repo: {error}") from None
                prepared.failed.append((task.id, f"cannot clone {task.repo}: {error}"))
                continue
            settings = load_settings(root, task.settings)
            if not all(models_of(settings)):
                raise UsageError(
                    f"{self.spec.path}: {task.field}: no model (set model at the top or in the task)"
                )
            branch = self.spec.branch(task.id)
            ours = (str(root), branch) in state.branches
            repos.refuse_foreign_branch(root, branch, ours, f"{self.spec.path}: {task.field}")
            plans.append((task, root, settings))
        _check_models([settings for _, _, settings in plans])
        for task, root, settings in plans:
            branch = self.spec.branch(task.id)
            base = state.branches.get((str(root), branch))
            if base is None:
                base = Workspace(root, root).create_branch(branch, "actsmith batch: the task's branch")
                prepared.branches.append((task.id, {"repo": str(root), "branch": branch, "base": base}))
            attempt = state.started.get(task.id, 0) + 1
            with self.repository_lock(root):
                repos.start_over(root, branch, base, self.spec.name, task.id, attempt)
            self._roots[task.id] = root
            job = TaskJob(task.id, task.task, settings, branch, base, attempt)
            prepared.ready.append(Dispatch(job, root, self.options.out / "tasks" / task.id))
        return prepared

    # ------------------------------------------------------------------ what backends call back

    def repository_lock(self, root: Path) -> threading.Lock:
        """Held while the driver moves refs in a repository."""
        return self._repos.lock(root)

    def may_start(self, dispatch: Dispatch) -> bool:
        """Whether a task may start now; when not, it is recorded as not started."""
        if self.cancel.cancelled:
            self._not_started(dispatch, INTERRUPTED, EXIT_INTERRUPTED, interrupted=True)
            return False
        if not self.gate.can_start():
            self._refusals.add(dispatch.job.id)
            self._not_started(dispatch, CAPPED, EXIT_LIMIT)
            return False
        return True

    def started(self, dispatch: Dispatch, node: str) -> None:
        job = dispatch.job
        assert self.journal is not None
        self.journal.write("started", id=job.id, attempt=job.attempt, node=node)
        self.events.emit(TaskStarted(job.id, str(dispatch.repo), job.branch, job.attempt, node))

    def progress(self, event: TaskProgress) -> None:
        self.events.emit(event)

    def finished(self, dispatch: Dispatch, run: TaskRun) -> TaskResult:
        """A task's session ended: its result from what the branch now holds."""
        job, root = dispatch.job, dispatch.repo
        with self.repository_lock(root):
            checkout = Workspace(root, root)
            changed = checkout.changed_files(job.base, run.tip)
            diff = checkout.diff(job.base, run.tip, binary=True)
        status = batch_status(run.category)
        if run.refused and run.steps == 0:
            status = NOT_STARTED  # the cap came before its first reply: nothing was done
            self._refusals.add(job.id)
        result = TaskResult(
            **self._about(job.id, dispatch),
            status=status,
            exit_code=run.exit_code,
            steps=run.steps,
            cost=run.cost,
            files_changed=changed,
            message=run.message,
            summary=run.summary,
            tests=run.tests.text if run.tests else "",
            tests_state=run.tests.state if run.tests else "none",
            test_outcome=run.tests,
            commit=run.tip,
            interrupted=run.category is Category.INTERRUPTED,
            wall_s=run.wall_s,
            node=run.node,
            session_status=run.session_status,
            prompt_tokens=run.usage.prompt_tokens,
            completion_tokens=run.usage.completion_tokens,
            cache_read_tokens=run.usage.cache_read_tokens,
            cache_write_tokens=run.usage.cache_write_tokens,
            candidates=run.candidates,
        )
        self._record(dispatch.folder, result, diff)
        return result

    def failed(self, dispatch: Dispatch, message: str, node: str = "") -> None:
        """The task could not run at all on its machine (Docker, a lost node, a broken clone)."""
        self._record_failure(dispatch.job.id, message, dispatch, node)

    def tick(self) -> None:
        """Journal what was spent since the last tick (a killed driver loses at most one tick's)."""
        if self.journal is None:
            return
        spent: dict[str, float] = {}
        for task_id, cost in self.gate.drain():
            spent[task_id] = spent.get(task_id, 0.0) + cost
        for task_id, cost in spent.items():
            self.journal.write("spent", id=task_id, cost=cost)

    def interrupted(self, dispatch: Dispatch) -> None:
        """A task whose worker had to be stopped before it could report."""
        self._not_started(dispatch, "interrupted: its worker was stopped", EXIT_INTERRUPTED, interrupted=True)

    def lost(self, dispatch: Dispatch, reason: str) -> None:
        assert self.journal is not None
        self.journal.write("lost", id=dispatch.job.id, attempt=dispatch.job.attempt, reason=reason)

    # ------------------------------------------------------------------------------------ parts

    def _not_started(
        self, dispatch: Dispatch, message: str, exit_code: int, interrupted: bool = False
    ) -> None:
        about = self._about(dispatch.job.id, dispatch)
        result = TaskResult(
            **about,
            status=NOT_STARTED,
            exit_code=exit_code,
            steps=0,
            cost=0.0,
            files_changed=[],
            message=message,
            commit=dispatch.job.base,
            interrupted=interrupted,
        )
        self._record(dispatch.folder, result, "")

    def _record_failure(
        self, task_id: str, message: str, dispatch: Dispatch | None = None, node: str = ""
    ) -> None:
        about = self._about(task_id, dispatch)
        result = TaskResult(
            **about,
            status=INFRA_ERROR,
            exit_code=2,
            steps=0,
            cost=0.0,
            files_changed=[],
            message=message,
            commit=dispatch.job.base if dispatch else None,
            node=node,
        )
        self._record(self.options.out / "tasks" / task_id, result, "")

    def _about(self, task_id: str, dispatch: Dispatch | None) -> dict[str, Any]:
        """What every result of a task says, however it ended."""
        task, job = self._tasks[task_id], dispatch.job if dispatch else None
        return {
            "id": task_id,
            "branch": self.spec.branch(task_id),
            "repo": str(dispatch.repo) if dispatch else task.repo,
            "task": task.task,
            "base": job.base if job else "",
            "attempt": job.attempt if job else 1,
        }

    def _record(self, folder: Path, result: TaskResult, diff: str) -> None:
        """result.json and patch.diff first, then the journal line that makes the result final."""
        assert self.journal is not None
        self.tick()
        write_result(folder, result, diff)
        self.journal.result(result)
        self.tally.add(result)
        self.events.emit(TaskFinished(result))


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """The batch folder for this process alone (a run, or a publish that writes results)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = InPlaceLock.acquire(out / "driver.lock", out)
    except UsageError:
        raise UsageError(f"another batch driver is running on {out}; wait for it to end") from None
    try:
        yield
    finally:
        lock.release()


@dataclass
class _Prepared:
    ready: list[Dispatch] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (task id, why it cannot run)
    branches: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # made by this run


def _check_models(settings: list[Settings]) -> None:
    """Every model the batch will call can be called (a key is set): said before anything starts."""
    from agent_cli.model import check_credentials

    every = {(model, s.api_base) for s in settings for model in models_of(s)} | _summary_models(settings)
    for model, api_base in sorted(every):
        check_credentials(model, api_base=api_base)


def _summary_models(settings: list[Settings]) -> set[tuple[str, str | None]]:
    return {(s.summary_model, s.api_base) for s in settings if s.summary_model}


def _pid() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
