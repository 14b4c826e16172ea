"""The agent loop and the Session without Docker: the same kernel in a local subprocess (LocalSandbox),
real git repositories, scripted models. These prove the loop needs nothing but its seams, and run in
seconds."""

from __future__ import annotations

import sys
import threading

import pytest
from conftest import limits, make_repo
from openai_stub import Reply, ServerError

from agent_cli.agent import Agent, AgentConfig
from agent_cli.cancel import CancelToken
from agent_cli.errors import ModelStopped
from agent_cli.events import (
    ActionStarted,
    Collector,
    Ended,
    EventStream,
    ModelCalled,
    ModelRetried,
    Observed,
    StepStarted,
    TaskGiven,
    TurnEnded,
)
from agent_cli.model import ModelReply, Usage
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.session import Session
from agent_cli.settings import Settings
from agent_cli.workspace import Workspace


class Scripted:
    """Replies in order; records every prompt. A reply that is a callable is called first (to
    block, or to trip a cancel token) and its return value is the reply."""

    name = "scripted"

    def __init__(self, *replies):
        self.replies = list(replies)
        self.prompts: list[list[dict[str, str]]] = []
        self.timeouts: list[float | None] = []

    def complete(self, messages, *, timeout=None):
        self.prompts.append(messages)
        self.timeouts.append(timeout)
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply()
        return ModelReply(reply, Usage(10, 5, 0.0), self.name, 0.0)


def act(code: str) -> str:
    return f"<execute>\n{code}\n</execute>"


@pytest.fixture
def local_box(tmp_path):
    box = LocalSandbox(make_repo(tmp_path / "repo", {"app.py": "x = 1\n"}), limits())
    box.start()
    yield box
    box.close()


def agent_with(box, model, collector=None, cancel=None, **settings) -> Agent:
    events = EventStream([collector] if collector else [])
    config = AgentConfig.from_settings(Settings(**settings))
    return Agent(model, box, events, config, cancel=cancel)


