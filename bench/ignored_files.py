"""The cost of following ignored files through a run: once at its start, once at its end.

A repository of about 1,000 standard-library modules, committed, with a `build/` folder (ignored) of
a few thousand more files: what a run in place pays to snapshot the ignored files when step 0 is
recorded (list them, stat them, save the content of those within the budget in one fast-import), and
to compare them when it ends (list, stat, hash what changed, record). The steps in between cost
nothing more: they never look at ignored files. The snapshot reads the content before it returns
(before any action can run); git writes it in the background meanwhile, timed apart. Each figure is
the median of several runs; the first snapshot writes the content into a new pack, later ones find
every blob already stored.
`git status` on the same repository, in the same run, is the yardstick.

Usage: python bench/ignored_files.py [--quick] [--files 1000] [--ignored 3000] [--runs 7]
Ends with one line: snapshot_first_ms=.. write_first_ms=.. snapshot_p50_ms=.. write_p50_ms=..
finish_p50_ms=.. git_status_p50_ms=..
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

from _quick import parse_args
from ledger_step import git_status_ms, make_repository

from agent_cli.ignored import MAX_SAVED_BYTES, MAX_SAVED_FILE, IgnoredFiles, _within_budget


def make_ignored(root: Path, count: int) -> int:
    """`count` ignored files under build/ (standard-library sources and their bytecode, as a build
    would leave them); returns their total size."""
    (root / ".gitignore").write_text("build/\n")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py*") if "site-packages" not in p.parts and p.is_file())
    total = 0
    for source in sources[-count:]:
        target = root / "build" / source.relative_to(stdlib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        total += target.stat().st_size
    return total


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return (time.perf_counter() - start) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--ignored", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    args = parse_args(parser, {"files": 200, "ignored": 300, "runs": 2})
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        root = Path(tmp)
        make_repository(root, args.files)
        size = make_ignored(root, args.ignored)
        snapshots, writes, finishes = [], [], []
        for number in range(args.runs):
            took, ignored = timed(lambda number=number: IgnoredFiles.snapshot(root, f"bench-{number}"))
            snapshots.append(took)
            writes.append(timed(ignored.saved)[0])
            generated = root / "build" / f"generated-{number}.txt"
            generated.write_text("made by the run\n")
            changed = next(iter(sorted((root / "build").rglob("*.py"))))
            changed.write_text(changed.read_text() + "# changed\n")
            took, changes = timed(ignored.finish)
            finishes.append(took)
            assert len(changes) == 2, changes
        status_ms = git_status_ms(root, 20)
        saved = _within_budget(ignored.before)
    figures = {
        "snapshot_first_ms": snapshots[0],
        "write_first_ms": writes[0],
        "snapshot_p50_ms": statistics.median(snapshots[1:]),
        "write_p50_ms": statistics.median(writes[1:]),
        "finish_p50_ms": statistics.median(finishes),
        "git_status_p50_ms": status_ms,
    }
    print(
        f"repository: {args.files} tracked files; {len(ignored.before)} ignored files, {size / 1e6:.1f} MB; "
        f"{len(saved)} saved (budget {MAX_SAVED_FILE >> 20} MB each, {MAX_SAVED_BYTES >> 20} MB in all)"
    )
    print(
        f"snapshot at the start  first {snapshots[0]:6.1f} ms   then p50 {figures['snapshot_p50_ms']:6.1f} ms"
    )
    print(f"written in background  first {writes[0]:6.1f} ms   then p50 {figures['write_p50_ms']:6.1f} ms")
    print(f"compare at the end     p50 {figures['finish_p50_ms']:6.1f} ms (one file created, one changed)")
    print(f"git status             p50 {status_ms:6.1f} ms")
    print(" ".join(f"{name}={value:.1f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
