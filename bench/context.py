"""Prompt size per step, with and without condensation, in one run.

A scripted model takes 150 steps, each printing 3,000 characters (the shape of a long debugging
session), in a local sandbox (the same kernel as Docker's, as a subprocess: the prompt's size does not
depend on where actions run). Once with no budget, once with `max_context_tokens` 8,000 and a scripted
summary model. Prints the estimated prompt tokens (4 characters each) every 10 steps, then the peaks.

Usage: python bench/context.py [--steps 150] [--budget 8000] [--quick]
Ends with one line: peak_without=X peak_with=Y condensations=Z budget=B
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from _quick import parse_args

from agent_cli.agent import Agent, AgentConfig
from agent_cli.context import messages_tokens
from agent_cli.events import Collector, Condensed, EventStream
from agent_cli.model import ModelReply, Usage
from agent_cli.sandbox import SandboxLimits
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.settings import Settings

STEP = "Printing the next chunk of the log.\n<execute>\nprint('{n}' * 3000)\n</execute>"


class Scripted:
    def __init__(self, name: str, replies: list[str]):
        self.name, self.replies, self.sizes = name, replies, []

    def complete(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        self.sizes.append(messages_tokens(messages))
        return ModelReply(self.replies.pop(0), Usage(), self.name, 0.0)


def run(steps: int, budget: int | None) -> tuple[list[int], int]:
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-context-") as tmp:
        repo = Path(tmp)
        subprocess.run(["git", "-C", tmp, "init", "-q"], check=True)
        coder = Scripted("coder", [STEP.format(n=n % 10) for n in range(steps)])
        summaries = Scripted(
            "summaries", [f"Summary {n}: the agent printed log chunks." for n in range(steps)]
        )
        collector = Collector()
        sandbox = LocalSandbox(repo, SandboxLimits.from_settings(Settings()))
        sandbox.start()
        try:
            config = AgentConfig.from_settings(Settings(max_steps=steps), max_context_tokens=budget)
            Agent(coder, sandbox, EventStream([collector]), config, summary_model=summaries).run(
                "read the log"
            )
        finally:
            sandbox.close()
        return coder.sizes, len(collector.of(Condensed))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--budget", type=int, default=8000)
    args = parse_args(parser, {"steps": 40})
    without, _ = run(args.steps, None)
    with_budget, condensations = run(args.steps, args.budget)
    print(f"{'step':>5} {'no budget':>12} {f'budget {args.budget:,}':>16}   (estimated prompt tokens)")
    for step in range(0, args.steps, 10):
        print(f"{step + 1:>5} {without[step]:>12,} {with_budget[step]:>16,}")
    print(f"{'peak':>5} {max(without):>12,} {max(with_budget):>16,}   ({condensations} condensations)")
    print(
        f"peak_without={max(without)} peak_with={max(with_budget)} condensations={condensations} budget={args.budget}"
    )


if __name__ == "__main__":
    main()
