"""Sandbox and harness latency, measured in one run on this machine.

- action round trip: `print(1)` sent to the persistent kernel over the attached stdio (median of N);
- docker exec: the same action done the way per-action-exec agents do it, `python3 -c 'print(1)'`
  through the Engine API's exec (create + start + inspect), in a container of the same image;
  `true` through exec is printed too, as the floor of any exec-based design;
- cold start: container create to a kernel that answered its ready message (median of a few);
- restart: `Sandbox.restart()`, a fresh interpreter in the running container (median of a few);
- harness step: `runner.run_task` on a git repository of ~1,000 files with a replay model of N trivial
  actions (`print(n)`, each a different one: the same action with the same result three times in a
  row is a loop that stuck detection stops); the time of each step (model call, parse, action, observation, ledger, trajectory) with the
  model's own latency subtracted (a replay model answers instantly anyway);
- run start: `run_task` called to its first model call (Docker, image check, snapshot, sandbox start),
  and the same with the sandbox started beforehand: the best case of a warm pool of containers.

Targets (printed, met or not): an action round trip under 5 ms, a harness step under 30 ms, a cold
start under 1 s. Ends with one line: action_p50_ms=X docker_exec_p50_ms=Y cold_start_s=Z restart_p50_ms=R step_p50_ms=S

Usage: python bench/sandbox_latency.py [--actions 300] [--execs 40] [--starts 7] [--steps 50] [--files 1000]
       [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from _quick import parse_args

from agent_cli.sandbox import SandboxLimits
from agent_cli.sandbox.docker_sandbox import DockerSandbox
from agent_cli.sandbox.identity import docker_client
from agent_cli.sandbox.image import ensure_image
from agent_cli.settings import Settings

LIMITS = SandboxLimits.from_settings(Settings())

QUICK = {"actions": 30, "execs": 5, "starts": 2, "restarts": 3, "steps": 10, "runs": 1, "files": 100}


def trivial_action(n: int) -> str:
    return f"Print {n}.\n<execute>\nprint({n})\n</execute>"


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def action_round_trips(sandbox: DockerSandbox, n: int) -> list[float]:
    for _ in range(20):  # warm-up
        sandbox.run("print(1)", 10)
    return [timed_ms(lambda: sandbox.run("print(1)", 10)) for _ in range(n)]


def restarts(sandbox: DockerSandbox, n: int) -> list[float]:
    sandbox.restart()  # warm-up
    return [timed_ms(sandbox.restart) for _ in range(n)]


def exec_round_trips(client, image: str, cmd: list[str], n: int) -> list[float]:
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, network_mode="none", labels={"actsmith.bench": "1"}
    )
    try:
        for _ in range(3):
            container.exec_run(cmd)
        return [timed_ms(lambda: container.exec_run(cmd)) for _ in range(n)]
    finally:
        container.remove(force=True)


def cold_starts(client, image: str, repo: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        sandbox = DockerSandbox(client, image, repo, LIMITS)
        start = time.perf_counter()
        sandbox.start()
        times.append(time.perf_counter() - start)
        sandbox.close()
    return times


# ------------------------------------------------------------------------------------ whole harness


def make_repository(root: Path, files: int) -> Path:
    """A git repository of `files` small Python modules spread over 25 packages, committed."""
    for i in range(files):
        path = root / f"pkg{i % 25}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""Module {i}."""\n\n\ndef f{i}(x):\n    return x + {i}\n')
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(root), *args], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        + ["commit", "-q", "-m", "initial"],
        check=True,
    )
    return root


@dataclasses.dataclass
class StepClock:
    """An event sink that timestamps the start of every model call."""

    started: list[float] = dataclasses.field(default_factory=list)

    def emit(self, event) -> None:
        from agent_cli.events import StepStarted

        if isinstance(event, StepStarted):
            self.started.append(time.perf_counter())


@dataclasses.dataclass
class HarnessRun:
    step_ms: list[float]  # per step, model latency excluded
    start_s: float  # the session opened -> first model call


class WarmSandbox(DockerSandbox):
    """A sandbox started before the run, as a warm pool would hand it out: its start() is free."""

    def start(self) -> None:
        if self.container is None:
            super().start()


def harness_run(repo: Path, work: Path, steps: int, *, warm: bool = False) -> HarnessRun:
    """One replayed run of `steps` trivial actions; with `warm`, its sandbox is started beforehand."""
    from agent_cli.events import EventStream
    from agent_cli.sandbox import SandboxLimits
    from agent_cli.session import Session
    from agent_cli.settings import Settings
    from agent_cli.trajectory import read_trajectory
    from agent_cli.workspace import Workspace

    replay = work / "replay.yaml"
    replay.write_text(
        yaml.safe_dump([trivial_action(n) for n in range(steps)] + ["<execute>finish('done')</execute>"])
    )
    trajectory = work / f"trajectory-{time.monotonic_ns()}.jsonl"
    settings = Settings(model=f"replay:{replay}", max_steps=steps + 5, trajectory=trajectory)
    factory = None
    if warm:
        client = docker_client()
        box = WarmSandbox(client, ensure_image(client), repo, SandboxLimits.from_settings(settings))
        box.start()
        factory = lambda request: box  # noqa: E731
    clock = StepClock()
    called = time.perf_counter()
    session = Session(
        settings,
        Workspace.open(repo),
        label="print numbers",
        events=EventStream([clock]),
        sandbox_factory=factory,
    )
    with session:
        result = session.run("print numbers")
    assert result.exit_code == 0, result.message
    latency = [e["latency_s"] for e in read_trajectory(trajectory) if e["event"] == "model_call"]
    # Step n runs from model call n to model call n + 1; the final finish() step is left out.
    step_ms = [
        (later - earlier - latency[i]) * 1000
        for i, (earlier, later) in enumerate(zip(clock.started, clock.started[1:], strict=False))
    ]
    return HarnessRun(step_ms, clock.started[0] - called)


