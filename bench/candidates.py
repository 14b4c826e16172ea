"""Candidates overlap: `actsmith run --candidates 3` against a plain `actsmith run` of the same task,
the model replies arriving after a fixed delay (the local OpenAI-compatible server of
tests/openai_stub.py holds each request, standing in for model latency).

Each attempt takes three steps (two files written, then finish()), so three model calls; the three
candidates run at once, each in its own worktree and sandbox, so their model time overlaps. Runs
alternate (one, three, one, three...) so a busy moment of the machine falls on both. Printed: the
median wall time of each, from the command's start to its exit and as the run measured itself (its
`end` event's wall_s), and the ratio of three to one.

Usage: python bench/candidates.py [--rounds 3] [--delay 1.0] [--quick]
Ends with one line: one_s=A three_s=B ratio=R run_ratio=Q
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import Reply, StubServer

THREE_STEPS = (
    "<execute>\nimport os\nn = len([f for f in os.listdir('.') if f.startswith('step-')])\n"
    "if n >= 2:\n    finish('three steps')\nelse:\n    open(f'step-{n}', 'w').write('x')\n</execute>"
)


def make_repository(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "app.py").write_text("def greet():\n    return 'hi'\n")
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "initial"]):
        subprocess.run(["git", "-C", str(root), *args], check=True)


def run_once(folder: Path, server: StubServer, name: str, candidates: int) -> tuple[float, float]:
    """(command wall seconds, the run's own wall_s) of one `actsmith run` in a fresh repository."""
    repo = folder / name
    make_repository(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTSMITH_")}
    env |= {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.invalid"}
    command = [sys.executable, "-m", "agent_cli", "run", "write two files", "--json"]
    command += ["--model", "openai/bench-model", "--api-base", server.api_base]
    command += ["--no-tests", "--no-setup", "--map-tokens", "0"]
    if candidates > 1:
        command += ["--candidates", str(candidates)]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ends = [e for e in events if e["event"] == "end" and "candidate" not in e]
    if proc.returncode != 0 or not ends or ends[0]["status"] != "finished":
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    if candidates > 1 and len(ends[0]["candidates"]) != candidates:
        raise SystemExit(f"{name}: expected {candidates} candidates in the end event")
    return wall, ends[0]["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (one and three)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each model reply takes")
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    server = StubServer(reply_delay=args.delay, fallback=Reply(THREE_STEPS)).start()
    print(f"3 model calls of {args.delay:g} s per attempt, {rounds} round(s), on {os.cpu_count()} cores")
    walls: dict[int, list[float]] = {1: [], 3: []}
    runs: dict[int, list[float]] = {1: [], 3: []}
    try:
        with tempfile.TemporaryDirectory(prefix="actsmith-bench-candidates-") as tmp:
            for number in range(rounds):
                for candidates in (1, 3):
                    wall, own = run_once(Path(tmp), server, f"r{number}-c{candidates}", candidates)
                    walls[candidates].append(wall)
                    runs[candidates].append(own)
                    print(
                        f"round {number + 1}: {candidates} candidate(s): command {wall:5.1f} s, run {own:5.1f} s"
                    )
    finally:
        server.stop()
    one, three = statistics.median(walls[1]), statistics.median(walls[3])
    run_one, run_three = statistics.median(runs[1]), statistics.median(runs[3])
    print(
        f"median: one {one:.1f} s, three {three:.1f} s ({three / one:.2f}x) for the command; "
        f"the runs alone {run_one:.1f} s and {run_three:.1f} s ({run_three / run_one:.2f}x)"
    )
    print(f"one_s={one:.1f} three_s={three:.1f} ratio={three / one:.2f} run_ratio={run_three / run_one:.2f}")


if __name__ == "__main__":
    main()
