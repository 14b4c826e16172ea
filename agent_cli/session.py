"""A session: everything one task (or one conversation) needs, opened together and closed together.

    with Session(settings, workspace, label=task, events=events) as session:
        session.run(task)          # or, in a conversation, session.ask(message) turn after turn
    session.outcome                # the `end` event: status, category, exit code, tests, what changed

A conversation (chat, a review loop) drives the session only through its conversation API: `ask`,
`resume`, `clear`, `switch_model`, `run_command`, `run_tests`, `commit`, `undo_turn`, `diff`; never
the agent, the ledger or the checkpoints.

Opening takes the in-place lock (or makes a worktree), reserves a run id, opens the trajectory,
checkpoints the working tree, starts the sandbox (made by an injected factory) and the baseline test
run, and builds the agent. The slow parts overlap: the sandbox starts and the repo map is scanned
while litellm is imported and the credentials are checked. Closing removes the sandbox, records the
final checkpoint, commits when asked, removes the worktree and releases the lock, whatever happened.
Several sessions can live in one process at once (batch runs them in threads): nothing is global,
so what a caller lends (an API key, a git identity) is passed in, never put in the environment.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agent_cli.agent import Agent, AgentConfig
from agent_cli.cancel import Cancelled, CancelToken
from agent_cli.checkpoints import RunCheckpoints, Undone, working_tree
from agent_cli.context import context_window
from agent_cli.errors import EXIT_OK, ActsmithError, UsageError
from agent_cli.events import Ended, EventStream, Failed, Interrupted, ModelRetried, Started
from agent_cli.ignored import IgnoredChange, IgnoredFiles
from agent_cli.instructions import RepoInstructions
from agent_cli.ledger import Ledger
from agent_cli.model import Model, ModelGate, Retry, Usage, check_credentials, make_model, summary_model_for
from agent_cli.outcome import Status, TestOutcome, TurnResult
from agent_cli.protect import ProtectedPaths
from agent_cli.safe_paths import PathRefused
from agent_cli.sandbox import Observation, RunTests
from agent_cli.templates import render
from agent_cli.testing.gate import Summariser
from agent_cli.trajectory import Redactor, Trajectory
from agent_cli.turns import Turns

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


@dataclass
class ConversationState:
    """What a conversation needs to go on in a new session (`chat --resume`)."""

    conversation: list[dict[str, Any]]
    last_step_number: int
    requests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Committed:
    commit: str
    subject: str


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
        api_key: str | None = None,
        identity: dict[str, str] | None = None,
        plan: bool = False,
    ) -> None:
        # Plan mode: the repository read-only in the sandbox, and nothing of the session written to
        # the working tree, the index or refs: no checkpoints, no run folder, no tests, no setup build.
        self.plan = plan
        if plan:
            settings = replace(settings, worktree=False, commit=False, tests=False, setup=())
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
        self.api_key = api_key  # for the models, instead of their provider's variable
        self.identity = identity  # GIT_AUTHOR_*/GIT_COMMITTER_* for the session's own commits
        self.redactor.add(api_key, "api_key")
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
        self.turns: Turns | None = None
        self.requests: list[str] = []  # the conversation's messages, for its commits
        self.planned: str | None = None  # the last plan a conversation's plan turn made, until carried out
        self._committed: str | None = None  # the tree of the session's last commit
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
            model = self._model or self._new_model(settings.model)
            ready = self._pool.submit(self._check_models)  # imports litellm (seconds) beside the rest
            self._ready = ready
            if settings.commit or settings.worktree:
                self.workspace.check_identity(self.identity)
            if not settings.worktree and not self.plan:
                self.lock = self.workspace.lock_in_place()
            self.run_id = (
                self.workspace.plan_id(self.label) if self.plan else self.workspace.reserve_run_id(self.label)
            )
            self._open_trajectory()
            if settings.worktree:
                self.target, self.branch = self.workspace.create_worktree(self.label, self._branch)
            self._sandbox_start = self._pool.submit(self._start_sandbox)
            self._prepare_map()
            configured_summary = ready.result()
            self.events.release()
            if self.plan:
                self._start_plan()
            else:
                self.ledger = self._start_ledger()
            if self.branch is None and not self.plan:  # a worktree run cannot reach the checkout's files
                self.ignored = IgnoredFiles.snapshot(self.target.root, self.run_id)  # as the sandbox starts
            self.sandbox = self._sandbox_start.result()
            if not self.plan:
                self.tests = self._start_tests(summary_model_for(model, configured_summary))
            self.agent = Agent(
                model,
                self.sandbox,
                self.events,
                AgentConfig.from_settings(settings, context_window(model.name)),
                ledger=self.ledger,
                tests=self.tests,
                repo_map=self.repo_map,
                cancel=self.cancel,
                summary_model=configured_summary,
                # Read before the first action: what the sandbox writes later is not the user's word.
                instructions=RepoInstructions.read(self.target.root),
                plan=self.plan,
            )
            if self.ledger is not None:
                self.turns = Turns(self.ledger, self.agent.take_step_number)
        except BaseException as error:
            self.events.drop()
            self.close(error)
            raise

    def _new_model(self, name: str, *, coder: bool = True) -> Model:
        """A model as every call of this session makes it: the gate, the timeout, the key, and (for
        the coder) the hook that reports retries."""
        settings = self.settings
        return make_model(
            name,
            api_base=settings.api_base,
            api_key=self.api_key,
            timeout=settings.model_timeout,
            temperature=settings.temperature if coder else None,
            on_retry=self._retried if coder else None,
            gate=self._gate,
            prompt_caching=settings.prompt_caching and coder,
        )

    def _check_credentials(self, name: str) -> None:
        check_credentials(name, api_base=self.settings.api_base, api_key=self.api_key)

    def _check_models(self) -> Model | None:
        """Fail before any work when a model cannot possibly be called; the summary model, if set."""
        settings = self.settings
        if self._model is None:
            self._check_credentials(settings.model)
        if not settings.summary_model:
            return None
        self._check_credentials(settings.summary_model)
        return self._new_model(settings.summary_model, coder=False)

    def _open_trajectory(self) -> None:
        path = self.settings.trajectory or self._default_trajectory()
        try:
            self.trajectory = Trajectory(path, self.redactor, self.workspace.root)
        except PathRefused as error:  # planted by an earlier run's sandbox
            raise UsageError(f"cannot write the trajectory at {path}: {error} (remove it)") from None
        except OSError as error:
            raise UsageError(f"cannot write the trajectory at {path}: {error.strerror or error}") from None
        self.events.subscribe(self.trajectory)

    def _default_trajectory(self) -> Path:
        if self.plan:  # private state of the repository's, like its repo map cache: not the tree
            return self.workspace.common_git_dir / "actsmith" / "plans" / f"{self.run_id}.jsonl"
        return self.workspace.run_path(self.run_id) / "trajectory.jsonl"

    def _start_plan(self) -> None:
        """What a plan needs of the start: the tree the sandbox's environment comes from (objects
        only, no ref) and the `start` event."""
        base = working_tree(self.workspace)
        self._base_tree.set_result(base)
        self.events.emit(
            Started(
                run_id=self.run_id,
                repo=str(self.workspace.root),
                workdir=str(self.target.root),
                branch=None,
                checkpoint="",
                settings=self.settings,
            )
        )

    def _start_sandbox(self, *, read_only: bool = False) -> Sandbox:
        from agent_cli.sandbox import SandboxRequest
        from agent_cli.testing.execute import snapshot_tar

        factory = self._factory
        if factory is None:
            from agent_cli.environment import docker_factory

            factory = docker_factory(self.settings, self.events)
        root = self.target.root
        request = SandboxRequest(
            root,
            self.workspace.root,
            lambda: snapshot_tar(root, self._base_tree.result()),
            ready=self._wait_until_ready,
            cancel=self.cancel,
            read_only=self.plan or read_only,
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
        status, message = self._final_status(error)
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
        tests = self.tests.summary() if self.tests is not None else None
        commit, not_committed = None, None
        if final is not None and (self.settings.worktree or self.settings.commit):
            commit, not_committed = self._commit(status, tests, final.tree)
        if self.branch is not None:
            with contextlib.suppress(ActsmithError):
                self.target.remove_worktree(self.workspace)
        if self.lock is not None:
            self.lock.release()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.outcome = self._ended(
            status, message, tests, final.tree if final else None, commit, not_committed
        )
        if self._base_tree.done() and self._base_tree.exception() is None:  # it started: report
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

    def _final_status(self, error: BaseException | None) -> tuple[Status, str]:
        """How the session ended: the error that ended it (a failure while opening keeps its own
        status: a refused model key is the model's, not the machine's), else its last turn."""
        if error is not None:
            status = Status.of_error(error)
            if status is Status.INTERRUPTED:
                return status, "interrupted"
            if isinstance(error, ActsmithError):
                return status, str(error)
            return status, f"{type(error).__name__}: {error}"
        if self.last is None:
            return Status.ERROR, "the session ended before any task"
        return self.last.status, self.last.message

    def _commit(
        self, status: Status, tests: TestOutcome | None, final_tree: str
    ) -> tuple[str | None, str | None]:
        """--worktree always commits on its own branch; --commit touches the user's branch only when
        the run finished cleanly."""
        assert self.ledger is not None
        if self.branch is None and status.exit_code != EXIT_OK:
            return None, f"the run ended with {status}; review the changes, or `actsmith undo`"
        message = render(
            "commit_message",
            task=" ".join(self.label.split()),
            status=status,
            message=self.last.message if self.last else "",
            summary=self.last.summary if self.last else None,
            tests=tests,
            ledger=self.ledger.view(),
            run_id=self.run_id,
        )
        try:
            return self._commit_tree(final_tree, message), None
        except ActsmithError as error:
            return None, str(error)

    def _commit_tree(self, tree: str, message: str) -> str | None:
        """Commit onto HEAD what changed from the session's last commit (or its start) to `tree`:
        the one way a session commits, at its end or when a conversation asks."""
        assert self.ledger is not None
        since = self._committed or self.ledger.base_tree
        made = self.target.commit_run(since, tree, message.strip() + "\n", identity=self.identity)
        if made is not None:
            self._committed = tree
        return made

    def _ended(
        self,
        status: Status,
        message: str,
        tests: TestOutcome | None,
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
        return Ended(
            run_id=self.run_id,
            status=status,
            category=status.category(bool(changed)),
            exit_code=status.exit_code,
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

    # ---------------------------------------------------------------------- the conversation

    def ask(self, message: str) -> TurnResult:
        """One turn of a conversation: the user's own edits since the last turn are recorded and
        named to the model, then the agent works on the message (the first one is its task)."""
        return self._ask(message, message)

    def _ask(self, request: str, text: str) -> TurnResult:
        """A turn on the user's `request` (kept for the commit message), the model reading `text`."""
        require_task(request)
        agent, turns = self._require_agent(), self._require_turns()
        self.cancel.reset()
        changes = turns.begin()
        if changes:
            agent.note(render("user_edits", files=changes))
        self.requests.append(request)
        try:
            return self.continue_(text) if agent.conversation.started else self.run(text)
        finally:
            turns.end()

    def plan_turn(self, message: str) -> TurnResult:
        """A turn that only plans: the model works in a read-only sandbox of its own (its variables
        go with it), no test gates its finish(), and its summary is the plan, kept for `carry_out`."""
        require_task(message)
        agent = self._require_agent()
        viewer = self._start_sandbox(read_only=True)
        working, agent.sandbox, agent.plan = agent.sandbox, viewer, True
        try:
            result = self._ask(f"plan: {message}", render("plan_request", message=message).strip())
        finally:
            agent.sandbox, agent.plan = working, self.plan
            viewer.close()
        self.planned = result.summary if result.status.finished else None
        return result

    def carry_out(self, note: str = "") -> TurnResult:
        """The turn after a plan: the model carries it out, with write access."""
        if self.planned is None:
            raise UsageError("there is no plan to carry out: ask for one with /plan TEXT first")
        self.planned = None
        return self._ask(
            f"carry out the plan {note}".strip(), render("carry_out_plan", note=note.strip()).strip()
        )

    def conversation_state(self) -> ConversationState:
        agent = self._require_agent()
        return ConversationState(agent.conversation.to_data(), agent.last_step_number, list(self.requests))

    def resume(self, state: ConversationState) -> None:
        """Go on with a saved conversation in this session's new sandbox (the model is told its
        variables are gone)."""
        agent = self._require_agent()
        agent.resume(state.conversation, state.last_step_number)
        self.requests = list(state.requests)
        agent.note(render("resumed"))

    def clear(self) -> None:
        """Forget the conversation; the files, the interpreter and the ledger stay."""
        self._require_agent().forget()

    @property
    def model_name(self) -> str:
        return self._require_agent().model.name

    def switch_model(self, name: str) -> None:
        """Go on with another model, made as the first was (gate, retries, key); condensation and the
        test summaries follow it unless a summary model is set."""
        agent = self._require_agent()
        self._check_credentials(name)
        model = self._new_model(name)
        agent.use_model(model)
        if self.tests is not None and not self.settings.summary_model:
            summary = summary_model_for(model, None)  # never a replay
            self.tests.summariser = Summariser(summary, self.events) if summary is not None else None

    @property
    def usage(self) -> Usage:
        return self._require_agent().usage

    @property
    def turn_count(self) -> int:
        return self._require_agent().turn

    @property
    def step_count(self) -> int:
        return len(self._require_agent().steps)

    def run_command(self, command: str) -> Observation:
        """Run a shell command in the sandbox's interpreter, as the model's `sh()` would; the model is
        told what it printed before its next step."""
        agent = self._require_agent()
        sandbox = agent.sandbox
        with self.cancel.on_cancel(sandbox.interrupt):
            observation = sandbox.run(f"sh({command!r})", self.settings.action_timeout)
        output = (observation.stdout + observation.stderr).rstrip("\n")
        agent.note(render("user_ran", command=command, output=output, error=observation.error))
        return observation

    def run_tests(self) -> str | None:
        """Run the tests now, against the baseline; the report (None: this session has no test runner)."""
        agent = self._require_agent()
        if self.tests is None:
            return None
        with self.cancel.watching():
            verdict = self.tests.check(agent.last_step_number, RunTests(), self.settings.test_timeout)
        return verdict.report

    def commit(self, subject: str = "") -> Committed | None:
        """Commit what the session changed since its last commit onto the branch checked out, the
        message from the conversation's requests and the ledger; None when nothing changed."""
        ledger = self._require_ledger()
        self.workspace.check_identity(self.identity)
        message = render(
            "chat_commit",
            requests=self.requests,
            ledger=ledger.view(),
            run_id=self.run_id,
            summary=subject.strip(),
        )
        made = self._commit_tree(ledger.checkpoints.snapshot(), message)
        return Committed(made, message.strip().splitlines()[0]) if made else None

    def undo_turn(self) -> Undone | None:
        """Undo the last turn's changes (files the user edited since stay as they are); the model is
        told. None when there is no turn to undo."""
        undone = self._require_turns().undo()
        if undone is not None:
            self._require_agent().note(render("user_undid", restored=undone.paths, kept=undone.kept))
        return undone

    def diff(self, last_turn: bool = False) -> str:
        """The session's changes (from its start to the working tree now), or the last turn's."""
        trees = self._require_turns().trees(last_turn)
        if trees is None or trees[0] == trees[1]:
            return ""
        return self.target.diff(*trees)

    def _require_agent(self) -> Agent:
        if self.agent is None:
            raise RuntimeError("the session is not open")
        return self.agent

    def _require_turns(self) -> Turns:
        if self.turns is None:
            raise RuntimeError("the session is not open")
        return self.turns

    def _require_ledger(self) -> Ledger:
        if self.ledger is None:
            raise RuntimeError("the session is not open")
        return self.ledger
