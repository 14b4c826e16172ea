"""Sandbox latency, measured in one run on this machine.

- action round trip: `print(1)` sent to the persistent kernel over the attached stdio (median of N);
- docker exec: the same action done the way per-action-exec agents do it, `python3 -c 'print(1)'`
  through the Engine API's exec (create + start + inspect), in a container of the same image;
  `true` through exec is printed too, as the floor of any exec-based design;
- cold start: container create to a kernel that answered its ready message (median of a few).

Ends with one line: action_p50_ms=X docker_exec_p50_ms=Y cold_start_s=Z

Usage: python bench/sandbox_latency.py [--actions 300] [--execs 40] [--starts 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent_cli.sandbox.docker_sandbox import DockerSandbox, docker_client
from agent_cli.sandbox.image import ensure_image


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def action_round_trips(sandbox: DockerSandbox, n: int) -> list[float]:
    for _ in range(20):  # warm-up
        sandbox.run("print(1)", 10)
    times = []
    for _ in range(n):
        times.append(timed_ms(lambda: sandbox.run("print(1)", 10)))
    return times


def exec_round_trips(client, image: str, cmd: list[str], n: int) -> list[float]:
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, network_mode="none", labels={"actsmith.bench": "1"}
    )
    try:
        for _ in range(3):
            container.exec_run(cmd)
        times = []
        for _ in range(n):
            times.append(timed_ms(lambda: container.exec_run(cmd)))
        return times
    finally:
        container.remove(force=True)


def cold_starts(client, image: str, repo: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        sandbox = DockerSandbox(client, image, repo)
        start = time.perf_counter()
        sandbox.start()
        times.append(time.perf_counter() - start)
        sandbox.close()
    return times


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--actions", type=int, default=300)
    parser.add_argument("--execs", type=int, default=40)
    parser.add_argument("--starts", type=int, default=7)
    args = parser.parse_args()

    client = docker_client()
    image = ensure_image(client)
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        repo = Path(tmp)
        starts = cold_starts(client, image, repo, args.starts)
        with DockerSandbox(client, image, repo) as sandbox:
            actions = action_round_trips(sandbox, args.actions)
    execs = exec_round_trips(client, image, ["python3", "-c", "print(1)"], args.execs)
    exec_true = exec_round_trips(client, image, ["true"], args.execs)

    print(f"image                      {image}")
    print(
        f"action round trip          p50 {p50(actions):8.2f} ms   p90 {sorted(actions)[int(len(actions) * 0.9)]:8.2f} ms   (n={len(actions)})"
    )
    print(f"docker exec python3 -c     p50 {p50(execs):8.2f} ms   (n={len(execs)})")
    print(f"docker exec true           p50 {p50(exec_true):8.2f} ms   (n={len(exec_true)})")
    print(
        f"cold start to ready kernel p50 {p50(starts):8.3f} s    min {min(starts):.3f} s   (n={len(starts)})"
    )
    print(
        f"ratio exec/action          {p50(execs) / p50(actions):8.1f}x   (exec true/action {p50(exec_true) / p50(actions):.1f}x)"
    )
    print(
        f"action_p50_ms={p50(actions):.2f} docker_exec_p50_ms={p50(execs):.2f} cold_start_s={p50(starts):.3f}"
    )


if __name__ == "__main__":
    main()
