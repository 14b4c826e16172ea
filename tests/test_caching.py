"""Prompt caching: breakpoints where the provider needs them, cache reads and writes in the usage and
the cost, condensation that keeps a cached prefix, the live meter.

Against the local stand-in of Anthropic's Messages API (tests/anthropic_stub.py), which bills cache
reads and writes as Anthropic does, and the OpenAI-compatible stub for automatic caching; litellm's real
HTTP path every time, the real CLI and Docker for the end-to-end runs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from anthropic_stub import AnthropicStub, count_tokens
from batch_helpers import act, batch, results, write_spec
from conftest import clean_env, limits, make_repo, run_cli
from openai_stub import Reply, StubServer

from agent_cli.agent import Agent, AgentConfig
from agent_cli.events import Collector, Condensed, EventStream
from agent_cli.model import (
    LiteLLMModel,
    ModelReply,
    Usage,
    import_litellm,
    needs_cache_breakpoints,
    with_cache_breakpoints,
)
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.settings import Settings

CLAUDE = "anthropic/claude-sonnet-4-5"  # in litellm's price map, with cache prices
EPHEMERAL = {"type": "ephemeral"}
# An action whose output (about 1,200 characters) differs at every step, as a session's do.
PRINTING = (
    "Reading part {n}.\n<execute>\nfor i in range(40):\n    print(f'part {n} line {{i}}: ok')\n</execute>"
)
FINISH = "<execute>finish('read it all')</execute>"


@pytest.fixture
def anthropic():
    server = AnthropicStub().start()
    yield server
    server.stop()


def prices(model: str) -> dict:
    return import_litellm().get_model_info(model)


def uncached_price(model: str, usages: list[dict]) -> float:
    """What the same tokens cost at the plain input and output prices."""
    price = prices(model)
    tokens_in = sum(usage["prompt_tokens"] for usage in usages)
    tokens_out = sum(usage["completion_tokens"] for usage in usages)
    return tokens_in * price["input_cost_per_token"] + tokens_out * price["output_cost_per_token"]


def marks(body: dict) -> list[str]:
    """Where a Messages API request has cache_control breakpoints: 'system', or a message's role."""
    found = []
    system = body.get("system")
    if isinstance(system, list):
        found += ["system" for block in system if block.get("cache_control")]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            found += [message["role"] for block in content if block.get("cache_control")]
    return found


def conversation(steps: int) -> list[list[dict[str, str]]]:
    """The prompts of a conversation the way the agent grows it: each one repeats the one before,
    but for the state block at the end of its last message, and adds a reply and an observation."""
    system = {"role": "system", "content": "You are a careful coder. " * 300}
    history = [system, {"role": "user", "content": "Fix the bug in foo.py"}]
    prompts = []
    for step in range(1, steps + 1):
        last = history[-1]
        prompts.append(
            [*history[:-1], {**last, "content": f"{last['content']}\n\n[state after {step - 1} steps]"}]
        )
        history += [
            {"role": "assistant", "content": f"step {step}: let me look at part {step}. " * 10},
            {"role": "user", "content": f"part {step} says: " + "lorem ipsum " * 80},
        ]
    return prompts


# ---------------------------------------------------------------------------------- the breakpoints


def test_breakpoints_are_the_system_prompt_and_the_latest_stable_messages_never_the_last():
    prompt = conversation(4)[-1]  # system, task, 3 x (reply, observation)
    marked = with_cache_breakpoints(prompt)
    where = [index for index, message in enumerate(marked) if isinstance(message["content"], list)]
    assert where == [0, 4, 6]  # the system prompt, the reply before the last, and the one before it
    assert all(marked[index]["content"][-1]["cache_control"] == EPHEMERAL for index in where)
    assert [message["content"][0]["text"] for message in (marked[i] for i in where)] == [
        prompt[i]["content"] for i in where
    ]
    assert marked[-1] == prompt[-1]  # the state block changes at every step: never a breakpoint
    assert all(isinstance(message["content"], str) for message in prompt)  # the input is left alone
    assert [isinstance(m["content"], list) for m in with_cache_breakpoints(conversation(1)[0])] == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("model", "marked"),
    [
        ("anthropic/claude-sonnet-4-5", True),
        ("claude-sonnet-4-5", True),
        ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", True),
        ("bedrock/converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
        ("vertex_ai/claude-sonnet-4-5@20250929", True),
        ("openai/gpt-4o", False),
        ("gpt-4o", False),
        ("bedrock/amazon.nova-pro-v1:0", False),
        ("deepseek/deepseek-chat", False),
    ],
)
def test_only_providers_that_cache_marked_prefixes_get_marks(model, marked):
    assert needs_cache_breakpoints(model) is marked


