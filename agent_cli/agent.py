"""The agent loop: ask the model for a code action, run it in the sandbox, show it the result, repeat.

The loop is a handful of public methods (`run`, `continue_`, `step`, `query`, `execute`) over small
seams: a `Model`, a `Sandbox`, the event stream, and optionally the edit ledger, the test runner and
the repo map. `run(task)` starts a conversation; `continue_(message)` goes on with it, keeping the
messages, the interpreter and the ledger, so the same loop serves one-shot runs and a chat. The
conversation stays within `max_context_tokens` (context.py) and a loop is noticed (stuck.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_cli.actions import ParsedReply, parse_reply
from agent_cli.after_edit import AfterEdit
from agent_cli.cancel import CancelToken
from agent_cli.context import DIGEST, Condenser, Conversation
from agent_cli.errors import ActsmithError, LimitReached, ModelStopped
from agent_cli.events import (
    ActionStarted,
    Edited,
    EventStream,
    ModelCalled,
    Observed,
    StepStarted,
    Stuck,
    TaskGiven,
    TurnEnded,
)
from agent_cli.model import Model, ModelReply, Usage, summary_model_for
from agent_cli.outcome import Status, TurnResult
from agent_cli.sandbox import Finish, Observation, RunTests, Sandbox
from agent_cli.stuck import StuckDetector
from agent_cli.templates import helper_docs, render
from agent_cli.testing.gate import TestVerdict, unavailable_report

if TYPE_CHECKING:
    from agent_cli.instructions import InstructionFile, RepoInstructions
    from agent_cli.ledger import Ledger, StepEdits
    from agent_cli.repomap import RepoMap
    from agent_cli.settings import Settings
    from agent_cli.testing import TestRunner

MAX_REPLIES_WITHOUT_ACTION = 3
MODEL_SLACK_S = 5.0  # past the time left, a model call is abandoned even if its client did not give up


@dataclass(frozen=True)
class AgentConfig:
    """The loop's limits, taken from Settings (which validates them)."""

    max_steps: int  # per task or message
    max_cost: float  # USD for the whole conversation
    max_time: float  # seconds per task or message
    action_timeout: float
    max_output_chars: int
    network: bool
    max_context_tokens: int | None  # None: no budget (no condensation)
    after_edit: str | None = None  # a command run in the sandbox after each step that changed files

    @classmethod
    def from_settings(cls, settings: Settings, max_context_tokens: int | None = None) -> AgentConfig:
        return cls(
            max_steps=settings.max_steps,
            max_cost=settings.max_cost,
            max_time=settings.max_time,
            action_timeout=settings.action_timeout,
            max_output_chars=settings.max_output_chars,
            network=settings.network,
            max_context_tokens=settings.max_context_tokens or max_context_tokens,
            after_edit=settings.after_edit,
        )


@dataclass
class Step:
    """One step as the loop took it: the reply, the action, and what the model was shown after it."""

    number: int
    reply: str
    thought: str
    code: str | None
    observation: Observation | None
    text: str
    usage: Usage


@dataclass(frozen=True)
class StepExtras:
    """What the harness adds to a step's observation beside the action's own output."""

    instructions: list[InstructionFile] = field(default_factory=list)  # folders' AGENTS.md now due
    after_edit: str | None = None  # what the after-edit command said


