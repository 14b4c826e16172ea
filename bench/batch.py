"""Batch throughput: 16 tasks whose model replies arrive after a fixed delay (the local
OpenAI-compatible server of tests/openai_stub.py holds each request, standing in for model latency),
run with `actsmith batch run` at -j 1, -j 2 and -j 4, then with the Ray backend (a local Ray that
actsmith starts and stops) at -j 4, all in one run. The Ray part is skipped, with one line saying so,
when Ray (the `ray` extra) is not installed.

Each task takes three steps (two files written, then finish()), so three model calls. Printed: the
batch's wall time (from its start to its end) and its speed-up over -j 1, the same for the whole
command (which first spends seconds importing litellm to check the model); for Ray, the time from each task's start to its
end against the local backend's at the same -j (the per-task overhead of shipping the repository as
a bundle, the worker's clone and the result's return), and the Ray start-up apart.

Usage: python bench/batch.py [--tasks 16] [--delay 1.0] [--jobs 1,2,4] [--ray-jobs 4] [--no-ray] [--quick]
(--quick: 2 tasks, replies held 0.2 s, -j 1 and 2, Ray at -j 1 so that one worker imports litellm)
Ends with one line: j1_s=A j2_s=B j4_s=C speedup_j2=X speedup_j4=Y command_speedup_j2=W
[ray_overhead_per_task_s=Z ray_overhead_median_s=M] (a jN_s and a speedup_jN for each value of --jobs)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _quick import parse_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import Reply, StubServer

QUICK = {"tasks": 2, "delay": 0.2, "jobs": [1, 2], "ray_jobs": 1}
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


def run_batch(
    folder: Path, server: StubServer, name: str, tasks: int, extra: list[str]
) -> tuple[float, list[dict]]:
    """Wall seconds of one `actsmith batch run`, and its events (with the command's start as "spawned")."""
    spec = folder / f"{name}.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "model": "openai/bench-model",
                "api_base": server.api_base,
                "tests": False,
                "map_tokens": 0,
                "tasks": [
                    {"id": f"t{n:02}", "repo": f"repo{n:02}", "task": "write two files"} for n in range(tasks)
                ],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTSMITH_")}
    command = [sys.executable, "-m", "agent_cli", "batch", "run", str(spec), "--json", *extra]
    spawned, started = time.time(), time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    events = [{"event": "spawned", "time": spawned}]
    events += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ended = [e for e in events if e["event"] == "batch_end"]
    if proc.returncode != 0 or not ended or ended[0]["counts"] != {"succeeded": tasks}:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return wall, events


def batch_seconds(events: list[dict]) -> float:
    """The batch's own wall time, from its start to its end (the command's start-up apart)."""
    times = {e["event"]: e["time"] for e in events}
    return times["batch_end"] - times["batch_start"]


def task_seconds(events: list[dict]) -> list[float]:
    """Each task's time from its start to its end, as the driver saw them."""
    starts = {e["id"]: e["time"] for e in events if e["event"] == "task_start"}
    return [e["time"] - starts[e["result"]["id"]] for e in events if e["event"] == "task_end"]


def _start_up(events: list[dict]) -> float:
    """Seconds from spawning the command to the batch starting (imports, and Ray's start-up)."""
    times = {e["event"]: e["time"] for e in reversed(events)}
    return times["batch_start"] - times["spawned"]


def job_levels(text: str) -> list[int]:
    levels = sorted({int(n) for n in text.split(",")})
    if not {1, 2} <= set(levels):
        raise argparse.ArgumentTypeError("--jobs must include 1 and 2 (the speed-ups are against -j 1)")
    return levels


def figures_line(batches: dict[int, float], walls: dict[int, float]) -> str:
    parts = [f"j{jobs}_s={seconds:.1f}" for jobs, seconds in batches.items()]
    parts += [f"speedup_j{jobs}={batches[1] / seconds:.2f}" for jobs, seconds in batches.items() if jobs > 1]
    return " ".join([*parts, f"command_speedup_j2={walls[1] / walls[2]:.2f}"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each model reply takes")
    parser.add_argument("--jobs", type=job_levels, default=[1, 2, 4], help="the -j values of the local runs")
    parser.add_argument("--ray-jobs", type=int, default=4, help="-j of the Ray run (one of --jobs)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray backend")
    args = parse_args(parser, QUICK)
    if args.ray_jobs not in args.jobs:
        parser.error("--ray-jobs must be one of --jobs: the Ray run is compared with the local one")
    ray_missing = importlib.util.find_spec("ray") is None
    server = StubServer(reply_delay=args.delay, fallback=Reply(THREE_STEPS)).start()
    print(f"{args.tasks} tasks x 3 model calls of {args.delay:g} s each, on {os.cpu_count()} cores")
    try:
        with tempfile.TemporaryDirectory(prefix="actsmith-bench-batch-") as tmp:
            folder = Path(tmp)
            for n in range(args.tasks):
                make_repository(folder / f"repo{n:02}")
            walls, batches, per_task, medians, start_up = {}, {}, {}, {}, 0.0
            for jobs in args.jobs:
                walls[jobs], events = run_batch(folder, server, f"j{jobs}", args.tasks, ["-j", str(jobs)])
                batches[jobs] = batch_seconds(events)
                start_up = _start_up(events)
                per_task[jobs] = statistics.mean(task_seconds(events))
                medians[jobs] = statistics.median(task_seconds(events))
                print(
                    f"local -j {jobs}: batch {batches[jobs]:5.1f} s ({batches[1] / batches[jobs]:4.2f}x), "
                    f"command {walls[jobs]:5.1f} s ({walls[1] / walls[jobs]:4.2f}x, {start_up:.1f} s of it "
                    f"before the batch starts), {per_task[jobs]:5.2f} s per task"
                )
            summary = figures_line(batches, walls)
            if not args.no_ray and ray_missing:
                print("ray: skipped, Ray is not installed (pip install 'actsmith[ray]')")
            elif not args.no_ray:
                jobs = args.ray_jobs
                ray_wall, events = run_batch(
                    folder, server, f"ray{jobs}", args.tasks, ["-j", str(jobs), "--backend", "ray"]
                )
                ray_times = task_seconds(events)
                overhead = statistics.mean(ray_times) - per_task[jobs]
                steady = statistics.median(ray_times) - medians[jobs]
                print(
                    f"ray   -j {jobs}: command {ray_wall:5.1f} s, {_start_up(events):.1f} s of it before the batch "
                    f"starts (Ray's start-up); per task {overhead:+.2f} s against local -j {jobs} on average, "
                    f"{steady:+.2f} s by the median (the first tasks wait while each new worker imports "
                    f"litellm once)"
                )
                summary += f" ray_overhead_per_task_s={overhead:.2f} ray_overhead_median_s={steady:.2f}"
    finally:
        server.stop()
    print(summary)


if __name__ == "__main__":
    main()