# ------------------------------------------------------------------------------------ over HTTP


def test_the_stand_in_reads_only_a_prefix_an_earlier_request_marked(anthropic):
    model = LiteLLMModel(CLAUDE, api_base=anthropic.api_base, api_key="dummy", prompt_caching=True)
    anthropic.script("one", "two", "three")
    first, second = conversation(2)
    model.complete(first)
    model.complete(second)
    changed = [{**second[0], "content": second[0]["content"] + "!"}, *second[1:]]
    model.complete(changed)  # the system prompt changed: nothing before the change can be read
    usages = anthropic.usages
    system = count_tokens(first[0]["content"])
    assert (usages[0].cache_read_input_tokens, usages[0].cache_creation_input_tokens) == (0, system)
    assert usages[1].cache_read_input_tokens == system  # the system prompt, marked by the first request
    assert usages[1].cache_creation_input_tokens > 0  # up to the reply it marks
    assert usages[2].cache_read_input_tokens == 0


def test_anthropic_gets_breakpoints_and_the_usage_and_cost_count_cache_reads(anthropic):
    model = LiteLLMModel(CLAUDE, api_base=anthropic.api_base, api_key="dummy", prompt_caching=True)
    prompts = conversation(6)
    anthropic.script(*[f"reply {n}" for n in range(len(prompts))])
    replies = [model.complete(prompt) for prompt in prompts]

    for body in anthropic.requests[1:]:
        assert marks(body).count("system") == 1 and "assistant" in marks(body)
        assert len(marks(body)) <= 4
    usages = [reply.usage for reply in replies]
    for usage, billed in zip(usages, anthropic.usages, strict=True):
        assert usage.cache_read_tokens == billed.cache_read_input_tokens
        assert usage.cache_write_tokens == billed.cache_creation_input_tokens
        assert usage.prompt_tokens == (
            billed.input_tokens + billed.cache_read_input_tokens + billed.cache_creation_input_tokens
        )
    assert all(usage.cache_read_tokens > 0 for usage in usages[1:])
    total = Usage()
    for usage in usages:
        total.add(usage)
    assert total.cached_share > 0.5
    plain = prices(CLAUDE)
    uncached = total.prompt_tokens * plain["input_cost_per_token"]
    uncached += total.completion_tokens * plain["output_cost_per_token"]
    assert total.cost is not None and total.cost < uncached * 0.6


def test_prompt_caching_off_sends_plain_messages(anthropic):
    model = LiteLLMModel(CLAUDE, api_base=anthropic.api_base, api_key="dummy", prompt_caching=False)
    anthropic.script("one", "two")
    replies = [model.complete(prompt) for prompt in conversation(2)]
    assert all(marks(body) == [] for body in anthropic.requests)
    assert "cache_control" not in json.dumps(anthropic.requests)
    assert all(reply.usage.cache_read_tokens == reply.usage.cache_write_tokens == 0 for reply in replies)


