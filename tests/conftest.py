"""Shared fixtures: real git repositories in temp dirs, the real sandbox image, the real CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent_cli.trajectory import read_trajectory


@pytest.fixture(scope="session")
def docker_client():
    from agent_cli.sandbox.identity import docker_client as connect

    return connect()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_environments(tmp_path_factory):
    """Environment images made for this session's repositories are removed when it ends."""
    yield
    from agent_cli.setup.environment import ENV_LABEL, REPO_LABEL

    try:
        from agent_cli.sandbox.identity import docker_client as connect

        client = connect()
    except Exception:
        return  # no Docker: none were made
    ours = str(tmp_path_factory.getbasetemp())
    for image in client.images.list(filters={"label": ENV_LABEL}):
        if (image.labels or {}).get(REPO_LABEL, "").startswith(ours):
            with contextlib.suppress(Exception):
                client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The sandbox image, built through the same code path a user's first run takes."""
    from agent_cli.sandbox.image import ensure_image

    return ensure_image(docker_client)


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll instead of sleeping a guessed time: return as soon as `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


def container_ids(docker_client, **filters) -> list[str]:
    """Ids of the containers matching `filters`, in one API call: the SDK's containers.list()
    inspects each in turn and fails when one removes itself (auto-remove) in between."""
    return [c["Id"] for c in docker_client.api.containers(all=True, filters=filters)]


def limits(**overrides):
    """Sandbox limits as a session would take them from its settings."""
    from agent_cli.sandbox import SandboxLimits
    from agent_cli.settings import Settings

    return SandboxLimits.from_settings(Settings(**overrides))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "user.name", "test")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def add_submodule(repo: Path, library: Path, path: str) -> None:
    """`library` (a local repository) as a submodule of `repo` at `path`, committed."""
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            str(library),
            path,
        ],
        check=True,
        capture_output=True,
    )
    git(repo, "commit", "-qm", f"add submodule {path}")


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_repo(
        tmp_path / "repo", {"README.md": "# demo\n", "app.py": "def greet():\n    return 'hi'\n"}
    )


@pytest.fixture
def stub_server():
    """The local OpenAI-compatible server (tests/openai_stub.py), stopped after the test."""
    from openai_stub import StubServer

    server = StubServer().start()
    yield server
    server.stop()


def write_replay(path: Path, replies: list[str]) -> Path:
    path.write_text(yaml.safe_dump(replies, sort_keys=False))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The host environment minus model credentials, so no test can reach a real provider."""
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("ACTSMITH_")
    }
    env.update(extra)
    return env


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    trajectory: list[dict]

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.trajectory if e["event"] == kind]


def run_cli(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 180) -> CliRun:
    proc = subprocess.run(
        [sys.executable, "-m", "agent_cli", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    trajectory: list[dict] = []
    if "--trajectory" in args:
        path = Path(args[args.index("--trajectory") + 1])
        if path.exists():
            trajectory = read_trajectory(path)
    return CliRun(proc.returncode, proc.stdout, proc.stderr, trajectory)


@pytest.fixture
def run_agent(repo, tmp_path, sandbox_image):
    """Run `actsmith run` on the repo with a replay model made of `replies`."""

    def run(replies: list[str], *extra: str, task: str = "do the task", env=None) -> CliRun:
        replay = write_replay(tmp_path / "replay.yaml", replies)
        trajectory = tmp_path / "trajectory.jsonl"
        if trajectory.exists():
            trajectory.unlink()
        args = ["run", task, "--model", f"replay:{replay}", "--trajectory", str(trajectory), *extra]
        return run_cli(args, repo, env=env)

    return run


# DockerSandbox objects a test module keeps open across its tests (see test_adversarial.py).
SHARED_SANDBOXES: list = []


@pytest.fixture(autouse=True)
def no_leftover_containers(request, tmp_path_factory):
    """Every test that touched Docker must leave no sandbox container behind. Only this test
    session's containers are judged (those mounting its temp dirs): the daemon may be shared."""
    yield
    if "sandbox_image" not in request.fixturenames and "docker_client" not in request.fixturenames:
        return
    from docker.errors import APIError

    from agent_cli.sandbox.identity import LABEL
    from agent_cli.sandbox.identity import docker_client as connect

    client, shared = connect(), {box.container for box in SHARED_SANDBOXES}
    ours = str(tmp_path_factory.getbasetemp())
    # The container a test module shares between its tests is closed at the module's end.
    leftovers = [
        summary
        for summary in client.api.containers(all=True, filters={"label": LABEL})
        if summary["Id"] not in shared
        and any(str(mount.get("Source", "")).startswith(ours) for mount in summary.get("Mounts") or [])
    ]
    for summary in leftovers:
        with contextlib.suppress(APIError):  # it may be removing itself
            client.api.remove_container(summary["Id"], force=True)
    assert not leftovers, f"containers left behind: {[c['Names'] for c in leftovers]}"
