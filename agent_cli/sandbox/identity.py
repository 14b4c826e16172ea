"""Who a sandbox container is, as Docker sees it: the labels every container of ours carries, the
owner token that tells a live run's container from a dead one's, the repository's path inside, the
connected client, and the sweep of leftovers. A leaf: the sandbox and the environment setup both use
it, and it imports neither.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker

LABEL = "actsmith.container"  # images carry actsmith.image; only our run containers carry this
OWNER_LABEL = "actsmith.owner"
WORKSPACE = "/workspace"


def docker_client() -> docker.DockerClient:
    """A connected client, or one actionable line when the daemon is not reachable."""
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        raise EnvironmentProblem(
            f"Docker daemon not reachable ({type(exc).__name__}): start Docker or set DOCKER_HOST"
        ) from None
    return client


def _process_start_time(pid: int) -> str:
    """Start time of a process in clock ticks since boot, to tell a live owner from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_token(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid)}"


def owner_is_alive(token: str) -> bool:
    host, _, rest = token.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's run: not ours to judge
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return _process_start_time(pid) == started


@dataclass(frozen=True)
class SandboxContainer:
    id: str
    name: str
    owner: str  # owner_token() of the actsmith process that started it

    @property
    def orphaned(self) -> bool:
        return not owner_is_alive(self.owner)


def sandbox_containers(client: docker.DockerClient) -> list[SandboxContainer]:
    """Every sandbox container, from one listing call: the SDK's containers.list() inspects each one
    in turn and fails when a container removes itself (auto-remove) in between."""
    return [
        SandboxContainer(
            summary["Id"],
            (summary.get("Names") or ["/" + summary["Id"][:12]])[0].lstrip("/"),
            (summary.get("Labels") or {}).get(OWNER_LABEL, ""),
        )
        for summary in client.api.containers(all=True, filters={"label": LABEL})
    ]


def sweep_leftovers(client: docker.DockerClient, *, everything: bool = False) -> list[str]:
    """Remove sandbox containers whose owning actsmith process is gone (or all of them)."""
    from docker.errors import APIError

    removed = []
    for container in sandbox_containers(client):
        if everything or container.orphaned:
            try:
                client.api.remove_container(container.id, force=True, v=True)
            except APIError:  # already gone, or being removed (auto-remove raced us)
                continue
            removed.append(container.name)
    return removed
