"""Per-step cost of checkpointing and the edit ledger on a repository of about 1,000 real source files.

Each step edits a few files (a function body, a new file, sometimes a syntax error), then does what the
harness does after every action: checkpoint the working tree, diff it, parse the changed files, and
render the state block. `git status` on the same repository, in the same run, is the yardstick.

Usage: python bench/ledger_step.py [--files 1000] [--steps 60]
Ends with one line: step_p50_ms=X step_p95_ms=Y idle_step_p50_ms=Z git_status_p50_ms=W ratio=X/W
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


def edit(files: list[Path], step: int, root: Path) -> None:
    """A step's worth of edits: change two modules, add one, and every tenth step break one."""
    for path in (files[step * 7 % len(files)], files[step * 13 % len(files)]):
        path.write_text(path.read_text() + f"\n\ndef added_in_step_{step}():\n    return {step}\n")
    (root / f"new_module_{step}.py").write_text(f"def fresh_{step}(x):\n    return x * {step}\n")
    if step % 10 == 0:
        (root / f"new_module_{step}.py").write_text("def broken(:\n    pass\n")


def timed_step(ledger: Ledger, step: int) -> float:
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        root = Path(tmp)
        files = make_repository(root, args.files)
        ledger = Ledger(RunCheckpoints(root, root / ".git", "bench", "benchmark"))
        start = time.perf_counter()
        ledger.start()
        first_ms = (time.perf_counter() - start) * 1000
        busy, idle = [], []
        for step in range(1, args.steps + 1):
            edit(files, step, root)
            busy.append(timed_step(ledger, 2 * step - 1))
            idle.append(timed_step(ledger, 2 * step))  # an action that read but wrote nothing
        status_ms = git_status_ms(root, 20)
    p50, p95 = statistics.median(busy), statistics.quantiles(busy, n=20)[-1]
    idle_p50 = statistics.median(idle)
    print(f"repository: {len(files)} files; {args.steps} editing steps and {args.steps} idle steps")
    print(f"first checkpoint (before the run)  {first_ms:7.1f} ms")
    print(f"editing step  p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    print(f"idle step     p50 {idle_p50:6.1f} ms")
    print(f"git status    p50 {status_ms:6.1f} ms")
    print(
        f"step_p50_ms={p50:.1f} step_p95_ms={p95:.1f} idle_step_p50_ms={idle_p50:.1f} "
        f"git_status_p50_ms={status_ms:.1f} ratio={p50 / status_ms:.1f}"
    )


if __name__ == "__main__":
    main()