def test_openai_style_caching_gets_no_marks_and_its_cached_tokens_are_recorded_and_cheaper():
    server = StubServer().start()
    try:
        server.script(Reply("ok", prompt_tokens=10_000, completion_tokens=10, cached_tokens=8_000))
        model = LiteLLMModel(
            "openai/gpt-4o", api_base=server.api_base, api_key="sk-test", prompt_caching=True
        )
        reply = model.complete(conversation(3)[-1])
    finally:
        server.stop()
    assert server.requests[0]["messages"] == conversation(3)[-1]  # plain strings, no cache_control
    assert (reply.usage.cache_read_tokens, reply.usage.cache_write_tokens) == (8_000, 0)
    assert reply.usage.cost is not None and reply.usage.cost < uncached_price(
        "openai/gpt-4o", [{"prompt_tokens": 10_000, "completion_tokens": 10}]
    )


# ---------------------------------------------------------------------------------- condensation


class Summaries:
    """The condenser's model: a fixed summary (the coder's replies are the stand-in's script)."""

    name = "summaries"

    def complete(self, messages, *, timeout=None):
        return ModelReply("The agent read the parts so far.", Usage(), self.name, 0.0)


def test_condensation_runs_in_chunks_and_the_system_prompt_stays_cached(tmp_path, anthropic):
    steps = 30
    anthropic.script(*[PRINTING.format(n=n) for n in range(1, steps)], FINISH)
    sandbox = LocalSandbox(make_repo(tmp_path / "repo", {"app.py": "x = 1\n"}), limits())
    sandbox.start()
    collector = Collector()
    try:
        model = LiteLLMModel(CLAUDE, api_base=anthropic.api_base, api_key="dummy", prompt_caching=True)
        config = AgentConfig.from_settings(Settings(max_steps=steps), max_context_tokens=6000)
        agent = Agent(model, sandbox, EventStream([collector]), config, summary_model=Summaries())
        result = agent.run("read every part")
    finally:
        sandbox.close()
    assert result.status == "finished" and len(result.steps) == steps
    condensed = collector.of(Condensed)
    assert 2 <= len(condensed) <= steps // 5  # in chunks, not at every step
    system = count_tokens(anthropic.requests[0]["system"][0]["text"])
    assert all(usage.cache_read_input_tokens >= system for usage in anthropic.usages[1:])
    assert agent.usage.cached_share > 0.6


# ----------------------------------------------------------------------- end to end, the real CLI


def claude_run(repo: Path, stub: AnthropicStub, trajectory: Path, *extra: str):
    args = ["run", "read the parts", "--model", CLAUDE, "--api-base", stub.api_base, "--no-tests"]
    return run_cli(
        [*args, "--trajectory", str(trajectory), *extra],
        repo,
        env=clean_env(ANTHROPIC_API_KEY="sk-ant-local-stub-123456"),
    )


@pytest.fixture(scope="module")
def claude(tmp_path_factory, sandbox_image):
    """One four-step run against the Anthropic stand-in, with prompt caching on (the default)."""
    root = tmp_path_factory.mktemp("claude")
    stub = AnthropicStub().start()
    stub.script(*[PRINTING.format(n=n) for n in range(1, 4)], FINISH)
    try:
        run = claude_run(make_repo(root / "repo", {"app.py": "x = 1\n"}), stub, root / "t.jsonl")
    finally:
        stub.stop()
    assert run.code == 0, run.stdout + run.stderr
    return run, stub


@pytest.mark.docker
def test_requests_from_the_second_on_mark_the_system_prompt_and_a_message(claude):
    _, stub = claude
    assert len(stub.requests) == 4
    assert marks(stub.requests[0]) == ["system"]
    for body in stub.requests[1:]:
        found = marks(body)
        assert found.count("system") == 1 and "assistant" in found and len(found) <= 4


@pytest.mark.docker
def test_cache_reads_are_in_the_trajectory_and_the_run_costs_less_than_uncached(claude):
    run, stub = claude
    usages = [event["usage"] for event in run.events("model_call")]
    assert [usage["cache_read_tokens"] for usage in usages] == [
        u.cache_read_input_tokens for u in stub.usages
    ]
    assert usages[0]["cache_read_tokens"] == 0 and all(u["cache_read_tokens"] > 0 for u in usages[1:])
    assert all(u["cache_write_tokens"] > 0 for u in usages)
    end = run.events("end")[0]["usage"]
    assert end["cache_read_tokens"] == sum(u["cache_read_tokens"] for u in usages)
    assert end["cost"] < uncached_price(CLAUDE, usages)
    summary = " ".join(run.stdout.replace("│", " ").split())
    assert f"cache: {end['cache_read_tokens']:,} read" in summary