class Agent:
    def __init__(
        self,
        model: Model,
        sandbox: Sandbox,
        events: EventStream,
        config: AgentConfig,
        *,
        ledger: Ledger | None = None,
        tests: TestRunner | None = None,
        repo_map: RepoMap | None = None,
        cancel: CancelToken | None = None,
        summary_model: Model | None = None,
        instructions: RepoInstructions | None = None,
        plan: bool = False,
    ) -> None:
        self.model = model
        self.sandbox = sandbox
        self.events = events
        self.config = config
        self.ledger = ledger  # records each step's edits; its state is shown to the model every turn
        self.tests = tests  # runs the tests on run_tests() and gates finish(); see testing/gate.py
        self.repo_map = repo_map  # outlines files whose definitions an edit reshaped
        self.instructions = instructions  # the repository's AGENTS.md files
        self.plan = plan  # plan mode: the repository is read-only, finish() hands over a plan
        self.cancel = cancel or CancelToken()
        self.conversation = Conversation()
        self.steps: list[Step] = []  # every step of the conversation
        self.usage = Usage()
        self.turn = 0
        self.last_step_number = 0  # steps are numbered across turns; the user's edits take numbers too
        self.stuck = StuckDetector()
        self.summary_model = summary_model  # the configured one; None: the coder's model, unless a replay
        self.condenser = self._condenser(summary_model_for(model, summary_model))
        self._turn_started = time.monotonic()
        self._turn_first_step = 0
        self._turn_changed = False
        self._extras = StepExtras()  # what the step being taken adds to its observation

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.conversation.messages()

    def take_step_number(self) -> int:
        self.last_step_number += 1
        return self.last_step_number

    def _condenser(self, model: Model | None) -> Condenser | None:
        if not self.config.max_context_tokens:
            return None
        if model is None:
            return Condenser(DIGEST, None, self.config.max_context_tokens, self.events)

        def complete(messages: list[dict[str, str]]) -> ModelReply:
            left = max(self._time_left(), 1.0)
            return self.cancel.call(
                lambda: model.complete(messages, timeout=left), timeout=left + MODEL_SLACK_S
            )

        return Condenser(model.name, complete, self.config.max_context_tokens, self.events, self.usage.add)

    # ------------------------------------------------------------------------------ conversation

    def run(self, task: str, repo_context: str = "") -> TurnResult:
        """Start the conversation with a task."""
        self.conversation.start(self._system_prompt(), render("task", task=task, repo_summary=repo_context))
        return self._turn(task)

    def continue_(self, message: str) -> TurnResult:
        """Go on with the conversation: same messages, interpreter and ledger, one more request."""
        if not self.conversation.started:
            return self.run(message)
        self.conversation.add_task(render("followup", message=message))
        return self._turn(message)

    def use_model(self, model: Model) -> None:
        """Go on with another model; condensation follows it unless a summary model is set."""
        self.model = model
        self.condenser = self._condenser(summary_model_for(model, self.summary_model))

    def resume(self, conversation: list[dict[str, Any]], last_step_number: int) -> None:
        """Go on with a saved conversation (`to_data`), its step numbers continuing."""
        self.conversation = Conversation.from_data(conversation)
        self.last_step_number = last_step_number

    def forget(self) -> None:
        """Start the conversation again; the interpreter, the ledger and the step numbers go on."""
        self.conversation = Conversation()

    def note(self, text: str) -> None:
        """Tell the model something before its next step (the user ran a command, edited files)."""
        if self.conversation.started:
            self.conversation.add_note(text)

    def _system_prompt(self) -> str:
        return render(
            "system",
            helpers=helper_docs(),
            workspace=self.sandbox.workdir,
            network=self.config.network,
            action_timeout=int(self.config.action_timeout),
            max_output_chars=self.config.max_output_chars,
            instructions=self.instructions.root if self.instructions else None,
            plan=self.plan,
        )

    def _turn(self, text: str) -> TurnResult:
        self.turn += 1
        self._turn_started = time.monotonic()
        self._turn_first_step = len(self.steps)
        self._turn_changed = False
        self.stuck.reset()
        self.events.emit(TaskGiven(text, self.model.name, self.config, self.turn))
        try:
            with self.cancel.watching():
                result = self._loop()
        except ActsmithError as stop:  # a limit, the model, a cancel, the machine: each its own status
            result = self._result(Status.of_error(stop), str(stop))
        self.events.emit(
            TurnEnded(
                result.status,
                result.exit_code,
                result.message,
                result.summary,
                self.usage,
                len(result.steps),
                self.turn,
            )
        )
        return result

    # -------------------------------------------------------------------------------- the loop

    def _loop(self) -> TurnResult:
        replies_without_action = 0
        while True:
            result = self.step()
            if result is not None:
                return result
            last = self.steps[-1]
            replies_without_action = replies_without_action + 1 if last.code is None else 0
            if replies_without_action >= MAX_REPLIES_WITHOUT_ACTION:
                message = f"the model sent {MAX_REPLIES_WITHOUT_ACTION} replies in a row without an action"
                return self._result(Status.NO_ACTION, message)

    def step(self) -> TurnResult | None:
        """One step: ask, act, record. A result when the step ended the turn."""
        number = self.take_step_number()
        self._check_limits()
        reply = self.query(number)
        parsed = parse_reply(reply.content)
        if parsed.code is None:
            self._record(number, reply, parsed, None, render("no_action"))
            return None
        timeout = self._action_timeout()
        observation = self.execute(number, parsed, timeout)
        edits = self.ledger.record_step(number) if self.ledger else None
        after_edit, edits = self._after_edit(number, edits)
        self._extras = StepExtras(self._instructions_due(parsed.code or "", edits), after_edit)
        if edits is not None and (edits.files or edits.undone):
            self._turn_changed = self._turn_changed or bool(edits.files)
            self.events.emit(Edited(number, edits.files, edits.undone))
        if self.cancel.cancelled:
            text = self._observation_text(observation, timeout, edits, None, interrupted=True)
            self._record(number, reply, parsed, observation, text)
            self.cancel.check()
        verdict = self._run_tests(number, observation)
        control = observation.control
        stuck = self.stuck.observe(parsed.code or "", _result_text(observation, verdict), observation.error)
        if isinstance(control, Finish) and (verdict is None or verdict.passed):
            text = self._observation_text(observation, timeout, edits, None, accepted=True)
            self._record(number, reply, parsed, observation, text, ends=Status.FINISHED)
            untested = self.tests.untested_reason() if self.tests and not self.plan else None
            if untested:
                message = f"finished, but the tests did not check it: {untested}"
                return self._result(Status.FINISHED_UNTESTED, message, control.summary)
            return self._result(Status.FINISHED, "the model called finish()", control.summary)
        if verdict is not None and verdict.final:
            summary = control.summary if isinstance(control, Finish) else None
            self._record(number, reply, parsed, observation, verdict.report, ends=Status.TESTS_FAILED)
            return self._result(Status.TESTS_FAILED, verdict.message, summary)
        report = verdict.report if verdict else None
        text = self._observation_text(observation, timeout, edits, report)
        if stuck is not None:
            self.events.emit(Stuck(number, stuck.pattern, stuck.stop))
            if stuck.stop:
                self._record(number, reply, parsed, observation, text, ends=Status.STUCK)
                message = f"stuck: {stuck.pattern}, and went on after it was told to change approach"
                return self._result(Status.STUCK, message)
            text = f"{text.rstrip()}\n\n{render('stuck', pattern=stuck.pattern)}"
        self._record(number, reply, parsed, observation, text)
        return None

    def query(self, number: int) -> ModelReply:
        """Ask the model for the next reply, with the state of the work on the latest message. The call
        is bounded by the time left and abandoned at once when the session is cancelled."""
        self.events.emit(StepStarted(number))
        block = self._state_block()
        if self.condenser is not None:
            self.condenser.fit(self.conversation, block, number)
        messages = self.conversation.messages()
        if block:
            last = messages[-1]
            messages[-1] = {**last, "content": f"{last['content'].rstrip()}\n\n{block}"}
        left = self._time_left()
        try:
            reply = self.cancel.call(
                lambda: self.model.complete(messages, timeout=left), timeout=left + MODEL_SLACK_S
            )
        except TimeoutError:
            raise LimitReached(self._time_limit_text()) from None
        except ModelStopped:
            if self._time_left() <= 0:
                raise LimitReached(self._time_limit_text()) from None
            raise
        self.usage.add(reply.usage)
        self.events.emit(ModelCalled(number, messages, reply.content, reply.usage, round(reply.latency_s, 3)))
        return reply

    def execute(self, number: int, parsed: ParsedReply, timeout: float) -> Observation:
        """Run the action in the sandbox; a cancel interrupts it (the interpreter and its variables stay)."""
        self.events.emit(ActionStarted(number, parsed.thought, parsed.code or ""))
        with self.cancel.on_cancel(self.sandbox.interrupt):
            if self.cancel.cancelled:  # tripped just before the callback was in place
                self.sandbox.interrupt()
            return self.sandbox.run(parsed.code or "", timeout)

    # ----------------------------------------------------------------------------------- parts

    def _check_limits(self) -> None:
        taken = len(self.steps) - self._turn_first_step
        if taken >= self.config.max_steps:
            raise LimitReached(f"step limit reached ({self.config.max_steps} steps; raise --max-steps)")
        cost = self.usage.cost
        if cost is not None and cost >= self.config.max_cost:
            raise LimitReached(f"cost limit reached (${cost:.4f} of ${self.config.max_cost:.2f}; --max-cost)")
        if self._time_left() <= 0:
            raise LimitReached(self._time_limit_text())

    def _time_left(self) -> float:
        return self.config.max_time - (time.monotonic() - self._turn_started)

    def _time_limit_text(self) -> str:
        return f"time limit reached ({self.config.max_time:g} s; --max-time)"

    def _action_timeout(self) -> float:
        """The action timeout, shortened so an action cannot outlive the wall-time limit."""
        return max(1.0, min(self.config.action_timeout, self._time_left()))

    def _state_block(self) -> str:
        """The current state of the work, for the latest user message only: earlier ones do not
        repeat it, so the prompt grows linearly with steps and the state is where the model looks last."""
        ledger = self.ledger.view() if self.ledger else None
        return render("state", ledger=ledger, tests=self.tests.status() if self.tests else None).strip()

    def _run_tests(self, number: int, observation: Observation) -> TestVerdict | None:
        """The tests' verdict when the action called run_tests() or finish(); None when it called neither."""
        control = observation.control
        if control is None:
            return None
        if self.tests is None or self.plan:  # a plan changes nothing: there is nothing to gate
            return TestVerdict(unavailable_report()) if isinstance(control, RunTests) else None
        if isinstance(control, RunTests):
            verdict = self.tests.check(number, control, self._time_left())
        else:
            verdict = self.tests.gate(number, self._time_left())
        self.usage.add(verdict.usage)  # the summary model's, if it ran
        self.cancel.check()
        return verdict

    def _after_edit(self, number: int, edits: StepEdits | None) -> tuple[str | None, StepEdits | None]:
        """Run the after-edit command on the files the step changed; what it rewrote joins the step."""
        command = self.config.after_edit
        if not command or self.ledger is None or edits is None or self.cancel.cancelled:
            return None, edits
        changed = [change.path for change in edits.files if change.status != "deleted"]
        if not changed:
            return None, edits
        said = AfterEdit(command).run(self.sandbox, changed, self._action_timeout(), self.cancel)
        return said, edits.merged(self.ledger.record_step(number))

    def _instructions_due(self, code: str, edits: StepEdits | None) -> list[InstructionFile]:
        if self.instructions is None:
            return []
        return self.instructions.due(code, [change.path for change in edits.files] if edits else [])

    def _observation_text(
        self,
        observation: Observation,
        timeout: float,
        edits: StepEdits | None,
        tests: str | None,
        *,
        accepted: bool = False,
        interrupted: bool = False,
    ) -> str:
        reshaped = edits.reshaped if edits else []
        outline = self.repo_map.outline(reshaped).strip() if self.repo_map and reshaped else ""
        steps_left = self.config.max_steps - (len(self.steps) + 1 - self._turn_first_step)
        return render(
            "observation",
            obs=observation,
            timeout=timeout,
            steps_left=steps_left,
            notes=edits.warnings if edits else [],
            refused=edits.refused if edits else (),
            instructions=self._extras.instructions,
            after_edit=self._extras.after_edit,
            map_update=outline,
            tests=tests,
            accepted=accepted,
            interrupted=interrupted,
        )

    def _record(
        self,
        number: int,
        reply: ModelReply,
        parsed: ParsedReply,
        observation: Observation | None,
        text: str,
        *,
        ends: Status | None = None,
    ) -> None:
        step = Step(number, reply.content, parsed.thought, parsed.code, observation, text, reply.usage)
        self.steps.append(step)
        self.conversation.add_step(number, reply.content, text)
        self.events.emit(Observed(number, parsed.code, observation, text, ends))

    def _result(self, status: Status, message: str, summary: str | None = None) -> TurnResult:
        return TurnResult(
            status=status,
            message=message,
            summary=summary,
            steps=self.steps[self._turn_first_step :],
            usage=self.usage,
            wall_s=time.monotonic() - self._turn_started,
            changed=self._turn_changed,
        )


def _result_text(observation: Observation, verdict: TestVerdict | None) -> str:
    """What an action produced, for telling a repeat from progress."""
    parts = [observation.stdout, observation.stderr, observation.value or "", observation.error or ""]
    return "\n".join([*parts, verdict.report if verdict else ""])