@dataclasses.dataclass
class HarnessFigures:
    step_ms: list[float]
    start_s: list[float]  # run start as it is
    warm_start_s: list[float]  # run start with the sandbox started beforehand: a warm pool's best case


def harness_figures(steps: int, files: int, runs: int, starts: int) -> HarnessFigures:
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-harness-") as tmp:
        repo = make_repository(Path(tmp) / "repo", files)
        work = Path(tmp) / "work"
        work.mkdir()
        step_ms = [ms for _ in range(runs) for ms in harness_run(repo, work, steps).step_ms]
        start_s, warm_start_s = [], []
        for _ in range(starts):  # interleaved, so drift on the machine hits both alike
            start_s.append(harness_run(repo, work, 1).start_s)
            warm_start_s.append(harness_run(repo, work, 1, warm=True).start_s)
        return HarnessFigures(step_ms, start_s, warm_start_s)


# ------------------------------------------------------------------------------------------- report


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


TARGETS = (("action round trip", 5.0, "ms"), ("harness step", 30.0, "ms"), ("cold start", 1.0, "s"))


def targets_line(action_ms: float, step_ms: float, cold_start_s: float) -> str:
    parts = [
        f"{name} < {limit:g} {unit}: {'met' if value < limit else 'MISSED'}"
        for (name, limit, unit), value in zip(TARGETS, (action_ms, step_ms, cold_start_s), strict=True)
    ]
    return "targets: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--actions", type=int, default=300)
    parser.add_argument("--execs", type=int, default=40)
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--restarts", type=int, default=15)
    parser.add_argument("--steps", type=int, default=50, help="trivial actions per replayed run")
    parser.add_argument("--runs", type=int, default=3, help="replayed runs")
    parser.add_argument("--files", type=int, default=1000, help="files in the replayed run's repository")
    args = parse_args(parser, QUICK)

    client = docker_client()
    image = ensure_image(client)
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        repo = Path(tmp)
        starts = cold_starts(client, image, repo, args.starts)
        with DockerSandbox(client, image, repo, LIMITS) as sandbox:
            actions = action_round_trips(sandbox, args.actions)
            restart_ms = restarts(sandbox, args.restarts)
    execs = exec_round_trips(client, image, ["python3", "-c", "print(1)"], args.execs)
    exec_true = exec_round_trips(client, image, ["true"], args.execs)
    harness = harness_figures(args.steps, args.files, args.runs, args.starts)
    steps = harness.step_ms

    print(f"image                      {image}")
    print(
        f"action round trip          p50 {p50(actions):8.2f} ms   p90 {p90(actions):8.2f} ms   (n={len(actions)})"
    )
    print(f"docker exec python3 -c     p50 {p50(execs):8.2f} ms   (n={len(execs)})")
    print(f"docker exec true           p50 {p50(exec_true):8.2f} ms   (n={len(exec_true)})")
    print(
        f"cold start to ready kernel p50 {p50(starts):8.3f} s    min {min(starts):.3f} s   (n={len(starts)})"
    )
    print(
        f"interpreter restart        p50 {p50(restart_ms):8.2f} ms   max {max(restart_ms):.2f} ms   (n={len(restart_ms)})"
    )
    print(
        f"harness step, {args.files} files  p50 {p50(steps):8.2f} ms   p90 {p90(steps):8.2f} ms   "
        f"(n={len(steps)}, model time excluded)"
    )
    print(f"run start to 1st model call p50 {p50(harness.start_s):7.3f} s    (n={len(harness.start_s)})")
    print(
        f"  same, sandbox pre-started p50 {p50(harness.warm_start_s):7.3f} s    "
        f"(the most a warm pool could give; n={len(harness.warm_start_s)})"
    )
    print(
        f"ratio exec/action          {p50(execs) / p50(actions):8.1f}x   (exec true/action {p50(exec_true) / p50(actions):.1f}x)"
    )
    print(targets_line(p50(actions), p50(steps), p50(starts)))
    print(
        f"action_p50_ms={p50(actions):.2f} docker_exec_p50_ms={p50(execs):.2f} cold_start_s={p50(starts):.3f} "
        f"restart_p50_ms={p50(restart_ms):.2f} step_p50_ms={p50(steps):.2f}"
    )


if __name__ == "__main__":
    main()