@pytest.mark.docker
def test_each_step_header_shows_tokens_cached_share_and_cost_against_max_cost(claude):
    run, _ = claude
    headers = [line for line in run.stdout.splitlines() if line.startswith("step ")]
    assert [line.split("·")[0].strip(" ─") for line in headers] == ["step 1", "step 2", "step 3", "step 4"]
    assert "(0% cached)" in headers[0] and "(0% cached)" not in headers[-1]
    assert all("of $2.00" in line for line in headers)


@pytest.mark.docker
def test_prompt_caching_false_in_the_repository_sends_no_marks(tmp_path, sandbox_image, anthropic):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n", ".actsmith.toml": "prompt_caching = false\n"})
    anthropic.script(PRINTING.format(n=1), FINISH)
    run = claude_run(repo, anthropic, tmp_path / "t.jsonl")
    assert run.code == 0, run.stdout + run.stderr
    assert len(anthropic.requests) == 2 and "cache_control" not in json.dumps(anthropic.requests)
    assert all(event["usage"]["cache_read_tokens"] == 0 for event in run.events("model_call"))


@pytest.mark.docker
def test_an_openai_style_model_gets_no_marks_and_each_prompt_extends_the_one_before(
    repo, tmp_path, sandbox_image, stub_server
):
    replies = [PRINTING.format(n=n) for n in range(1, 4)] + [FINISH]
    stub_server.script(*[Reply(reply, cached_tokens=5) for reply in replies])
    args = ["run", "read the parts", "--model", "openai/gpt-4o", "--api-base", stub_server.api_base]
    run = run_cli(
        [*args, "--no-tests", "--trajectory", str(tmp_path / "t.jsonl")],
        repo,
        env=clean_env(OPENAI_API_KEY="sk-local-stub-123456"),
    )
    assert run.code == 0, run.stdout + run.stderr
    prompts = [body["messages"] for body in stub_server.requests]
    assert "cache_control" not in json.dumps(prompts)
    for earlier, later in itertools.pairwise(prompts):
        # Everything but the last message (it carries the state block) is repeated, byte for byte.
        assert later[: len(earlier) - 1] == earlier[:-1]
    assert all(event["usage"]["cache_read_tokens"] == 5 for event in run.events("model_call"))


@pytest.mark.docker
def test_batch_results_and_report_total_the_cache_reads(tmp_path, sandbox_image, anthropic):
    make_repo(tmp_path / "repo0", {"README.md": "# zero\n"})
    spec = write_spec(
        tmp_path / "spec.yaml",
        {
            "name": "cached",
            "model": CLAUDE,
            "api_base": anthropic.api_base,
            "tests": False,
            "map_tokens": 0,
            "tasks": [{"id": "task0", "repo": "repo0", "task": "read the parts"}],
        },
    )
    anthropic.script(act("print('part one')"), act("print('part two')"), FINISH)
    run = batch(["run", str(spec)], tmp_path, ANTHROPIC_API_KEY="sk-ant-local-stub-123456")
    assert run.code == 0, run.stdout + run.stderr
    result = results(tmp_path / ".actsmith" / "batches" / "cached")["task0"]
    read = sum(usage.cache_read_input_tokens for usage in anthropic.usages)
    assert read > 0 and result["cache_read_tokens"] == read
    assert result["prompt_tokens"] > read and result["cache_write_tokens"] > 0
    report = (tmp_path / ".actsmith" / "batches" / "cached" / "report.md").read_text()
    assert f"cache: {read:,} read" in report
    assert f"cache: {read:,} read" in run.stdout
