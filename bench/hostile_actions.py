"""How long the sandbox takes to contain each hostile action, and whether the interpreter (and its
variables) survived: the timings the adversarial tests used to assert, measured here instead.

Each attack runs in a fresh container's interpreter after setting a variable; the action timeout is
1 s (2 s for the fork bomb). Printed per attack: the median wall time from sending the action to its
observation, and how many of the runs kept the variables.

Usage: python bench/hostile_actions.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _quick import parse_args

from agent_cli.sandbox import SandboxLimits
from agent_cli.sandbox.docker_sandbox import DockerSandbox
from agent_cli.sandbox.identity import docker_client
from agent_cli.sandbox.image import ensure_image
from agent_cli.settings import Settings

LIMITS = SandboxLimits.from_settings(Settings(memory="256m", cpus=1.0, pids=128, max_output_chars=2000))
ATTACKS = {
    "endless loop (timeout 1 s)": ("while True:\n    pass", 1),
    "time.sleep(60) (timeout 1 s)": ("import time\ntime.sleep(60)", 1),
    "blocks SIGINT (timeout 1 s)": (
        "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])\ntime.sleep(60)",
        1,
    ),
    "fork bomb (timeout 2 s)": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass",
        2,
    ),
    "memory bomb": ("hoard = []\nwhile True:\n    hoard.append(' ' * 10_000_000)", 20),
    "os._exit(3)": ("import os\nos._exit(3)", 10),
    "20 MB print": ("print('x' * 20_000_000, end='')\nprint('END')", 10),
    "read stdin": ("import sys\nsys.stdin.read()", 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parse_args(parser, {"runs": 1})
    client = docker_client()
    image = ensure_image(client)
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-hostile-") as tmp:
        print(f"{'attack':<30} {'contained in (p50)':>20} {'variables kept':>16}")
        for name, (code, timeout) in ATTACKS.items():
            seconds, kept = [], 0
            with DockerSandbox(client, image, Path(tmp), LIMITS) as box:
                for _ in range(args.runs):
                    box.run("canary = 1", 10)
                    started = time.perf_counter()
                    box.run(code, timeout)
                    seconds.append(time.perf_counter() - started)
                    kept += box.run("'canary' in globals()", 10).value == "True"
            print(f"{name:<30} {statistics.median(seconds):>18.2f} s {kept:>10}/{args.runs}")


if __name__ == "__main__":
    main()
