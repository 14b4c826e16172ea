"""The context stays bounded (condensation) and loops are noticed (stuck detection): the agent loop with
a local sandbox and scripted models, then the real CLI with Docker and replay models."""

from __future__ import annotations

import itertools
import json

import pytest
from conftest import limits, make_repo, run_cli, write_replay

from agent_cli.agent import Agent, AgentConfig
from agent_cli.context import Conversation, messages_tokens
from agent_cli.events import Collector, Condensed, EventStream, ModelCalled
from agent_cli.model import ModelReply, Usage
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.settings import Settings
from agent_cli.stuck import StuckDetector

NOISY_STEP = "Printing a lot.\n<execute>\nprint('{n}' * 3000)\n</execute>"


class Scripted:
    def __init__(self, name, replies):
        self.name, self.replies, self.prompts = name, list(replies), []

    def complete(self, messages, *, timeout=None):
        self.prompts.append(messages)
        reply = self.replies.pop(0) if self.replies else "<execute>finish('out of replies')</execute>"
        return ModelReply(reply, Usage(messages_tokens(messages), 10, 0.001), self.name, 0.0)


@pytest.fixture
def box(tmp_path):
    sandbox = LocalSandbox(make_repo(tmp_path / "repo", {"app.py": "x = 1\n"}), limits())
    sandbox.start()
    yield sandbox
    sandbox.close()


def test_a_long_run_stays_under_the_budget_and_keeps_what_matters(box):
    coder = Scripted("coder", [NOISY_STEP.format(n=n % 10) for n in range(40)])
    summariser = Scripted("summariser", [f"summary {n}: printed digits" for n in range(40)])
    collector = Collector()
    config = AgentConfig.from_settings(Settings(max_steps=40), max_context_tokens=8000)
    agent = Agent(coder, box, EventStream([collector]), config, summary_model=summariser)
    result = agent.run("print digits for a while")
    assert result.status == "limit" and len(result.steps) == 40
    sizes = [messages_tokens(prompt) for prompt in coder.prompts]
    assert max(sizes) <= 8000  # no prompt passed the budget
    condensed = collector.of(Condensed)
    assert condensed and all(event.tokens_after < event.tokens_before for event in condensed)
    last = coder.prompts[-1]
    assert last[0]["role"] == "system" and "print digits for a while" in last[1]["content"]  # verbatim
    assert (
        "Steps 1 to" in last[1]["content"] and "summary" in last[1]["content"]
    )  # the summary, after the task
    kept = [m["content"] for m in last if m["role"] == "assistant"]
    # The latest steps, verbatim: the 40th prompt ends with steps 38 and 39 (replies 37 and 38).
    assert kept[-1] == NOISY_STEP.format(n=38 % 10) and kept[-2] == NOISY_STEP.format(n=37 % 10)
    calls = [e for e in collector.of(ModelCalled) if e.role == "condenser"]
    assert len(calls) == len(condensed) and agent.usage.cost == pytest.approx(0.001 * (40 + len(calls)))


def test_without_a_budget_the_prompt_grows_linearly(box):
    coder = Scripted("coder", [NOISY_STEP.format(n=n) for n in range(6)])
    config = AgentConfig.from_settings(Settings(max_steps=6))
    Agent(coder, box, EventStream(), config).run("print digits")
    sizes = [messages_tokens(prompt) for prompt in coder.prompts]
    steps = [later - earlier for earlier, later in itertools.pairwise(sizes)]
    assert all(abs(step - steps[0]) < 50 for step in steps)  # each step adds its own size, no more


def test_a_failing_condenser_falls_back_to_the_actions_first_lines(box):
    class Broken:
        name = "broken"

        def complete(self, messages, *, timeout=None):
            from agent_cli.errors import ModelStopped

            raise ModelStopped("no")

    coder = Scripted("coder", [NOISY_STEP.format(n=n) for n in range(12)])
    config = AgentConfig.from_settings(Settings(max_steps=12), max_context_tokens=8000)
    Agent(coder, box, EventStream(), config, summary_model=Broken()).run("print digits")
    assert "the earlier steps, by their first line" in coder.prompts[-1][1]["content"]


def test_a_conversation_round_trips_for_resume():
    conversation = Conversation()
    conversation.start("system", "task")
    conversation.add_step(1, "reply", "observation")
    conversation.add_task("next")
    again = Conversation.from_data(json.loads(json.dumps(conversation.to_data())))
    assert again.messages() == conversation.messages()


# ---------------------------------------------------------------------------------------------- stuck


def test_the_detector_warns_first_and_stops_if_the_loop_goes_on():
    detector = StuckDetector()
    verdicts = [detector.observe("open('x')", "FileNotFoundError", "FileNotFoundError: x") for _ in range(5)]
    assert verdicts[:2] == [None, None]
    assert verdicts[2] is not None and not verdicts[2].stop and "same action" in verdicts[2].pattern
    assert verdicts[3] is None and verdicts[4] is not None and verdicts[4].stop


