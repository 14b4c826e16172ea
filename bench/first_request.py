"""Time from starting `actsmith run` to the first request reaching a model server through litellm.

A local OpenAI-compatible server (tests/openai_stub.py) stands in for the provider. Importing litellm
takes seconds; the session starts it in a thread beside the checkpoint, the sandbox start and the repo
map scan, so the first request should wait only for whichever of them is slowest. Printed in the same
run: litellm's import alone, and (with --before SRC, a checkout of an earlier actsmith) the same
measurement of that code, so the saving is a ratio measured side by side.

Usage: python bench/first_request.py [--runs 5] [--warmups 1] [--before /path/to/old/checkout] [--quick]
Ends with one line: first_request_p50_s=X litellm_import_p50_s=Y [before_p50_s=Z ratio=R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _quick import parse_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import Reply, StubServer

FINISH = "<execute>finish('done')</execute>"


def make_repository(root: Path, files: int) -> Path:
    root.mkdir(parents=True)
    for n in range(files):
        (root / f"module_{n:04}.py").write_text(f"def function_{n}(x):\n    return x + {n}\n")
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(root), *args], check=True)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "-C", str(root), *identity, "commit", "-q", "-m", "initial"], check=True)
    return root


def first_request_s(repo: Path, server: StubServer, source: Path | None) -> float:
    """Seconds from spawning `actsmith run` to the server seeing its first request."""
    server.script(Reply(FINISH))
    seen = len(server.arrivals)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTSMITH_")}
    env["OPENAI_API_KEY"] = "bench-key-not-secret"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    started = time.perf_counter()
    command = [sys.executable, "-m", "agent_cli", "run", "say done", "--model", "openai/bench-model"]
    command += ["--api-base", server.api_base, "--repo", str(repo), "--no-tests"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or len(server.arrivals) <= seen:
        raise SystemExit(f"the run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return server.arrivals[seen] - started


def litellm_import_s() -> float:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import litellm"], env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=1000, help="files in the repository")
    parser.add_argument("--before", type=Path, help="a checkout of an earlier actsmith to measure alongside")
    parser.add_argument(
        "--warmups", type=int, default=1, help="untimed runs first (images built, the repo map cached)"
    )
    args = parse_args(parser, {"runs": 1, "files": 100, "warmups": 0})
    server = StubServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="actsmith-bench-first-") as tmp:
            repo = make_repository(Path(tmp) / "repo", args.files)
            for _ in range(args.warmups):
                for source in {None, args.before}:
                    first_request_s(repo, server, source)
            now, before, imports = [], [], []
            for _ in range(args.runs):  # interleaved, so drift on the machine hits both alike
                now.append(first_request_s(repo, server, None))
                if args.before:
                    before.append(first_request_s(repo, server, args.before))
                imports.append(litellm_import_s())
    finally:
        server.stop()
    p50 = statistics.median
    print(f"run start to first model request  p50 {p50(now):.2f} s   (n={len(now)}, {args.files} files)")
    print(f"import litellm alone              p50 {p50(imports):.2f} s")
    figures = f"first_request_p50_s={p50(now):.2f} litellm_import_p50_s={p50(imports):.2f}"
    if before:
        print(f"the same with {args.before}  p50 {p50(before):.2f} s   ({p50(before) / p50(now):.2f}x)")
        figures += f" before_p50_s={p50(before):.2f} ratio={p50(before) / p50(now):.2f}"
    print(figures)


if __name__ == "__main__":
    main()
