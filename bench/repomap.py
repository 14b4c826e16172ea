"""Repo map speed against aider's repo map, side by side in one run, on a large real code base.

Usage:
  python bench/repomap.py [--source DIR] [--tokens 1024] [--runs 5] [--aider-python PATH] [--same-files]
                         [--quick]

--source is copied into a temporary git repository (without __pycache__ and site-packages); the
default is the standard library of the Python running this script. Each tool then maps its own
copy: a cold map (empty caches), then `--runs` warm re-maps in the same process, each after
appending a new function to the same one file. By default each tool picks its own files (aider
parses generated and vendored code that actsmith skips); --same-files deletes those first, so
both parse exactly the same files and only the implementations are compared. aider runs in its own virtual environment
(created on first use at ~/.cache/actsmith/bench/aider-venv with `pip install aider-chat`, or
given with --aider-python), in a network namespace without any network when `unshare -n` is
available, and the script prints whether aider could reach the network. aider counts tokens with
the same estimate as actsmith (characters / 4), which only spares it the cost of a tokenizer.

--quick maps the standard library's `email` package, with two warm re-maps, and leaves aider out
unless --aider-python is given (installing it takes minutes).

Ends with one line:
  files=N ours_cold_s=X aider_cold_s=Y cold_ratio=Y/X ours_warm_ms=A aider_warm_ms=B warm_ratio=B/A
(without aider: files=N ours_cold_s=X ours_warm_ms=A)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

from _quick import parse_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STDLIB = Path(sysconfig.get_paths()["stdlib"])
QUICK = {"source": STDLIB / "email", "runs": 2}
AIDER_VENV = Path.home() / ".cache" / "actsmith" / "bench" / "aider-venv"
AIDER_REQUIREMENT = "aider-chat"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "site-packages", ".git")

AIDER_DRIVER = textwrap.dedent(
    """
    import json, socket, subprocess, sys, time
    from pathlib import Path

    repo, tokens, edit_file, runs = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        network = "reachable"
    except OSError as error:
        network = f"unreachable ({type(error).__name__}: {error})"

    from aider.repomap import RepoMap

    class Model:  # aider asks the chat model to count tokens: the same estimate as actsmith's
        def token_count(self, text):
            return len(text) / 4

    class IO:  # what aider's InputOutput does for the repo map, without a terminal
        def read_text(self, filename, silent=False):
            try:
                with open(str(filename), "r", encoding="utf-8") as f:
                    return f.read()
            except (OSError, UnicodeError):
                return None

        def tool_output(self, *args, **kwargs):
            pass

        tool_warning = tool_error = tool_output

    listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    files = [str(repo / name) for name in listed.stdout.splitlines()]
    mapper = RepoMap(map_tokens=tokens, root=str(repo), main_model=Model(), io=IO())
    start = time.perf_counter()
    text = mapper.get_repo_map([], files)
    cold = time.perf_counter() - start
    original = edit_file.read_text()
    warm = []
    for run in range(runs):
        edit_file.write_text(original + f"\\n\\ndef bench_added_{run}():\\n    return {run}\\n")
        start = time.perf_counter()
        mapper.get_repo_map([], files, force_refresh=True)
        warm.append(time.perf_counter() - start)
    edit_file.write_text(original)
    print(json.dumps({"cold_s": cold, "warm_s": warm, "chars": len(text or ""), "network": network}))
    """
)


def make_repo(source: Path, target: Path, same_files: bool) -> Path:
    shutil.copytree(source, target, ignore=IGNORED, symlinks=True)
    if same_files:
        drop_files_actsmith_skips(target)
    # gc.auto=0: a background `git gc` would repack objects while the repository is being copied.
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-c", "gc.auto=0", *args], cwd=target, check=True, capture_output=True)
    return target


def drop_files_actsmith_skips(root: Path) -> None:
    """Delete the source files actsmith leaves out of its map (vendored, generated, minified,
    binary, huge), so that both tools parse exactly the same files."""
    from agent_cli.repomap import files
    from agent_cli.syntax import language_for

    dropped = 0
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file() or language_for(relative) is None:
            continue
        data = path.read_bytes()
        if not (
            files.wanted_by_name(relative)
            and len(data) <= files.MAX_FILE_BYTES
            and files.wanted_by_content(data)
        ):
            path.unlink()
            dropped += 1
    print(f"--same-files: dropped {dropped} files actsmith would skip", file=sys.stderr)


def edit_target(repo: Path) -> Path:
    """A mid-sized Python file in the middle of the tree: the file both tools see edited."""
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=repo, capture_output=True, text=True).stdout
    candidates = [name for name in listed.splitlines() if 5_000 < (repo / name).stat().st_size < 50_000]
    return repo / sorted(candidates)[len(candidates) // 2]


def run_ours(repo: Path, tokens: int, runs: int, edit_file: Path, cache: Path) -> dict:
    from agent_cli.repomap import RepoMap

    start = time.perf_counter()
    mapper = RepoMap(repo, cache_path=cache)
    text = mapper.render(tokens)
    cold = time.perf_counter() - start
    files, parsed_cold = mapper.stats.files, mapper.stats.parsed
    original = edit_file.read_text()
    warm, parsed_warm = [], []
    for run in range(runs):
        edit_file.write_text(original + f"\n\ndef bench_added_{run}():\n    return {run}\n")
        start = time.perf_counter()
        mapper.render(tokens)
        warm.append(time.perf_counter() - start)
        parsed_warm.append(mapper.stats.parsed)
    edit_file.write_text(original)
    mapper.close()
    # The next process: a new RepoMap starting from the disk cache (what `actsmith map` does).
    start = time.perf_counter()
    with RepoMap(repo, cache_path=cache) as fresh:
        fresh.render(tokens)
    next_process = time.perf_counter() - start
    return {
        "cold_s": cold,
        "warm_s": warm,
        "chars": len(text),
        "files": files,
        "parsed_cold": parsed_cold,
        "parsed_warm": parsed_warm,
        "next_process_s": next_process,
    }


def aider_python(given: str | None) -> Path:
    if given:
        return Path(given)
    python = AIDER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {AIDER_VENV} (pip install {AIDER_REQUIREMENT}) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(AIDER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", AIDER_REQUIREMENT], check=True)
    return python


def run_aider(python: Path, repo: Path, tokens: int, runs: int, edit_file: Path, workdir: Path) -> dict:
    driver = workdir / "aider_driver.py"
    driver.write_text(AIDER_DRIVER)
    # -I: nothing from the environment or the script's directory shadows aider's own modules.
    command = [str(python), "-I", str(driver), str(repo), str(tokens), str(edit_file), str(runs)]
    isolated = shutil.which("unshare") is not None and os.geteuid() == 0
    if isolated:
        command = ["unshare", "--net", *command]  # a network namespace with no interfaces up
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),  # no user config; aider's analytics and version checks are not on this path
        "NO_PROXY": "*",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo)
    if proc.returncode != 0:
        raise SystemExit(f"aider's run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["isolated"] = isolated
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=STDLIB)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--aider-python", help="python of a virtualenv with aider-chat installed")
    parser.add_argument(
        "--same-files",
        action="store_true",
        help="first delete what actsmith skips (generated, vendored...), so both tools parse the same files",
    )
    args = parse_args(parser, QUICK)
    # aider is installed on first use (minutes, from the network): --quick leaves it out unless given.
    with_aider = not args.quick or args.aider_python is not None
    python = aider_python(args.aider_python) if with_aider else None
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-") as tmp:
        work = Path(tmp)
        print(f"copying {args.source} into two git repositories ...", file=sys.stderr)
        ours_repo = make_repo(args.source, work / "repo-actsmith", args.same_files)
        aider_repo = work / "repo-aider"
        shutil.copytree(ours_repo, aider_repo, symlinks=True)
        edit_file = edit_target(ours_repo)
        relative = edit_file.relative_to(ours_repo)
        time.sleep(2.1)  # let every file's mtime age past the racy-clean window, as in a real repo
        ours = run_ours(ours_repo, args.tokens, args.runs, edit_file, work / "ours-cache.sqlite")
        aider = (
            run_aider(python, aider_repo, args.tokens, args.runs, aider_repo / relative, work)
            if python
            else None
        )

    ours_warm = statistics.median(ours["warm_s"])
    print(f"source: {args.source} ({ours['files']} files mapped), budget {args.tokens} tokens")
    print(f"edited file for warm re-maps: {relative}")
    if aider:
        print(f"aider: network {aider['network']}{' (unshare --net)' if aider['isolated'] else ''}")
    print(f"actsmith cold map            {ours['cold_s']:8.3f} s   ({ours['parsed_cold']} files parsed)")
    if aider:
        print(f"aider    cold map            {aider['cold_s']:8.3f} s")
    print(
        f"actsmith warm re-map  median {ours_warm * 1000:8.1f} ms  "
        f"(runs: {', '.join(f'{s * 1000:.0f}' for s in ours['warm_s'])}; parsed {ours['parsed_warm']})"
    )
    if aider:
        print(
            f"aider    warm re-map  median {statistics.median(aider['warm_s']) * 1000:8.1f} ms  "
            f"(runs: {', '.join(f'{s * 1000:.0f}' for s in aider['warm_s'])})"
        )
    else:
        print("aider: left out in --quick (give --aider-python to include it)")
    print(f"actsmith next process (disk cache) {ours['next_process_s']:.3f} s")
    print(f"map sizes: actsmith {ours['chars']} chars" + (f", aider {aider['chars']} chars" if aider else ""))
    print(figures_line(ours, aider))


def figures_line(ours: dict, aider: dict | None) -> str:
    ours_warm_ms = statistics.median(ours["warm_s"]) * 1000
    line = f"files={ours['files']} ours_cold_s={ours['cold_s']:.3f}"
    if aider:
        aider_warm_ms = statistics.median(aider["warm_s"]) * 1000
        line += f" aider_cold_s={aider['cold_s']:.3f} cold_ratio={aider['cold_s'] / ours['cold_s']:.1f}"
        line += f" ours_warm_ms={ours_warm_ms:.1f} aider_warm_ms={aider_warm_ms:.1f}"
        return line + f" warm_ratio={aider_warm_ms / ours_warm_ms:.1f}"
    return line + f" ours_warm_ms={ours_warm_ms:.1f}"


if __name__ == "__main__":
    main()
