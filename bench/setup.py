"""Environment setup: plans over the corpus of well-known layouts, a failed setup's second run, and
for a real project the cold build, then the warm reuse, in one run.

Corpus (tests/fixtures/setup_corpus): the plan detected for each project's layout; without --quick,
each pip plan's third-party requirements are also resolved here (`pip install --dry-run` in a
confined setup container: the fixtures hold the layouts, not the projects' code) and counted.

Failed setup: a repository whose detected setup cannot install (a package that does not exist)
falls back to the plain sandbox; its second run remembers the failure, so the time to a ready
sandbox should be that of an unchanged repository (goal: under 1 s).

The project is attrs 23.2.0 from PyPI (its sdist, fetched with pip through the host's proxy and CA,
made a git repository), whose tests need hypothesis and more. Cold: its setup (detected:
`pip install -e '.[tests]'`) runs in a build container and is committed as an environment image.
Warm: a session with unchanged manifests finds that image and starts its sandbox from it. Printed
beside them: the same sandbox start with no setup at all, so the cost of the lookup is a difference
measured in the same run.

Usage: python bench/setup.py [--quick] [--warm 7]
Ends with one line: corpus_plans=N/M [corpus_resolved=K/M] failed_second_ready_s=F
[cold_setup_s=X warm_ready_p50_s=Y plain_ready_p50_s=Z]; --quick skips the installs and attrs.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.environment import docker_factory, image_for
from agent_cli.errors import ActsmithError
from agent_cli.events import Event, EventStream, SetupDone
from agent_cli.sandbox import SandboxRequest
from agent_cli.sandbox.identity import docker_client
from agent_cli.settings import Settings
from agent_cli.setup import plan_setup, prepare_environment
from agent_cli.setup.inputs import INCLUDE, LOCAL_PROJECT, requirement_lines, with_includes
from agent_cli.testing.execute import snapshot_tar

if TYPE_CHECKING:
    import docker


CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "setup_corpus"
IDENTITY = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


def git_repository(repo: Path) -> Path:
    for args in (["init", "-q"], ["add", "-A"], [*IDENTITY, "commit", "-q", "-m", repo.name]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return repo


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
    return git_repository(repo)


def request_for(repo: Path) -> SandboxRequest:
    tree = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD^{tree}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return SandboxRequest(repo, repo, lambda: snapshot_tar(repo, tree))


def ready_s(settings: Settings, request: SandboxRequest) -> float:
    """Seconds from asking for a sandbox to a ready interpreter in it."""
    started = time.perf_counter()
    sandbox = docker_factory(settings, EventStream())(request)
    sandbox.start()
    seconds = time.perf_counter() - started
    sandbox.close()
    return seconds


def corpus_plans() -> int:
    """Each corpus project's detected plan, printed; the number that resolved to commands."""
    resolved = 0
    for project in sorted(CORPUS.iterdir()):
        started = time.perf_counter()
        plan = plan_setup(None, project, "python -m pytest")
        ms = (time.perf_counter() - started) * 1000
        resolved += bool(plan.commands)
        print(f"  {project.name:<10} {ms:5.1f} ms  {' && '.join(plan.commands)}")
    return resolved


@dataclass
class SetupEvents:
    done: list[SetupDone] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        if isinstance(event, SetupDone):
            self.done.append(event)


def corpus_resolves(client: docker.DockerClient, image: str, root: Path) -> int:
    """Whether each corpus plan's third-party requirements resolve here: its requirement files
    (includes inlined) and inline packages, less the project itself (the fixtures hold no code),
    through `pip install --dry-run` in a confined setup container. Lock-file plans (uv, poetry)
    need a real lock and are left out. The number that resolved."""
    resolved = 0
    for project in sorted(CORPUS.iterdir()):
        plan = plan_setup(None, project, "python -m pytest")
        wanted = third_party_requirements(project, plan.commands)
        if not wanted:
            why = "a lock-file plan: needs the project's real lock" if wanted is None else "the project alone"
            print(f"  {project.name:<10}      -  not resolved from the fixture: {why}")
            continue
        repo = Path(shutil.copytree(project, root / project.name))
        (repo / "bench-resolve.txt").write_text("\n".join(wanted) + "\n")
        dry_run = "python -m pip install --dry-run --ignore-installed -q -r bench-resolve.txt"
        events, setup = EventStream(), SetupEvents()
        events.subscribe(setup)
        started = time.perf_counter()
        try:
            prepared = prepare_environment(
                client, image, Settings(setup=(dry_run,)), request_for(git_repository(repo)), events
            )
        except ActsmithError as error:
            print(f"  {project.name:<10} {time.perf_counter() - started:6.1f} s  does not resolve: {error}")
            continue
        resolved += 1
        print(f"  {project.name:<10} {time.perf_counter() - started:6.1f} s  resolves ({len(wanted)} lines)")
        client.images.remove(prepared.image, force=True)
    return resolved


