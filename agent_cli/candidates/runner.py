"""A candidates run: N attempts at one task, each a Session in its own worktree and sandbox, at once,
sharing one budget (max_cost covers them all) and one rate limiter; optionally a test designer first.
The gate, the designed tests and agreement choose the winner (selection.py), which is applied to
the checkout in place (through this run's checkpoints: `actsmith undo` takes it back as one run) or
committed on the run's branch (--worktree, batch, ci). Every attempt's work is kept under
refs/actsmith/candidates/<run>/<n>.

It is driven like a Session, so front ends take either:

    with CandidatesRun(settings, workspace, label=task, events=events) as run:
        run.run(task)
    run.outcome                    # the `end` event, with a `candidates` list
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agent_cli.batch.gate import SharedGate, TaskGate
from agent_cli.cancel import Cancelled, CancelToken
from agent_cli.candidates import designer as design
from agent_cli.candidates import gitrefs, wants_candidates
from agent_cli.candidates.events import (
    DESIGNER,
    CandidateEnded,
    CandidatesChosen,
    CandidatesStarted,
    Tagger,
    TestsDesigned,
)
from agent_cli.candidates.outcome import TIERS, read_outcome
from agent_cli.candidates.selection import Candidate, Choice, choose, output_of
from agent_cli.checkpoints import RunCheckpoints, restore, tree_with
from agent_cli.errors import EXIT_INTERRUPTED, EXIT_OK, ActsmithError, UsageError
from agent_cli.events import Ended, EventStream, Failed, Interrupted
from agent_cli.gitops import GitError
from agent_cli.model import Usage, check_credentials
from agent_cli.outcome import Category, Status
from agent_cli.sandbox import default_jobs
from agent_cli.session import Session, require_task
from agent_cli.templates import render
from agent_cli.trajectory import Redactor, Trajectory

if TYPE_CHECKING:
    from agent_cli.model import ModelGate
    from agent_cli.sandbox import SandboxFactory
    from agent_cli.settings import Settings
    from agent_cli.testing.compare import Comparison
    from agent_cli.workspace import InPlaceLock, Workspace

RECORD = "candidates.json"  # in the run folder: what `actsmith candidates` reads back
POLL_S = 0.25


@dataclass(frozen=True)
class Plan:
    number: int
    model: str
    temperature: float | None


@dataclass(frozen=True)
class Base:
    commit: str
    tree: str


def plan_candidates(settings: Settings) -> list[Plan]:
    """Models and temperatures cycled over the candidates."""
    models = settings.candidate_models or (settings.model,)
    temperatures = settings.candidate_temperatures or (None,)
    return [
        Plan(n + 1, models[n % len(models)], temperatures[n % len(temperatures)])
        for n in range(settings.candidates)
    ]


def models_of(settings: Settings) -> list[str]:
    """Every model a run with these settings calls (the designer's included), each once."""
    if not wants_candidates(settings):
        return [settings.model]
    models = [plan.model for plan in plan_candidates(settings)]
    if settings.design_tests:
        models.append(design.designer_settings(settings).model)
    return list(dict.fromkeys(models))


class ChainedGate:
    """An attempt's calls go through the run's own budget, then through the gate the run itself was
    given (a batch's: its budget and rate limits across tasks)."""

    def __init__(self, inner: ModelGate, outer: ModelGate) -> None:
        self.inner, self.outer = inner, outer

    def admit(self, model: str) -> None:
        self.inner.admit(model)
        self.outer.admit(model)

    def settle(self, model: str, cost: float | None) -> None:
        self.inner.settle(model, cost)
        self.outer.settle(model, cost)

    def throttle(self, model: str, delay_s: float) -> None:
        self.inner.throttle(model, delay_s)
        self.outer.throttle(model, delay_s)


class CandidatesRun:
    def __init__(
        self,
        settings: Settings,
        workspace: Workspace,
        *,
        label: str,
        events: EventStream | None = None,
        sandbox_factory: SandboxFactory | None = None,
        cancel: CancelToken | None = None,
        branch: str | None = None,
        task: str | None = None,
        gate: ModelGate | None = None,
        api_key: str | None = None,
        identity: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.workspace = workspace
        self.label = label
        self.events = events or EventStream()
        self.cancel = cancel or CancelToken()
        self.redactor = Redactor()  # shared with every attempt's session (a front end adds its secrets)
        self.api_key = api_key  # lent to every attempt's models, as to a Session's
        self.identity = identity  # GIT_AUTHOR_*/GIT_COMMITTER_* for the commits, as a Session's
        self.redactor.add(api_key, "api_key")
        self.plans = plan_candidates(settings)
        self._factory = sandbox_factory
        self._branch = branch
        self._outer_gate = gate
        self._budget = SharedGate(
            cap=settings.max_cost, owner="the run", cap_setting="max_cost", probe_first=False
        )
        self._tokens: set[CancelToken] = set()
        self._lock = threading.Lock()
        # Deleting a ref takes git's packed-refs lock, which git waits for only a second: attempts
        # ending together make and drop their refs one at a time.
        self._refs = threading.Lock()
        self._tests: dict[int, Any] = {}  # candidate number -> its TestsSummary
        self.started = time.monotonic()
        self.run_id = ""
        self.lock: InPlaceLock | None = None
        self.trajectory: Trajectory | None = None
        self.checkpoints: RunCheckpoints | None = None  # in place: the checkout's, for `actsmith undo`
        self.base: Base | None = None
        self.branch: str | None = None  # --worktree: the run's branch
        self.commit: str | None = None
        self.designed: design.DesignedTests | None = None
        self.candidates: list[Candidate] = []
        self.choice: Choice | None = None
        self.usage = Usage()
        self.steps = 0
        self.outcome: Ended | None = None

    # ----------------------------------------------------------------------------- open and close

    def __enter__(self) -> CandidatesRun:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(error)

    def open(self) -> None:
        settings = self.settings
        with ThreadPoolExecutor(1, thread_name_prefix="actsmith-candidates-check") as checker:
            checks = checker.submit(self._check_models)  # imports litellm (seconds) beside the rest
            try:
                if self.workspace.head() is None:
                    raise UsageError("--candidates needs a commit to start the attempts' worktrees from")
                self.workspace.check_identity(self.identity)  # each attempt commits on its own branch
                if not settings.worktree:
                    self.lock = self.workspace.lock_in_place()
                self.run_id = self.workspace.reserve_run_id(self.label)
                self._open_trajectory()
                checks.result()  # a model that cannot be called is one line, before anything is recorded
                self.base = self._start_base()
            except BaseException as error:
                self.close(error)
                raise
        self.events.emit(
            CandidatesStarted(
                run_id=self.run_id,
                base=self.base.commit,
                branch=self.branch,
                jobs=self.jobs,
                candidates=[asdict(plan) for plan in self.plans],
                designer=design.designer_settings(settings).model if settings.design_tests else None,
            )
        )

    @property
    def jobs(self) -> int:
        """Attempts at once: all of them, unless the machine's memory holds fewer sandboxes."""
        return min(len(self.plans), default_jobs(self.settings.memory_bytes))

    def _check_models(self) -> None:
        for model in models_of(self.settings):
            check_credentials(model, api_base=self.settings.api_base, api_key=self.api_key)

    def _open_trajectory(self) -> None:
        path = self.settings.trajectory or self.workspace.run_dir(self.run_id) / "trajectory.jsonl"
        try:
            self.trajectory = Trajectory(path, self.redactor)
        except OSError as error:
            raise UsageError(f"cannot write the trajectory at {path}: {error.strerror or error}") from None
        self.events.subscribe(self.trajectory)

    def _start_base(self) -> Base:
        """What every attempt starts from: the working tree as it is (in place; a checkpoint, so undo
        can come back to it) or the run's branch."""
        root = self.workspace.root
        if self.settings.worktree:
            self.branch = self._branch or gitrefs.new_run_branch(self.workspace, self.label)
            commit = self.workspace.branch_tip(self.branch)
            if commit is None:
                raise UsageError(f"branch {self.branch} does not exist")
            return Base(commit, gitrefs.tree_of(root, commit))
        self.checkpoints = RunCheckpoints.for_run(self.workspace, self.run_id, self.label)
        first = self.checkpoints.record(0)
        return Base(first.commit, first.tree)

    def close(self, error: BaseException | None = None) -> Ended | None:
        if self.outcome is not None:
            return self.outcome
        status, message = self._final_status(error)
        if isinstance(error, KeyboardInterrupt | Cancelled):
            self.events.emit(Interrupted())
        elif isinstance(error, ActsmithError):
            self.events.emit(Failed(str(error), error.exit_code))
        self._stop_attempts()
        final = self.checkpoints.close(status) if self.checkpoints and self.base else None
        final_tree = final.tree if final else None
        not_committed = None
        if final_tree and self.settings.commit:
            not_committed = self._commit_in_place(status, final_tree)
        if self.lock is not None:
            self.lock.release()
        self.outcome = self._ended(status, message, final_tree, not_committed)
        if self.base is not None:  # a run that never started has nothing to report
            self._write_record()
            self.events.emit(self.outcome)
        if self.trajectory is not None:
            self.events.unsubscribe(self.trajectory)
            self.trajectory.close()
        return self.outcome

    def _final_status(self, error: BaseException | None) -> tuple[Status, str]:
        """The run's status: the error that ended it, else the winner's, else the closest attempt's."""
        if error is not None or self.cancel.cancelled:
            status = Status.INTERRUPTED if error is None else Status.of_error(error)
            if status is Status.INTERRUPTED:
                return status, "interrupted"
            return status, str(error) if isinstance(
                error, ActsmithError
            ) else f"{type(error).__name__}: {error}"
        choice = self.choice
        if choice is None or choice.closest is None:
            return Status.ERROR, "the run ended before any candidate"
        count = len(self.candidates)
        if choice.winner is not None:
            won = choice.winner
            return Status(won.status), f"candidate {won.number} of {count} applied: {won.why}"
        closest = choice.closest
        if closest.tier == TIERS[Category.NO_CHANGE]:
            return Status(closest.status), f"no candidate changed anything: {closest.message}"
        return (
            Status(closest.status),
            f"nothing applied: no candidate had a change the gate accepted; the closest, #{closest.number} "
            f"({closest.model}), ended {closest.category}: {closest.message}",
        )

    def _commit_in_place(self, status: Status, final_tree: str) -> str | None:
        """--commit: the applied change on the user's branch, when the run succeeded."""
        assert self.base is not None
        if status.exit_code != EXIT_OK:
            return "nothing was applied; nothing to commit"
        try:
            self.commit = self.workspace.commit_run(
                self.base.tree, final_tree, self._commit_message(), identity=self.identity
            )
        except ActsmithError as problem:
            return str(problem)
        return None

    def _commit_message(self) -> str:
        assert self.choice is not None and self.choice.winner is not None
        return render(
            "candidates_commit",
            task=" ".join(self.label.split()),
            winner=self.choice.winner,
            count=len(self.candidates),
            run_id=self.run_id,
        )

    def _ended(
        self, status: Status, message: str, final_tree: str | None, not_committed: str | None
    ) -> Ended:
        base, workspace = self.base, self.workspace
        after = final_tree or (gitrefs.tree_of(workspace.root, self.commit) if self.commit else None)
        changed = workspace.changed_files(base.tree, after) if base and after else []
        chosen = self.choice.winner or self.choice.closest if self.choice else None
        return Ended(
            run_id=self.run_id,
            status=status,
            category=status.category(bool(changed)),
            exit_code=status.exit_code,
            message=message,
            summary=chosen.summary if chosen else None,
            steps=self.steps,
            usage=self.usage,
            wall_s=round(time.monotonic() - self.started, 3),
            files_changed=changed,
            diff_stat=workspace.diff_stat(base.tree, after) if base and after and changed else "",
            tests=self._tests.get(chosen.number) if chosen else None,
            trajectory=str(self.trajectory.path) if self.trajectory else None,
            undo=f"actsmith undo --run {self.run_id}" if changed and self.branch is None else None,
            branch=self.branch,
            commit=self.commit,
            not_committed=not_committed,
            candidates=list(self.candidates),
        )

    def _write_record(self) -> None:
        """What `actsmith candidates show/apply` read back."""
        assert self.base is not None
        designed = self.designed
        record = {
            "run_id": self.run_id,
            "task": self.label,
            "base": self.base.commit,
            "base_tree": self.base.tree,
            "start": self._start_commit(),
            "branch": self.branch,
            "designed_tests": designed.files if designed else [],
            "suspect": self.choice.suspect if self.choice else {},
            "keep_designed_tests": self.settings.keep_designed_tests,
            "applied": self.choice.winner.number if self.choice and self.choice.winner else None,
            "candidates": [asdict(candidate) for candidate in self.candidates],
        }
        path = self.workspace.run_dir(self.run_id) / RECORD
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------------------ the work

    def run(self, task: str) -> Choice:
        require_task(task)
        with self.cancel.on_cancel(self._stop_attempts):
            if self.settings.design_tests:
                self.designed = self._design(task)
            if not self.cancel.cancelled:
                self.candidates = self._attempt_all(task)
        files = self.designed.files if self.designed else []
        self.choice = choice = choose(self.candidates, files)
        best = choice.winner or choice.closest
        kept_in = self.workspace.run_dir(self.run_id) / design.COPIES if files else None
        self.events.emit(
            CandidatesChosen(
                choice.winner.number if choice.winner else None,
                best.why if best else "",
                files,
                choice.suspect,
                str(kept_in) if kept_in else None,
            )
        )
        if choice.winner is not None and not self.cancel.cancelled:
            self._apply(choice.winner)
        return choice

    def _start_commit(self) -> str:
        assert self.base is not None
        return self.designed.commit if self.designed and self.designed.commit else self.base.commit

    def _design(self, task: str) -> design.DesignedTests:
        assert self.base is not None
        root = self.workspace.root
        settings = design.designer_settings(self.settings)
        text = design.designer_task(task, root, self.settings)
        session, branch = self._session(DESIGNER, settings, task, text, self.base.commit)
        self._work(DESIGNER, session, text, [])
        tip = self._keep(session, DESIGNER, branch)
        ended = session.outcome
        assert ended is not None
        self._count(ended)
        files: list[str] = []
        if tip is not None and ended.status in design.ACCEPTED:
            files = design.designed_files(root, self.base.tree, tip)
        commit = None
        if files and tip is not None:
            commit = design.commit_designed(root, self.base.commit, self.base.tree, tip, files, task)
            design.save_copies(root, tip, files, self.workspace.run_dir(self.run_id))
        elif not self.cancel.cancelled:
            self.events.notice(
                f"the test designer wrote no test file ({ended.status}: {ended.message}); "
                "the candidates run without designed tests",
                "warning",
            )
        self.events.emit(TestsDesigned(ended.status, ended.message, files, commit))
        return design.DesignedTests(ended.status, ended.message, files, commit)

    def _attempt_all(self, task: str) -> list[Candidate]:
        files = self.designed.files if self.designed else []
        text = render("candidate_task", task=task, designed=files) if files else task
        start = self._start_commit()
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="actsmith-candidate") as pool:
            running: set[Future[Candidate]] = {
                pool.submit(self._attempt, plan, text, start, files) for plan in self.plans
            }
            pending = set(running)
            while pending:  # polled: a Ctrl-C is handled here, between waits
                _, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        return sorted((future.result() for future in running), key=lambda c: c.number)

    def _attempt(self, plan: Plan, text: str, start: str, designed: list[str]) -> Candidate:
        candidate = Candidate(plan.number, plan.model, plan.temperature)
        if self.cancel.cancelled:
            candidate.status = candidate.category = "interrupted"
            candidate.exit_code, candidate.message = EXIT_INTERRUPTED, "not started: the run was interrupted"
            return candidate
        # The designed tests are fixed: a change to them is undone after the step that made it.
        protect = (*(self.settings.protect or ()), *(f"/{path}" for path in designed))
        settings = replace(
            self.settings, model=plan.model, temperature=plan.temperature, protect=protect or None
        )
        session, branch = self._session(plan.number, settings, text, text, start)
        judged = self._work(plan.number, session, text, designed)
        tip = self._keep(session, plan.number, branch)
        ended = session.outcome
        assert ended is not None
        self._count(ended)
        root = self.workspace.root
        files = self.workspace.changed_files(start, tip) if tip else []
        outcome = read_outcome(ended)
        candidate.status, candidate.category, candidate.exit_code = (
            outcome.status,
            outcome.category,
            outcome.exit_code,
        )
        candidate.message, candidate.summary, candidate.steps = ended.message, ended.summary, ended.steps
        candidate.cost = ended.usage.cost if ended.usage is not None else 0.0
        tests = ended.tests
        self._tests[plan.number] = tests
        candidate.tests, candidate.tests_text = getattr(tests, "state", "none"), getattr(tests, "text", "")
        candidate.files_changed = files
        candidate.lines_changed = gitrefs.lines_changed(root, start, tip) if tip and files else 0
        candidate.commit = tip
        candidate.ref = gitrefs.candidate_ref(self.run_id, plan.number) if tip else None
        candidate.trajectory = str(self._side_trajectory(plan.number))
        if judged is not None and judged.run.parsed:
            candidate.designed = designed_outputs(judged, designed)
            candidate.judged = True
        self.events.emit(CandidateEnded(candidate))
        return candidate

    def _session(
        self, which: int | str, settings: Settings, label: str, text: str, start: str
    ) -> tuple[Session, str]:
        """An attempt's session, on a scratch branch at `start`, in a worktree of its own."""
        token = CancelToken()
        with self._lock:
            self._tokens.add(token)
        if self.cancel.cancelled:
            token.cancel(self.cancel.reason)
        with self._refs:
            branch = gitrefs.scratch_branch(self.workspace.root, self.run_id, which, start)
        settings = replace(
            settings,
            worktree=True,
            commit=False,
            trajectory=self._side_trajectory(which),
            max_time=max(1.0, self.settings.max_time - (time.monotonic() - self.started)),
            candidates=1,
            design_tests=False,
        )
        inner = TaskGate(self._budget, str(which), token, settings.api_base)
        session = Session(
            settings,
            self.workspace,
            label=label,
            events=EventStream([Tagger(which, self.events)]),
            sandbox_factory=self._factory,
            cancel=token,
            branch=branch,
            task=text,
            gate=inner if self._outer_gate is None else ChainedGate(inner, self._outer_gate),
            api_key=self.api_key,
            identity=self.identity,
        )
        session.redactor = self.redactor
        return session, branch

    def _work(self, which: int | str, session: Session, text: str, designed: list[str]) -> Comparison | None:
        """Run the attempt; with designed tests, judge its finished work by the whole suite."""
        judged = None
        try:
            with session:
                session.run(text)
                if designed and not session.cancel.cancelled and session.tests and session.agent:
                    time_left = self.settings.max_time - (time.monotonic() - self.started)
                    judged = session.tests.judge(len(session.agent.steps), time_left)
        except ActsmithError:
            pass  # the session's outcome says why it ended
        except Exception as error:  # one attempt's failure must not take the others down
            self.events.notice(f"an attempt failed: {type(error).__name__}: {error}", "warning")
        finally:
            with self._lock:
                self._tokens.discard(session.cancel)
            self._budget.release(str(which))
        return judged

    def _keep(self, session: Session, which: int | str, branch: str) -> str | None:
        root = self.workspace.root
        with self._refs:
            tip = gitrefs.keep(self.workspace, self.run_id, which, branch)
            if session.run_id:
                with contextlib.suppress(GitError):
                    gitrefs.drop_run_ref(root, session.run_id)
        return tip

    def _count(self, ended: Ended) -> None:
        with self._lock:
            if ended.usage is not None:
                self.usage.add(ended.usage)
            self.steps += ended.steps

    def _side_trajectory(self, which: int | str) -> Path:
        """An attempt's own trajectory, beside the run's (which has every event, tagged)."""
        assert self.trajectory is not None
        main = self.trajectory.path
        name = "designer" if which == DESIGNER else f"candidate-{which}"
        return main.with_name(f"{main.stem}.{name}{main.suffix or '.jsonl'}")

    def _stop_attempts(self) -> None:
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel(self.cancel.reason or "interrupted")

    def _apply(self, winner: Candidate) -> None:
        """The winner's change (the designed tests too with --keep-designed-tests) onto the checkout
        as it is now, or as a commit on the run's branch."""
        assert self.base is not None and winner.commit is not None
        root = self.workspace.root
        since = self.base.commit if self.settings.keep_designed_tests else self._start_commit()
        paths = self.workspace.changed_files(since, winner.commit)
        if self.checkpoints is not None:
            now = self.checkpoints.snapshot()
            restore(root, now, tree_with(root, now, winner.commit, paths))
            return
        assert self.branch is not None
        tree = tree_with(root, self.base.tree, winner.commit, paths)
        commit = gitrefs.commit_tree(root, tree, self.base.commit, self._commit_message(), self.identity)
        gitrefs.move_branch(root, self.branch, commit, self.base.commit)
        self.commit = commit


def designed_outputs(judged: Comparison, designed: list[str]) -> dict[str, str]:
    """Each designed test's output in the judging run (pytest ids start with their file)."""
    return {
        test.id: output_of(test.outcome, test.message)
        for test in judged.run.results.values()
        if test.file in designed
        or any(test.id == path or test.id.startswith(f"{path}::") for path in designed)
    }
