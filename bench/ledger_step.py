"""Per-step cost of checkpointing and the edit ledger on a repository of about 1,000 real source files.

After each simulated action the script does what the harness does: checkpoint the working tree, diff
it, parse the changed files, and render the state block. Three kinds of step, measured in one run:
- focused: one file of a small working set is edited (what an agent mostly does: it returns to the
  files it is changing, so their previous versions are already parsed);
- spread: two files never touched before are edited and a new module is created (every tenth one
  does not parse), so every old and new version is parsed cold;
- idle: the action read but wrote nothing.
Timed: what stands between the end of an action and the next model call. The checkpoint commit that
a changing step writes in the background (it overlaps the model call) is awaited outside the timing.
`git status` on the same repository, in the same run, is the yardstick.

Usage: python bench/ledger_step.py [--files 1000] [--steps 60] [--quick]
Ends with one line: focused_p50_ms=.. spread_p50_ms=.. spread_p95_ms=.. idle_p50_ms=.. git_status_p50_ms=..
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

from _quick import parse_args

from agent_cli.checkpoints import RunCheckpoints
from agent_cli.ledger import Ledger
from agent_cli.templates import render


def make_repository(root: Path, count: int) -> list[Path]:
    """A git repository holding `count` modules of the standard library, committed."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)[:count]
    copied = []
    for source in sources:
        target = root / source.relative_to(stdlib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target)
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "stdlib sample"], check=True)
    return copied


def edit_focused(files: list[Path], step: int) -> None:
    """Change one function-sized piece of one file of a working set of three."""
    path = files[(step % 3) * 101]
    path.write_text(path.read_text() + f"\n\ndef helper_{step}(value):\n    return value + {step}\n")


def edit_spread(files: list[Path], step: int, root: Path) -> None:
    """Change two modules not touched before, add one, and every tenth step break it."""
    for path in (files[step * 7 % len(files) + 1], files[step * 13 % len(files) + 2]):
        path.write_text(path.read_text() + f"\n\ndef added_in_step_{step}():\n    return {step}\n")
    (root / f"new_module_{step}.py").write_text(f"def fresh_{step}(x):\n    return x * {step}\n")
    if step % 10 == 0:
        (root / f"new_module_{step}.py").write_text("def broken(:\n    pass\n")


def timed_step(ledger: Ledger, step: int) -> float:
    # In a run a model call separates two steps; the checkpoint commit a step leaves in the background
    # is written during it. Here it is awaited outside the timed part, as the model call would hide it.
    ledger.checkpoints.settle()
    start = time.perf_counter()
    ledger.record_step(step)
    render("state", ledger=ledger.view())
    return (time.perf_counter() - start) * 1000


def git_status_ms(root: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["git", "-C", str(root), "status", "--porcelain"], check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=60)
    args = parse_args(parser, {"files": 300, "steps": 5})
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        root = Path(tmp)
        files = make_repository(root, args.files)
        ledger = Ledger(RunCheckpoints(root, root / ".git" / "actsmith" / "bench", "bench", "benchmark"))
        start = time.perf_counter()
        ledger.start()
        first_ms = (time.perf_counter() - start) * 1000
        focused, spread, idle = [], [], []
        step = 0
        for round_ in range(1, args.steps + 1):
            edit_focused(files, round_)
            focused.append(timed_step(ledger, step := step + 1))
            edit_spread(files, round_, root)
            spread.append(timed_step(ledger, step := step + 1))
            idle.append(timed_step(ledger, step := step + 1))
        status_ms = git_status_ms(root, 20)
    figures = {
        "focused_p50_ms": statistics.median(focused),
        "spread_p50_ms": statistics.median(spread),
        "spread_p95_ms": statistics.quantiles(spread, n=20)[-1],
        "idle_p50_ms": statistics.median(idle),
        "git_status_p50_ms": status_ms,
    }
    print(f"repository: {len(files)} files; {step} steps; first checkpoint {first_ms:.1f} ms")
    print(f"focused step  p50 {figures['focused_p50_ms']:6.1f} ms  (one file of the working set edited)")
    print(f"spread step   p50 {figures['spread_p50_ms']:6.1f} ms   p95 {figures['spread_p95_ms']:6.1f} ms")
    print(f"idle step     p50 {figures['idle_p50_ms']:6.1f} ms")
    print(f"git status    p50 {status_ms:6.1f} ms")
    print(" ".join(f"{name}={value:.1f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