def test_a_conversation_goes_on_with_its_variables_and_history(local_box):
    model = Scripted(
        act("answer = 21"),
        act("finish('set it')"),
        act("print(answer * 2)"),
        act("finish('doubled it')"),
    )
    agent = agent_with(local_box, model)
    first = agent.run("set a variable")
    second = agent.continue_("now double it")
    assert (first.status, first.summary) == ("finished", "set it")
    assert (second.status, second.summary, second.exit_code) == ("finished", "doubled it", 0)
    assert [step.number for step in second.steps] == [3, 4]  # numbering goes on across turns
    assert "42" in second.steps[0].text
    # The model saw the whole conversation, and the new request after the accepted finish().
    prompt = model.prompts[2]
    assert "set a variable" in prompt[1]["content"]
    assert "finish() accepted" in prompt[-1]["content"] and "now double it" in prompt[-1]["content"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_every_step_is_a_typed_event_in_order(local_box):
    collector = Collector()
    agent_with(local_box, Scripted(act("print('hi')"), act("finish('done')")), collector).run("greet")
    kinds = [type(event) for event in collector.events]
    assert kinds == [
        TaskGiven,
        StepStarted,
        ModelCalled,
        ActionStarted,
        Observed,
        StepStarted,
        ModelCalled,
        ActionStarted,
        Observed,
        TurnEnded,
    ]
    assert collector.of(Observed)[-1].ends == "finished"
    assert collector.of(TurnEnded)[0].record()["event"] == "result"


def test_run_tests_is_a_typed_control_not_a_finish(local_box):
    collector = Collector()
    model = Scripted(act("run_tests('true')"), act("finish('ok')"))
    result = agent_with(local_box, model, collector).run("test")
    assert result.status == "finished" and len(result.steps) == 2
    assert "Tests cannot run in this session" in result.steps[0].text  # no runner was given


def test_a_cancel_interrupts_the_action_and_keeps_the_interpreter(local_box):
    cancel = CancelToken()
    collector = Collector()
    model = Scripted(
        act("kept = 'yes'\nimport time\nwhile True:\n    time.sleep(0.01)"),
        act("print(kept)"),
        act("finish('x')"),
    )
    agent = agent_with(local_box, model, collector, cancel=cancel)
    threading.Timer(1.0, cancel.cancel).start()
    result = agent.run("loop")
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert "The user interrupted this action" in result.steps[-1].text
    cancel.reset()
    after = agent.continue_("go on")
    assert after.status == "finished" and "yes" in after.steps[0].text


def test_a_cancel_abandons_a_model_call_that_never_returns(local_box):
    cancel = CancelToken()
    never = threading.Event()
    model = Scripted(lambda: never.wait(600) and "")
    agent = agent_with(local_box, model, cancel=cancel)
    threading.Timer(0.3, cancel.cancel).start()
    result = agent.run("wait")
    never.set()
    assert result.status == "interrupted" and result.steps == []


def test_a_model_that_never_answers_is_bounded_by_the_time_left(local_box):
    never = threading.Event()
    model = Scripted(lambda: never.wait(600) and "")
    result = agent_with(local_box, model, max_time=1).run("wait")
    never.set()
    assert (result.status, result.exit_code) == ("limit", 3) and "time limit" in result.message
    assert 0 < model.timeouts[0] <= 1  # the model was told how long it had


def test_limits_count_per_turn_and_cost_per_conversation(local_box):
    model = Scripted(*[act("print(1)")] * 3)
    result = agent_with(local_box, model, max_steps=2).run("loop")
    assert (result.status, len(result.steps)) == ("limit", 2) and "step limit" in result.message


# ------------------------------------------------------------------------------- a whole session


def local_session(repo, model, collector, **settings):
    events = EventStream([collector])
    return Session(
        Settings(**{"map_tokens": 0, **settings}),
        Workspace.open(repo),
        label="the task",
        events=events,
        sandbox_factory=lambda request: LocalSandbox(request.root, limits()),
        model=model,
    )


def test_a_session_runs_gates_on_real_pytest_and_reports_what_changed(tmp_path):
    repo = make_repo(
        tmp_path / "calc",
        {
            "calc.py": "def add(a, b):\n    return a + b\n",
            "test_calc.py": "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
    )
    break_it = act("replace('calc.py', 'a + b', 'a - b')\nfinish('changed add')")
    fix_it = act("replace('calc.py', 'a - b', 'a * 1 + b')\nfinish('fixed add')")
    collector = Collector()
    with local_session(
        repo, Scripted(break_it, fix_it), collector, test_cmd=f"{sys.executable} -m pytest -q"
    ) as session:
        result = session.run("make add clearer")
    assert result.status == "finished" and result.summary == "fixed add"
    report = result.steps[0].text
    assert "finish() was not accepted" in report and "test_calc.py::test_add" in report
    (end,) = collector.of(Ended)
    assert end.files_changed == ["calc.py"] and end.exit_code == 0
    assert end.undo == f"actsmith undo --run {session.run_id}"
    assert end.tests.state == "passed"


def stop_replying():
    raise ModelStopped("the replay has no reply left")


def test_a_run_stopped_after_the_gate_refused_finish_reports_the_tests_it_last_measured(tmp_path):
    repo = make_repo(
        tmp_path / "calc",
        {
            "calc.py": "def add(a, b):\n    return a + b\n",
            "test_calc.py": "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n\n"
            "def test_more():\n    assert True\n",
        },
    )
    break_it = act("replace('calc.py', 'a + b', 'a - b')\nfinish('changed add')")
    collector = Collector()
    model = Scripted(break_it, act("finish('still changed')"), stop_replying)
    with local_session(
        repo, model, collector, test_cmd=f"{sys.executable} -m pytest -q", max_test_rounds=2
    ) as session:
        result = session.run("make add clearer")
    assert (result.status, result.category, result.exit_code) == ("model_stopped", "agent_error", 3)
    (end,) = collector.of(Ended)
    assert (end.status, end.category, end.exit_code) == ("model_stopped", "agent_error", 3)
    tests = end.tests
    assert tests is not None and tests.state == "failed"  # not "unchecked": two runs gave results
    assert (tests.step, tests.trigger, tests.regressions, tests.baseline) == (2, "finish", 1, {"passed": 2})
    assert tests.counts == {"passed": 1, "failed": 1}  # the second refused finish()'s run
    assert "test_calc.py::test_add" in tests.text and "after step 2" in tests.text
    assert tests.brief == "failed: 1 passed, 1 failed; 1 regression (step 2)"
    assert end.record()["tests"]["regressions"] == 1 and end.record()["category"] == "agent_error"


def test_a_session_that_ran_no_test_reports_its_tests_unchecked(tmp_path):
    repo = make_repo(
        tmp_path / "calc",
        {"calc.py": "x = 1\n", "test_calc.py": "def test_x():\n    assert True\n"},
    )
    collector = Collector()
    with local_session(
        repo, Scripted(act("print(1)"), stop_replying), collector, test_cmd=f"{sys.executable} -m pytest -q"
    ) as session:
        session.run("look")
    (end,) = collector.of(Ended)
    assert end.tests is not None and end.tests.state == "unchecked" and end.category == "agent_error"
    assert (end.tests.step, end.tests.counts, end.tests.brief) == (None, {}, "unchecked")


def test_a_switched_model_goes_through_the_sessions_retries_and_condenser(tmp_path, stub_server):
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    collector = Collector()
    stub_server.script(ServerError(), Reply(act("finish('from the new model')")))
    with local_session(
        repo,
        Scripted(act("finish('first')")),
        collector,
        api_base=stub_server.api_base,
        max_context_tokens=8000,
    ) as session:
        session.ask("first")
        session.switch_model("openai/gpt-4o")
        result = session.ask("second")
        condenser = session.agent.condenser if session.agent else None
    assert result.summary == "from the new model" and session.model_name == "openai/gpt-4o"
    (retry,) = collector.of(ModelRetried)
    assert retry.model == "openai/gpt-4o" and retry.attempt == 1
    assert condenser is not None and condenser.model_name == "openai/gpt-4o"


def test_an_empty_task_is_refused():
    from agent_cli.errors import UsageError
    from agent_cli.session import require_task

    with pytest.raises(UsageError, match="the task is empty"):
        require_task(" \n\t ")


def test_two_sessions_live_side_by_side_in_one_process(tmp_path):
    """Batch runs sessions in threads: nothing of one may leak into the other."""
    repos = [make_repo(tmp_path / f"r{n}", {"a.py": "x = 1\n"}) for n in (1, 2)]
    collectors = [Collector(), Collector()]
    results = {}

    def work(n):
        model = Scripted(act(f"create('made{n}.py', 'y = {n}\\n')"), act("finish('ok')"))
        with local_session(repos[n], model, collectors[n]) as session:
            results[n] = session.run(f"task {n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in (0, 1):
        assert results[n].status == "finished_untested"  # these repositories have no tests
        (end,) = collectors[n].of(Ended)
        assert end.files_changed == [f"made{n}.py"]
