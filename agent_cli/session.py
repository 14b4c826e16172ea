"""A session: everything one task (or one conversation) needs, opened together and closed together.

    with Session(settings, workspace, label=task, events=events) as session:
        session.run(task)          # and, in a conversation, session.continue_(message) ...
    session.outcome                # the `end` event: status, exit code, what changed, how to undo

Opening takes the in-place lock (or makes a worktree), reserves a run id, opens the trajectory,
checkpoints the working tree, starts the sandbox (made by an injected factory) and the baseline test
run, and builds the agent. The slow parts overlap: the sandbox starts and the repo map is scanned
while litellm is imported and the credentials are checked. Closing removes the sandbox, records the
final checkpoint, commits when asked, removes the worktree and releases the lock, whatever happened.
Several sessions can live in one process at once (batch runs them in threads): nothing is global.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING

from agent_cli.agent import Agent, AgentConfig, TurnResult
from agent_cli.cancel import Cancelled, CancelToken
from agent_cli.checkpoints import RunCheckpoints
from agent_cli.context import context_window
from agent_cli.errors import EXIT_INTERRUPTED, EXIT_OK, ActsmithError, UsageError
from agent_cli.events import Ended, EventStream, Failed, Interrupted, ModelRetried, Started
from agent_cli.ignored import IgnoredChange, IgnoredFiles
from agent_cli.instructions import RepoInstructions
from agent_cli.ledger import Ledger
from agent_cli.model import Model, ModelGate, Retry, check_credentials, make_model, summary_model_for
from agent_cli.protect import ProtectedPaths
from agent_cli.safe_paths import PathRefused
from agent_cli.templates import render
from agent_cli.trajectory import Redactor, Trajectory

if TYPE_CHECKING:
    from agent_cli.repomap import RepoMap
    from agent_cli.sandbox import Sandbox, SandboxFactory
    from agent_cli.settings import Settings
    from agent_cli.testing import SuiteRunner
    from agent_cli.workspace import InPlaceLock, Workspace


def require_task(task: str) -> str:
    if not task.strip():
        raise UsageError("the task is empty: say what the agent should do")
    return task


class Session:
    def __init__(
        self,
        settings: Settings,
        workspace: Workspace,
        *,
        label: str,
        events: EventStream | None = None,
        sandbox_factory: SandboxFactory | None = None,
        cancel: CancelToken | None = None,
        model: Model | None = None,
        branch: str | None = None,
        task: str | None = None,
        gate: ModelGate | None = None,
    ) -> None:
        self.settings = settings
        self.workspace = workspace  # the user's checkout (a worktree session works beside it)
        self.label = label  # names the run id and the worktree branch: the task, or "chat"
        self.events = events or EventStream()
        self.cancel = cancel or CancelToken()
        self.redactor = Redactor()
        self._factory = sandbox_factory
        self._model = model
        self._branch = branch  # an existing branch to work on (--worktree only)
        self._task = task  # the first task, when known at open: its repo map is made beside the rest
        self._gate = gate  # shared with other sessions (a batch): budget and rate limits
        self._context: tuple[str, str] | None = None  # (task, the first prompt's repository part)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="actsmith-session")
        self.started = time.monotonic()
        self.run_id = ""
        self.target: Workspace = workspace  # where the work happens: the checkout, or the worktree
        self.branch: str | None = None
        self.trajectory: Trajectory | None = None
        self.lock: InPlaceLock | None = None
        self.ledger: Ledger | None = None
        self.ignored: IgnoredFiles | None = None  # ignored files as the run found them (in place)
        self.ignored_changed: list[IgnoredChange] = []
        self.sandbox: Sandbox | None = None
        self.tests: SuiteRunner | None = None
        self.repo_map: RepoMap | None = None
        self.agent: Agent | None = None
        self.last: TurnResult | None = None
        self.outcome: Ended | None = None
        self._sandbox_start: Future[Sandbox] | None = None
        self._base_tree: Future[str] = Future()  # set once the pre-run checkpoint is recorded
        self._ready: Future[Model | None] = Future()  # the model checks (litellm's import)

    # ----------------------------------------------------------------------------- open and close

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(error)

    def open(self) -> None:
        settings = self.settings
        self.events.hold()  # until the model is known to be callable: a failure is one line alone
        try:
            model = self._model or make_model(
                settings.model,
                api_base=settings.api_base,
                timeout=settings.model_timeout,
                on_retry=self._retried,
                gate=self._gate,
                prompt_caching=settings.prompt_caching,
            )
            ready = self._pool.submit(self._check_models)  # imports litellm (seconds) beside the rest
            self._ready = ready
            if settings.commit or settings.worktree:
                self.workspace.check_identity()
            if not settings.worktree:
                self.lock = self.workspace.lock_in_place()
            self.run_id = self.workspace.reserve_run_id(self.label)
            self._open_trajectory()
            if settings.worktree:
                self.target, self.branch = self.workspace.create_worktree(self.label, self._branch)
            self._sandbox_start = self._pool.submit(self._start_sandbox)
            self._prepare_map()
            summary_model = summary_model_for(model, ready.result())
            self.events.release()
            self.ledger = self._start_ledger()
            if self.branch is None:  # a run in its own worktree cannot reach the checkout's files
                self.ignored = IgnoredFiles.snapshot(self.target.root, self.run_id)  # as the sandbox starts
            self.sandbox = self._sandbox_start.result()
            self.tests = self._start_tests(summary_model)
            self.agent = Agent(
                model,
                self.sandbox,
                self.events,
                AgentConfig.from_settings(settings, context_window(model.name)),
                ledger=self.ledger,
                tests=self.tests,
                repo_map=self.repo_map,
                cancel=self.cancel,
                summary_model=summary_model,
                # Read before the first action: what the sandbox writes later is not the user's word.
                instructions=RepoInstructions.read(self.target.root),
            )
        except BaseException as error:
            self.events.drop()
            self.close(error)
            raise

    def _check_models(self) -> Model | None:
        """Fail before any work when a model cannot possibly be called; the summary model, if set."""
        settings = self.settings
        if self._model is None:
            check_credentials(settings.model, api_base=settings.api_base)
        if not settings.summary_model:
            return None
        check_credentials(settings.summary_model, api_base=settings.api_base)
        return make_model(
            settings.summary_model,
            api_base=settings.api_base,
            timeout=settings.model_timeout,
            gate=self._gate,
        )

    def _open_trajectory(self) -> None:
        path = self.settings.trajectory or self.workspace.run_path(self.run_id) / "trajectory.jsonl"
        try:
            self.trajectory = Trajectory(path, self.redactor, self.workspace.root)
        except PathRefused as error:  # planted by an earlier run's sandbox
            raise UsageError(f"cannot write the trajectory at {path}: {error} (remove it)") from None
        except OSError as error:
            raise UsageError(f"cannot write the trajectory at {path}: {error.strerror or error}") from None
        self.events.subscribe(self.trajectory)

    def _start_sandbox(self) -> Sandbox:
        from agent_cli.sandbox import SandboxRequest
        from agent_cli.testing.execute import snapshot_tar

        factory = self._factory
        if factory is None:
            from agent_cli.sandbox.docker_sandbox import docker_factory

            factory = docker_factory(self.settings, self.events)
        root = self.target.root
        request = SandboxRequest(
            root,
            self.workspace.root,
            lambda: snapshot_tar(root, self._base_tree.result()),
            ready=self._wait_until_ready,
            cancel=self.cancel,
        )
        sandbox = factory(request)
        try:
            sandbox.start()
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _wait_until_ready(self) -> None:
        self._ready.result()

    def _prepare_map(self) -> None:
        """Scan the repository for its map (and render the first task's, when known) while litellm
        is imported in the background: the first model call then waits for neither."""
        if self.settings.map_tokens <= 0:
            return
        from agent_cli.repomap import RepoMap

        self.repo_map = RepoMap(self.target.root)
        if self._task is not None:
            self._context = (self._task, self._repository_context(self._task))

    def _repository_context(self, task: str) -> str:
        from agent_cli.repomap import repository_context

        if self._context is not None and self._context[0] == task:
            return self._context[1]
        return repository_context(
            self.target, task, self.settings.map_tokens, self.events.notice, self.repo_map
        )

    def _start_ledger(self) -> Ledger:
        checkpoints = RunCheckpoints.for_run(
            self.workspace, self.run_id, self.label, root=self.target.root, branch=self.branch
        )
        ledger = Ledger(checkpoints, protected=ProtectedPaths.of(self.settings.protect))
        base = ledger.start()
        self._base_tree.set_result(base.tree)
        self.events.emit(
            Started(
                run_id=self.run_id,
                repo=str(self.workspace.root),
                workdir=str(self.target.root),
                branch=self.branch,
                checkpoint=base.commit,
                settings=self.settings,
            )
        )
        return ledger

    def _start_tests(self, summary_model: Model | None) -> SuiteRunner:
        from agent_cli.testing import build_test_runner

        assert self.ledger is not None and self.sandbox is not None
        tests = build_test_runner(
            self.settings,
            self.target.root,
            self.ledger.base_tree,
            self.sandbox,
            summary_model,
            self.events,
            self.label,
            self.cancel,
        )
        tests.start_baseline()  # on the pre-run tree, beside the first model call
        return tests

    def _retried(self, retry: Retry) -> None:
        self.events.emit(ModelRetried(retry.model, retry.attempt, retry.error, retry.delay_s))

    def close(self, error: BaseException | None = None) -> Ended | None:
        """Tear everything down, in an order that keeps the user's work whatever failed before."""
        if self.outcome is not None or self._pool is None:
            return self.outcome
        status, exit_code, message = self._final_status(error)
        if isinstance(error, KeyboardInterrupt | Cancelled):
            self.events.emit(Interrupted())
        elif isinstance(error, ActsmithError):
            self.events.emit(Failed(str(error), error.exit_code))
        if isinstance(error, KeyboardInterrupt):  # an environment still being built stops too
            self.cancel.cancel("interrupted")
        if not self._base_tree.done():  # a sandbox still being made must not wait for it forever
            self._base_tree.set_exception(UsageError("the session closed before its start was recorded"))
        with contextlib.suppress(Exception):
            self._stop_sandbox()
        if self.tests is not None:
            self.tests.close()
        if self.repo_map is not None:
            self.repo_map.close()
        self.ignored_changed = self._ignored_changes()
        final = self.ledger.close(status) if self.ledger is not None else None
        commit, not_committed = None, None
        if final is not None and (self.settings.worktree or self.settings.commit):
            commit, not_committed = self._commit(exit_code, final.tree)
        if self.branch is not None:
            with contextlib.suppress(ActsmithError):
                self.target.remove_worktree(self.workspace)
        if self.lock is not None:
            self.lock.release()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.outcome = self._ended(
            status, exit_code, message, final.tree if final else None, commit, not_committed
        )
        if self.ledger is not None:  # a session that never started has nothing to report
            self.events.emit(self.outcome)
        if self.trajectory is not None:
            self.events.unsubscribe(self.trajectory)
            self.trajectory.close()
        return self.outcome

    def _stop_sandbox(self) -> None:
        if self.sandbox is None and self._sandbox_start is not None:
            with contextlib.suppress(BaseException):
                self.sandbox = self._sandbox_start.result()
        if self.sandbox is not None:
            self.sandbox.close()

    def _ignored_changes(self) -> list[IgnoredChange]:
        """The ignored files the run touched, once the sandbox is gone; a failure to look is said."""
        if self.ignored is None:
            return []
        try:
            return self.ignored.finish()
        except (ActsmithError, OSError) as error:
            self.events.notice(f"ignored files: could not compare them with the start: {error}", "warning")
            return []

    def _final_status(self, error: BaseException | None) -> tuple[str, int, str]:
        if isinstance(error, KeyboardInterrupt | Cancelled):
            return "interrupted", EXIT_INTERRUPTED, "interrupted"
        if isinstance(error, ActsmithError):
            return "error", error.exit_code, str(error)
        if error is not None:
            return "error", 1, f"{type(error).__name__}: {error}"
        if self.last is None:
            return "error", 2, "the session ended before any task"
        return self.last.status, self.last.exit_code, self.last.message

    def _commit(self, exit_code: int, final_tree: str) -> tuple[str | None, str | None]:
        """--worktree always commits on its own branch; --commit touches the user's branch only when
        the run finished cleanly."""
        assert self.ledger is not None
        if self.branch is None and exit_code != EXIT_OK:
            status = self.last.status if self.last else "an error"
            return None, f"the run ended with {status}; review the changes, or `actsmith undo`"
        message = render(
            "commit_message",
            task=" ".join(self.label.split()),
            result=self.last,
            ledger=self.ledger.view(),
            run_id=self.run_id,
        )
        try:
            return self.target.commit_run(self.ledger.base_tree, final_tree, message.strip() + "\n"), None
        except ActsmithError as error:
            return None, str(error)

    def _ended(
        self,
        status: str,
        exit_code: int,
        message: str,
        final_tree: str | None,
        commit: str | None,
        not_committed: str | None,
    ) -> Ended:
        base = self.ledger.base_tree if self.ledger is not None and self.ledger.base is not None else None
        # Asked of the checkout: a worktree shares its objects, and may already be gone.
        changed = self.workspace.changed_files(base, final_tree) if base and final_tree else []
        stat = self.workspace.diff_stat(base, final_tree) if base and final_tree and changed else ""
        agent = self.agent
        touched = changed or self.ignored_changed
        undo = f"actsmith undo --run {self.run_id}" if touched and self.branch is None else None
        tests = self.tests.summary() if self.tests is not None else None
        return Ended(
            run_id=self.run_id,
            status=status,
            exit_code=exit_code,
            message=message,
            summary=self.last.summary if self.last else None,
            steps=len(agent.steps) if agent else 0,
            usage=agent.usage if agent else None,
            wall_s=round(time.monotonic() - self.started, 3),
            files_changed=changed,
            diff_stat=stat,
            tests=tests,
            trajectory=str(self.trajectory.path) if self.trajectory else None,
            undo=undo,
            branch=self.branch,
            commit=commit,
            not_committed=not_committed,
            ignored_changed=self.ignored_changed,
        )

    # ------------------------------------------------------------------------------ the work

    def run(self, task: str) -> TurnResult:
        """Give the agent its task; returns when it finished or stopped."""
        require_task(task)
        agent = self._require_agent()
        self.last = agent.run(task, self._repository_context(task))
        return self.last

    def continue_(self, message: str) -> TurnResult:
        """One more request in the same conversation (same interpreter, ledger and history)."""
        require_task(message)
        self.last = self._require_agent().continue_(message)
        return self.last

    def _require_agent(self) -> Agent:
        if self.agent is None:
            raise RuntimeError("the session is not open")
        return self.agent
