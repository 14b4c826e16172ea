"""Start-up time of `actsmith --help` against a bare `python -c pass`, measured in one run.

Usage: python bench/cli_startup.py [--runs 15] [--quick]
Ends with one line: help_p50_s=X python_p50_s=Y ratio=Z
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _quick import parse_args


def p50_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parse_args(parser, {"runs": 3})
    help_s = p50_seconds([sys.executable, "-m", "agent_cli", "--help"], args.runs)
    bare_s = p50_seconds([sys.executable, "-c", "pass"], args.runs)
    print(f"actsmith --help  p50 {help_s:.3f} s")
    print(f"python -c pass   p50 {bare_s:.3f} s")
    print(f"help_p50_s={help_s:.3f} python_p50_s={bare_s:.3f} ratio={help_s / bare_s:.1f}")


if __name__ == "__main__":
    main()