def third_party_requirements(root: Path, commands: tuple[str, ...]) -> list[str] | None:
    """The lines a pip plan installs besides the project itself; None for other plans."""
    if not commands or not all(command.startswith("python -m pip install") for command in commands):
        return None
    words = shlex.split(commands[-1])[4:]
    files = [words[i + 1] for i, word in enumerate(words) if word == "-r"]
    packages = [
        w for i, w in enumerate(words) if not w.startswith("-") and words[i - 1] not in ("-r", "-e", "-c")
    ]
    lines = [line for name in with_includes(root, files) for line in requirement_lines(root, name)]
    return [
        line
        for line in lines + packages
        if not INCLUDE.match(line) and not LOCAL_PROJECT.match(line.split("[")[0])
    ]


def failed_second_run(root: Path) -> tuple[float, float]:
    """(seconds of the first run's failing setup, seconds to a ready sandbox on the second run)."""
    repo = root / "failing"
    repo.mkdir()
    (repo / "requirements.txt").write_text(f"actsmith-no-such-package-{time.time_ns()}==9.9\n")
    request = request_for(git_repository(repo))
    settings = Settings()
    started = time.perf_counter()
    ready_s(settings, request)
    first = time.perf_counter() - started
    return first, ready_s(settings, request)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=7, help="warm starts to time")
    parser.add_argument("--quick", action="store_true", help="plans and the failed setup only")
    args = parser.parse_args()
    total = len(list(CORPUS.iterdir()))
    print("corpus: the plan detected for each layout")
    resolved = corpus_plans()
    figures = [f"corpus_plans={resolved}/{total}"]
    client = docker_client()
    image = image_for(client, Settings(), print)
    with tempfile.TemporaryDirectory(prefix="actsmith-bench-setup-") as tmp:
        if not args.quick:
            print("corpus: each plan's third-party requirements resolved here (pip --dry-run)")
            figures.append(f"corpus_resolved={corpus_resolves(client, image, Path(tmp))}/{total}")
        first, second = failed_second_run(Path(tmp))
        print(f"failed setup: first run to a ready (plain) sandbox {first:7.1f} s; second run {second:.3f} s")
        figures.append(f"failed_second_ready_s={second:.3f}")
        if not args.quick:
            figures += attrs_figures(Path(tmp), client, image, args.warm)
    print(" ".join(figures))


def attrs_figures(tmp: Path, client: docker.DockerClient, image: str, warm_runs: int) -> list[str]:
    repo = attrs_repository(tmp)
    request = request_for(repo)
    settings = Settings()
    started = time.perf_counter()
    environment = prepare_environment(client, image, settings, request, EventStream(), rebuild=True).image
    cold = time.perf_counter() - started
    warm = [ready_s(settings, request) for _ in range(warm_runs)]
    plain = [ready_s(Settings(setup=()), request) for _ in range(warm_runs)]
    client.images.remove(environment, force=True)
    p50 = statistics.median
    print(f"cold setup (pip install -e '.[tests]', commit)   {cold:7.1f} s   -> {environment}")
    print(f"warm: the same manifests to a ready sandbox  p50 {p50(warm):7.3f} s   (n={len(warm)})")
    print(f"no setup: plain sandbox to a ready sandbox   p50 {p50(plain):7.3f} s   (n={len(plain)})")
    return [
        f"cold_setup_s={cold:.1f}",
        f"warm_ready_p50_s={p50(warm):.3f}",
        f"plain_ready_p50_s={p50(plain):.3f}",
    ]


if __name__ == "__main__":
    main()
