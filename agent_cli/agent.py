"""The agent loop: ask the model for a code action, run it in the sandbox, show it the result, repeat.

Everything the loop touches sits behind a small interface (Model, Sandbox, Trajectory, Observer),
so the same loop serves the terminal, batch jobs and CI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent_cli.actions import ParsedReply, parse_reply
from agent_cli.errors import EXIT_LIMIT, EXIT_OK, EXIT_TESTS_FAIL, LimitReached, ModelStopped
from agent_cli.model import Model, ModelReply, Usage
from agent_cli.sandbox import Observation, Sandbox
from agent_cli.templates import helper_docs, render
from agent_cli.testing.gate import TestRequest, TestVerdict, split_test_request, unavailable_report
from agent_cli.trajectory import Trajectory

if TYPE_CHECKING:
    from agent_cli.ledger import Ledger
    from agent_cli.repomap import RepoMap
    from agent_cli.testing import TestRunner

MAX_REPLIES_WITHOUT_ACTION = 3


@dataclass(frozen=True)
class AgentConfig:
    max_steps: int = 30
    max_cost: float = 2.0
    max_time: float = 1800.0
    action_timeout: float = 120.0
    max_output_chars: int = 10_000
    network: bool = False


@dataclass
class Step:
    number: int
    reply: str
    thought: str
    code: str | None
    observation: Observation | None
    observation_text: str
    usage: Usage


@dataclass
class RunResult:
    status: str  # finished | limit | model_stopped | no_action
    exit_code: int
    message: str
    summary: str | None = None
    steps: list[Step] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    wall_s: float = 0.0


class Observer(Protocol):
    """Receives progress as it happens (the terminal UI implements it)."""

    def model_started(self, step: int) -> None: ...

    def action_started(self, step: int, thought: str, code: str) -> None: ...

    def step_finished(self, step: Step) -> None: ...


class SilentObserver:
    def model_started(self, step: int) -> None:
        pass

    def action_started(self, step: int, thought: str, code: str) -> None:
        pass

    def step_finished(self, step: Step) -> None:
        pass


@dataclass
class Agent:
    model: Model
    sandbox: Sandbox
    trajectory: Trajectory
    config: AgentConfig = field(default_factory=AgentConfig)
    observer: Observer = field(default_factory=SilentObserver)
    ledger: Ledger | None = None  # records each step's edits; its state is shown to the model every turn
    repo_map: RepoMap | None = None  # refreshed for files whose definitions change
    tests: TestRunner | None = None  # runs the tests on run_tests() and gates finish(); see testing/gate.py

    def __post_init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.usage = Usage()
        self.steps: list[Step] = []
        self.started = time.monotonic()

    def run(self, task: str, repo_summary: str = "") -> RunResult:
        self.started = time.monotonic()
        self.messages = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": render("task", task=task, repo_summary=repo_summary)},
        ]
        self.trajectory.event("task", task=task, model=self.model.name, config=self.config)
        try:
            return self._loop()
        except (LimitReached, ModelStopped) as stop:
            status = "limit" if isinstance(stop, LimitReached) else "model_stopped"
            return self._result(status, EXIT_LIMIT, str(stop))

    def _system_prompt(self) -> str:
        return render(
            "system",
            helpers=helper_docs(),
            workspace="/workspace",
            network=self.config.network,
            action_timeout=int(self.config.action_timeout),
            max_output_chars=self.config.max_output_chars,
        )

    def _loop(self) -> RunResult:
        replies_without_action = 0
        while True:
            number = len(self.steps) + 1
            self._check_limits(number)
            reply = self._ask_model(number)
            parsed = parse_reply(reply.content)
            if parsed.code is None:
                replies_without_action += 1
                if replies_without_action >= MAX_REPLIES_WITHOUT_ACTION:
                    message = (
                        f"the model sent {MAX_REPLIES_WITHOUT_ACTION} replies in a row without an action"
                    )
                    return self._result("no_action", EXIT_LIMIT, message)
                self._record_step(number, reply, parsed, None, render("no_action"))
                continue
            replies_without_action = 0
            timeout = self._timeout()
            observation, request = split_test_request(self._act(number, parsed, timeout))
            notes, map_update = self._record_edits(number)
            verdict = self._run_tests(number, observation, request)
            if observation.finished is not None and (verdict is None or verdict.passed):
                self._record_step(number, reply, parsed, observation, "[finished]")
                return self._result("finished", EXIT_OK, "the model called finish()", observation.finished)
            if verdict is not None and verdict.final:
                self._record_step(number, reply, parsed, observation, verdict.report)
                return self._result("tests_failed", EXIT_TESTS_FAIL, verdict.message, observation.finished)
            steps_left = self.config.max_steps - number
            report = verdict.report if verdict else None
            text = render(
                "observation",
                obs=observation,
                timeout=timeout,
                steps_left=steps_left,
                notes=notes,
                map_update=map_update,
                tests=report,
            )
            self._record_step(number, reply, parsed, observation, text)

    def _check_limits(self, number: int) -> None:
        if number > self.config.max_steps:
            raise LimitReached(f"step limit reached ({self.config.max_steps} steps; raise --max-steps)")
        cost = self.usage.cost
        if cost is not None and cost >= self.config.max_cost:
            raise LimitReached(f"cost limit reached (${cost:.4f} of ${self.config.max_cost:.2f}; --max-cost)")
        if time.monotonic() - self.started >= self.config.max_time:
            raise LimitReached(f"time limit reached ({self.config.max_time:.0f} s)")

    def _timeout(self) -> float:
        """The action timeout, shortened so an action cannot outlive the run's wall-time limit."""
        remaining = self.config.max_time - (time.monotonic() - self.started)
        return max(1.0, min(self.config.action_timeout, remaining))

    def _ask_model(self, number: int) -> ModelReply:
        self.observer.model_started(number)
        messages = self._with_state_block(self.messages)
        reply = self.model.complete(messages)
        self.usage.add(reply.usage)
        self.trajectory.event(
            "model_call",
            step=number,
            messages=messages,
            reply=reply.content,
            usage=reply.usage,
            latency_s=round(reply.latency_s, 3),
        )
        return reply

    def _with_state_block(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The latest user message carries the current state of the work; earlier ones do not, so the
        prompt grows linearly with steps and the state is always where the model looks last."""
        ledger = self.ledger.view() if self.ledger else None
        block = render("state", ledger=ledger, tests=self.tests.status() if self.tests else None).strip()
        if not block:
            return messages
        last = messages[-1]
        return [*messages[:-1], {**last, "content": f"{last['content'].rstrip()}\n\n{block}"}]

    def _record_edits(self, number: int) -> tuple[list[str], str]:
        """Checkpoint the step in the ledger. Its syntax warnings, and the refreshed map of files whose
        definitions appeared, vanished or moved, go into the same observation."""
        if self.ledger is None:
            return [], ""
        notes = self.ledger.record_step(number)
        edits = self.ledger.steps[-1]
        if edits.files:
            self.trajectory.event("edits", step=number, files=edits.files)
        reshaped = [
            change.path
            for change in edits.files
            if change.status != "deleted"
            and (change.status == "renamed" or any(s[0] in "+-" for s in change.symbols))
        ]
        map_update = self.repo_map.outline(reshaped).strip() if self.repo_map and reshaped else ""
        return notes, map_update

    def _run_tests(
        self, number: int, observation: Observation, request: TestRequest | None
    ) -> TestVerdict | None:
        """The tests' verdict when the action called run_tests() or finish(); None when it called neither."""
        time_left = self.config.max_time - (time.monotonic() - self.started)
        if self.tests is None:
            return TestVerdict(unavailable_report()) if request else None
        if request is not None:
            verdict = self.tests.check(number, request, time_left)
        elif observation.finished is not None:
            verdict = self.tests.gate(number, time_left)
        else:
            return None
        self.usage.add(verdict.usage)  # the summary model's, if it ran
        return verdict

    def _act(self, number: int, parsed: ParsedReply, timeout: float) -> Observation:
        self.observer.action_started(number, parsed.thought, parsed.code or "")
        return self.sandbox.run(parsed.code or "", timeout)

    def _record_step(
        self,
        number: int,
        reply: ModelReply,
        parsed: ParsedReply,
        observation: Observation | None,
        text: str,
    ) -> None:
        step = Step(number, reply.content, parsed.thought, parsed.code, observation, text, reply.usage)
        self.steps.append(step)
        self.messages.append({"role": "assistant", "content": reply.content})
        self.messages.append({"role": "user", "content": text})
        self.trajectory.event(
            "observation", step=number, code=parsed.code, observation=observation, text=text
        )
        self.observer.step_finished(step)

    def _result(self, status: str, exit_code: int, message: str, summary: str | None = None) -> RunResult:
        result = RunResult(
            status=status,
            exit_code=exit_code,
            message=message,
            summary=summary,
            steps=self.steps,
            usage=self.usage,
            wall_s=time.monotonic() - self.started,
        )
        self.trajectory.event(
            "result", status=status, exit_code=exit_code, message=message, summary=summary, usage=self.usage
        )
        return result
