"""Prompt caching over a 40-step conversation: the share of input tokens read from the cache, and the
billed input cost with caching and without.

The agent loop runs with the real model layer (litellm, `anthropic/claude-sonnet-4-5`) against the
local stand-in of Anthropic's Messages API (tests/anthropic_stub.py), which bills the prompt as
Anthropic does: what an earlier request marked and this one repeats is read from the cache, what this
one newly marks is written to it. Actions run in a local sandbox (the Docker sandbox's kernel as a
subprocess: where they run does not change the prompt). The same scripted replies are replayed twice,
with `prompt_caching` on and off; the costs are litellm's, from its bundled price map. Without
`--quick`, a third run gives the conversation a context budget small enough to be condensed, to show
what condensation costs the cache.

Usage: python bench/caching.py [--quick] [--steps 40] [--budget 12000]
Ends with one line: cached_share=X input_cost_cached=Y input_cost_uncached=Z saving=R
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from anthropic_stub import AnthropicStub

from agent_cli.agent import Agent, AgentConfig
from agent_cli.events import Collector, Condensed, EventStream
from agent_cli.model import LiteLLMModel, ModelReply, Usage, import_litellm
from agent_cli.sandbox import SandboxLimits
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.settings import Settings

MODEL = "anthropic/claude-sonnet-4-5"
# A step of a debugging session: a short thought and an action printing about 1,500 characters.
STEP = (
    "Reading part {n} of the service log to find where the totals drift.\n<execute>\n"
    "for i in range(50):\n    print(f'part {n} line {{i:02}}: total={{i * {n} + 7}} ok')\n</execute>"
)
FINISH = "<execute>finish('the drift starts in part 3')</execute>"


@dataclass
class Outcome:
    usage: Usage
    condensations: int

    @property
    def uncached_input_tokens(self) -> int:
        return self.usage.prompt_tokens - self.usage.cache_read_tokens - self.usage.cache_write_tokens


def replies(steps: int) -> list[str]:
    return [STEP.format(n=n) for n in range(1, steps)] + [FINISH]


def run(steps: int, caching: bool, budget: int | None) -> Outcome:
    stub = AnthropicStub().start()
    stub.script(*replies(steps))
    try:
        with tempfile.TemporaryDirectory(prefix="actsmith-bench-caching-") as tmp:
            subprocess.run(["git", "-C", tmp, "init", "-q"], check=True)
            model = LiteLLMModel(MODEL, api_base=stub.api_base, api_key="bench-key", prompt_caching=caching)
            collector = Collector()
            sandbox = LocalSandbox(Path(tmp), SandboxLimits.from_settings(Settings()))
            sandbox.start()
            try:
                settings = Settings(max_steps=steps, max_cost=100.0)
                config = AgentConfig.from_settings(settings, max_context_tokens=budget)
                agent = Agent(model, sandbox, EventStream([collector]), config, summary_model=Summaries())
                result = agent.run("find where the totals in the service log drift")
            finally:
                sandbox.close()
    finally:
        stub.stop()
    if result.status != "finished":
        raise SystemExit(f"the conversation did not finish: {result.status}: {result.message}")
    return Outcome(agent.usage, len(collector.of(Condensed)))


class Summaries:
    """The condenser's model: a fixed summary, so each run replays the same conversation."""

    name = "summaries"

    def complete(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        return ModelReply("The agent read the log parts so far; no drift yet.", Usage(), self.name, 0.0)


def input_cost(outcome: Outcome, prices: dict) -> float:
    """USD billed for the input: uncached tokens at the input price, cache reads and writes at theirs."""
    usage = outcome.usage
    return (
        outcome.uncached_input_tokens * prices["input_cost_per_token"]
        + usage.cache_read_tokens * prices["cache_read_input_token_cost"]
        + usage.cache_write_tokens * prices["cache_creation_input_token_cost"]
    )


def show(label: str, outcome: Outcome, prices: dict) -> float:
    usage = outcome.usage
    billed = input_cost(outcome, prices)
    output = usage.completion_tokens * prices["output_cost_per_token"]
    assert usage.cost is not None and abs(usage.cost - billed - output) < 1e-9, "litellm billed otherwise"
    print(
        f"{label:<28} {usage.prompt_tokens:>9,} {usage.cache_read_tokens:>9,} {usage.cache_write_tokens:>9,} "
        f"{usage.cached_share:>7.1%} {outcome.condensations:>6} ${billed:>8.4f} ${usage.cost:>8.4f}"
    )
    return billed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the condensed run")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--budget", type=int, default=12_000, help="the condensed run's max_context_tokens")
    args = parser.parse_args()
    prices = import_litellm().get_model_info(MODEL)
    print(f"{args.steps} steps of {MODEL} against the local Messages API stand-in")
    print(
        f"{'':<28} {'input':>9} {'read':>9} {'written':>9} {'cached':>7} {'cond.':>6} {'input $':>9} {'total $':>9}"
    )
    cached = run(args.steps, caching=True, budget=None)
    plain = run(args.steps, caching=False, budget=None)
    with_cache = show("prompt_caching = true", cached, prices)
    without = show("prompt_caching = false", plain, prices)
    if not args.quick:
        show(f"true, budget {args.budget:,} tokens", run(args.steps, True, args.budget), prices)
    print(
        f"cached_share={cached.usage.cached_share:.3f} input_cost_cached={with_cache:.4f} "
        f"input_cost_uncached={without:.4f} saving={1 - with_cache / without:.3f}"
    )


if __name__ == "__main__":
    main()
