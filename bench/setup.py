"""Environment setup for a real project: the cold build, then the warm reuse, in one run.

The project is attrs 23.2.0 from PyPI (its sdist, fetched with pip through the host's proxy and CA,
made a git repository), whose tests need hypothesis and more. Cold: its setup (detected:
`pip install -e '.[tests]'`) runs in a build container and is committed as an environment image.
Warm: a session with unchanged manifests finds that image and starts its sandbox from it. Printed
beside them: the same sandbox start with no setup at all, so the cost of the lookup is a difference
measured in the same run.

Usage: python bench/setup.py [--warm 7]
Ends with one line: cold_setup_s=X warm_ready_p50_s=Y plain_ready_p50_s=Z
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from agent_cli.events import EventStream
from agent_cli.sandbox import SandboxRequest
from agent_cli.sandbox.docker_sandbox import docker_factory, image_for
from agent_cli.sandbox.identity import docker_client
from agent_cli.settings import Settings
from agent_cli.setup import prepare_environment
from agent_cli.testing.execute import snapshot_tar


def attrs_repository(root: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        + ["--retries", "5", "-d", str(root), "attrs==23.2.0"],
        check=True,
    )
    repo = root / "attrs"
    repo.mkdir()
    with tarfile.open(next(root.glob("attrs-*.tar.gz"))) as archive:
        members = archive.getmembers()
        for member in members:
            member.name = member.name.partition("/")[2]
        archive.extractall(repo, members=[m for m in members if m.name], filter="data")
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "attrs"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return repo


def ready_s(settings: Settings, request: SandboxRequest) -> float:
    """Seconds from asking for a sandbox to a ready interpreter in it."""
    started = time.perf_counter()
    sandbox = docker_factory(settings, EventStream())(request)
    sandbox.start()
    seconds = time.perf_counter() - started
    sandbox.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=7, help="warm starts to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-setup-") as tmp:
        repo = attrs_repository(Path(tmp))
        tree = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD^{tree}"], check=True, capture_output=True, text=True
        ).stdout.strip()
        request = SandboxRequest(repo, repo, lambda: snapshot_tar(repo, tree))
        settings = Settings()
        client = docker_client()
        image = image_for(client, settings, print)
        started = time.perf_counter()
        environment, _ = prepare_environment(client, image, settings, request, EventStream(), rebuild=True)
        cold = time.perf_counter() - started
        warm = [ready_s(settings, request) for _ in range(args.warm)]
        plain = [ready_s(Settings(setup=()), request) for _ in range(args.warm)]
        client.images.remove(environment, force=True)
    p50 = statistics.median
    print(f"cold setup (pip install -e '.[tests]', commit)   {cold:7.1f} s   -> {environment}")
    print(f"warm: the same manifests to a ready sandbox  p50 {p50(warm):7.3f} s   (n={len(warm)})")
    print(f"no setup: plain sandbox to a ready sandbox   p50 {p50(plain):7.3f} s   (n={len(plain)})")
    print(f"cold_setup_s={cold:.1f} warm_ready_p50_s={p50(warm):.3f} plain_ready_p50_s={p50(plain):.3f}")


if __name__ == "__main__":
    main()