def test_the_same_error_and_alternating_actions_are_loops_too():
    errors = StuckDetector()
    seen = [errors.observe(f"attempt {n}", f"out {n}", "Traceback\nKeyError: 'name'") for n in range(4)]
    assert seen[3] is not None and "same error" in seen[3].pattern and "KeyError: 'name'" in seen[3].pattern
    alternating = StuckDetector()
    seen = [alternating.observe(["a()", "b()"][n % 2], ["A", "B"][n % 2], None) for n in range(6)]
    assert seen[5] is not None and "alternating" in seen[5].pattern


def test_changing_approach_after_the_warning_clears_it():
    detector = StuckDetector()
    for _ in range(3):
        verdict = detector.observe("x", "same", None)
    assert verdict is not None and not verdict.stop
    assert detector.observe("y", "different", None) is None
    assert detector.warned_at is None


# -------------------------------------------------------------------------------------- end to end


@pytest.mark.docker
def test_150_noisy_steps_through_the_cli_never_pass_the_budget(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    replay = write_replay(tmp_path / "r.yaml", [NOISY_STEP.format(n=n % 10) for n in range(150)])
    summaries = write_replay(
        tmp_path / "s.yaml", [f"Summary {n}: the agent printed digits." for n in range(150)]
    )
    trajectory = tmp_path / "t.jsonl"
    args = ["run", "print digits", "--model", f"replay:{replay}", "--summary-model", f"replay:{summaries}"]
    args += ["--max-context-tokens", "8000", "--max-steps", "150", "--trajectory", str(trajectory)]
    run = run_cli(args, repo, timeout=600)
    assert run.code == 3, run.stderr  # the step limit, after all 150
    calls = [e for e in run.trajectory if e["event"] == "model_call" and e["role"] == "coder"]
    assert len(calls) == 150
    assert max(messages_tokens(call["messages"]) for call in calls) <= 8000
    condensed = [e for e in run.trajectory if e["event"] == "condensed"]
    assert len(condensed) >= 10 and all(e["tokens_after"] < e["tokens_before"] for e in condensed)


@pytest.mark.docker
def test_condensing_a_replay_run_never_spends_its_replies(tmp_path, sandbox_image):
    """With no summary model, a replay's summaries are the harness's digest: every scripted reply
    reaches the coder, so a re-run does what the script says, step for step."""
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    replies = [NOISY_STEP.format(n=n % 10) for n in range(12)] + [
        "<execute>\nfinish('printed them all')\n</execute>"
    ]
    replay = write_replay(tmp_path / "r.yaml", replies)
    trajectory = tmp_path / "t.jsonl"
    args = ["run", "print digits", "--model", f"replay:{replay}", "--max-context-tokens", "4000"]
    run = run_cli([*args, "--trajectory", str(trajectory)], repo, timeout=300)
    assert run.code == 0, run.stdout + run.stderr
    condensed = run.events("condensed")
    assert condensed and {e["model"] for e in condensed} == {"digest"}
    assert not [c for c in run.events("model_call") if c["role"] != "coder"]
    assert len(run.events("action")) == 13  # every reply ran
    (result,) = run.events("result")
    assert (result["status"], result["summary"]) == ("finished_untested", "printed them all")  # no tests


@pytest.mark.docker
def test_a_replay_stuck_on_one_failing_action_stops_with_exit_3_after_a_warning(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    replay = write_replay(tmp_path / "r.yaml", ["<execute>\nopen('missing.txt').read()\n</execute>"] * 30)
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(["run", "read it", "--model", f"replay:{replay}", "--trajectory", str(trajectory)], repo)
    assert run.code == 3
    (result,) = [e for e in run.trajectory if e["event"] == "result"]
    assert result["status"] == "stuck" and result["steps"] == 5  # long before the 30 replies ran out
    warned = [e for e in run.trajectory if e["event"] == "observation"][2]["text"]
    assert "The harness noticed a loop" in warned  # the model was told first
    assert "stuck" in " ".join(run.stdout.split())


@pytest.mark.docker
def test_a_replay_that_changes_approach_after_the_warning_finishes(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    failing = "<execute>\nopen('missing.txt').read()\n</execute>"
    replies = [failing] * 3 + [
        "<execute>\nimport os\nprint(os.listdir('.'))\n</execute>",
        "<execute>finish('no such file')</execute>",
    ]
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(
        [
            "run",
            "read it",
            "--model",
            f"replay:{write_replay(tmp_path / 'r.yaml', replies)}",
            "--trajectory",
            str(trajectory),
        ],
        repo,
    )
    assert run.code == 0, run.stdout + run.stderr
    assert [e["stopped"] for e in run.trajectory if e["event"] == "stuck"] == [False]
