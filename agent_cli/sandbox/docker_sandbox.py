"""A sandbox backed by one Docker container whose main process is the kernel supervisor.

The host talks to the supervisor over the container's attached stdio (newline-delimited JSON), so an
action costs one write and one read on a local socket instead of a `docker exec`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.errors import EnvironmentProblem, UsageError
from agent_cli.sandbox import Observation

if TYPE_CHECKING:
    import docker

LABEL = "actsmith.container"  # images carry actsmith.image; only our run containers carry this
OWNER_LABEL = "actsmith.owner"
WORKSPACE = "/workspace"
READY_TIMEOUT_S = 60.0
# Beyond the action's own timeout: the in-container interrupt grace, a worker restart, and slack.
HOST_SLACK_S = 15.0


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 64 << 20  # the supervisor, the interpreter and a test run need some room
MIN_PIDS = 32


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox; invalid values fail here, as one line, before anything starts."""

    memory: str = "4g"
    cpus: float = 2.0
    pids: int = 1024
    network: bool = False
    max_output_chars: int = 10_000

    def __post_init__(self) -> None:
        if self.memory_bytes < MIN_MEMORY:
            raise UsageError(f"memory = {self.memory!r} is too small: the sandbox needs at least 64m")
        if not 0 < self.cpus <= 1024:
            raise UsageError(f"cpus = {self.cpus:g}: expected a number of CPUs above 0, such as 0.5 or 2")
        if self.pids < MIN_PIDS:
            raise UsageError(
                f"pids = {self.pids}: the sandbox needs a limit of at least {MIN_PIDS} processes"
            )

    @property
    def memory_bytes(self) -> int:
        match = _SIZE.fullmatch(str(self.memory).strip())
        if not match:
            raise UsageError(f"memory = {self.memory!r}: expected a size such as 512m or 4g (units k, m, g)")
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


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
                client.api.remove_container(container.id, force=True)
            except APIError:  # already gone, or being removed (auto-remove raced us)
                continue
            removed.append(container.name)
    return removed


MAX_MESSAGE_BYTES = 64 << 20  # far above any reply (output is capped inside), far below harm


class AttachChannel:
    """JSON lines over a container's attached stdio, demultiplexing Docker's stream frames."""

    def __init__(self, sock: Any):
        self.sock: socket.socket = getattr(sock, "_sock", sock)
        # bytearrays, consumed from the front in one go: a long reply costs linear time, not quadratic.
        self.frames = bytearray()
        self.stdout = bytearray()
        self.searched = 0  # how much of stdout is known to hold no newline
        self.stderr_tail = b""

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self, deadline: float) -> dict | None:
        """The next JSON message from the supervisor's stdout; None at the deadline or on EOF."""
        while (end := self.stdout.find(b"\n", self.searched)) < 0:
            self.searched = len(self.stdout)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("the sandbox closed its channel")
            self.frames += chunk
            self._demultiplex()
            if len(self.frames) + len(self.stdout) > MAX_MESSAGE_BYTES:
                # Code in the sandbox can write to this channel too; it must not exhaust the host.
                raise ConnectionError(f"the sandbox sent a message over {MAX_MESSAGE_BYTES >> 20} MiB")
        line = bytes(self.stdout[:end])
        del self.stdout[: end + 1]
        self.searched = 0
        try:
            message = json.loads(line)
        except ValueError:
            raise ConnectionError("the sandbox sent a malformed message") from None
        if not isinstance(message, dict):
            raise ConnectionError("the sandbox sent a malformed message")
        return message

    def _demultiplex(self) -> None:
        offset = 0
        while len(self.frames) - offset >= 8:
            kind, size = self.frames[offset], struct.unpack_from(">I", self.frames, offset + 4)[0]
            if len(self.frames) - offset - 8 < size:
                break
            payload = self.frames[offset + 8 : offset + 8 + size]
            offset += 8 + size
            if kind == 2:
                self.stderr_tail = (self.stderr_tail + payload)[-4000:]
            else:
                self.stdout += payload
        del self.frames[:offset]

    def close(self) -> None:
        try:
            # shutdown, not just close: the Docker client keeps its own reference to this connection,
            # and a daemon still writing into it (a sandbox flooding its output) would hang removal.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def workspace_binds(repo: Path) -> dict[str, dict[str, str]]:
    """The repository read-write, but its .git read-only: from inside, code could otherwise plant
    hooks or config (core.fsmonitor, filters) that the host's own git commands would execute."""
    binds = {str(repo): {"bind": WORKSPACE, "mode": "rw"}}
    git_entry = repo / ".git"
    if git_entry.is_file():
        # A worktree: its .git file names a git dir by absolute path, so the repository's git dir
        # appears read-only at that same path (the worktree itself lives inside it, under actsmith/).
        binds[str(git_entry)] = {"bind": f"{WORKSPACE}/.git", "mode": "ro"}
        binds[str(_common_git_dir(git_entry))] = {"bind": str(_common_git_dir(git_entry)), "mode": "ro"}
    elif git_entry.exists():
        binds[str(git_entry)] = {"bind": f"{WORKSPACE}/.git", "mode": "ro"}
    return binds


def _common_git_dir(git_file: Path) -> Path:
    """The main git dir of a worktree, read from its .git file and the worktree dir's commondir."""
    worktree_dir = Path(git_file.read_text().removeprefix("gitdir:").strip())
    if not worktree_dir.is_absolute():
        worktree_dir = (git_file.parent / worktree_dir).resolve()
    common = worktree_dir / "commondir"
    return (worktree_dir / common.read_text().strip()).resolve() if common.exists() else worktree_dir


@dataclass
class DockerSandbox:
    """One container per run, the repository bind-mounted read-write at /workspace."""

    client: docker.DockerClient
    image: str
    repo: Path
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    container: str | None = None  # container id
    channel: AttachChannel | None = None
    next_id: int = 0

    def start(self) -> None:
        sweep_leftovers(self.client)
        self.container = self._create_container()
        try:
            sock = self.client.api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.channel = AttachChannel(sock)
            self.client.api.start(self.container)
            ready = self.channel.receive(time.monotonic() + READY_TIMEOUT_S)
        except (ConnectionError, OSError):
            ready = None
        except BaseException:
            self.close()
            raise
        if not ready or ready.get("event") != "ready":
            said = (
                self.channel.stderr_tail.decode(errors="replace").strip().splitlines() if self.channel else []
            )
            self.close()
            detail = f": {said[-1]}" if said else ""
            raise EnvironmentProblem(
                f"the sandbox interpreter did not start in image {self.image}{detail} "
                "(rebuild it with `actsmith sandbox build --rebuild`)"
            )

    def _create_container(self) -> str:
        from docker.errors import APIError

        try:
            return self._create(self.limits.cpus)
        except APIError as error:
            if "Range of CPUs" not in str(error.explanation):
                raise
        # The daemon refuses a CPU limit above its CPU count; "at most 2 CPUs" on a 1-CPU host
        # means all of them, so the default works everywhere.
        return self._create(float(self.client.info()["NCPU"]))

    def _create(self, cpus: float) -> str:
        """Create the container through the low-level API, which lets us set StdinOnce."""
        api = self.client.api
        stat = self.repo.stat()
        limits = self.limits
        host_config = api.create_host_config(
            binds=workspace_binds(self.repo),
            network_mode="bridge" if limits.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # no swap on top: the limit is the limit
            nano_cpus=int(cpus * 1e9),
            pids_limit=limits.pids,
            init=True,  # reaps the zombies an action's background processes leave
            auto_remove=True,
        )
        created = api.create_container(
            self.image,
            name=f"actsmith-{uuid.uuid4().hex[:12]}",
            labels={LABEL: "1", OWNER_LABEL: owner_token()},
            # detach=False makes the SDK set StdinOnce: our disconnect closes the kernel's stdin,
            # so the kernel exits (and the container is auto-removed) even if we are SIGKILLed.
            stdin_open=True,
            detach=False,
            tty=False,
            working_dir=WORKSPACE,
            # Files the model writes belong to whoever owns the repository.
            user=f"{stat.st_uid}:{stat.st_gid}",
            # A fixed environment: nothing from the host's (API keys, tokens) crosses into the sandbox.
            environment={
                "HOME": "/tmp",
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
                "ACTSMITH_SANDBOX": "1",
            },
            host_config=host_config,
        )
        return created["Id"]

    def run(self, code: str, timeout: float) -> Observation:
        if self.channel is None:
            self.start()
        self.next_id += 1
        request = {
            "id": self.next_id,
            "op": "run",
            "code": code,
            "timeout": timeout,
            "max_output": self.limits.max_output_chars,
        }
        started = time.monotonic()
        try:
            self.channel.send(request)
            reply = self._await_reply(self.next_id, started + timeout + HOST_SLACK_S)
        except (ConnectionError, OSError):
            reason = "the sandbox container stopped (its supervisor was killed or the container removed)"
            return self._replace_container(reason, started, timed_out=False)
        if reply is None:
            return self._replace_container("the sandbox stopped responding", started, timed_out=True)
        return observation_from_reply(reply)

    def _await_reply(self, request_id: int, deadline: float) -> dict | None:
        while True:
            message = self.channel.receive(deadline)
            if message is None or message.get("id") == request_id:
                return message

    def _replace_container(self, reason: str, started: float, *, timed_out: bool) -> Observation:
        self.close()
        self.start()
        return Observation(
            restarted=True,
            timed_out=timed_out,
            restart_reason=f"{reason}; a new sandbox was started",
            duration_s=time.monotonic() - started,
        )

    def interrupt(self) -> None:
        if self.channel is not None:
            self.channel.send({"op": "interrupt"})

    def restart(self) -> None:
        self.next_id += 1
        self.channel.send({"id": self.next_id, "op": "restart"})
        if self._await_reply(self.next_id, time.monotonic() + READY_TIMEOUT_S) is None:
            self._replace_container("the interpreter did not restart", time.monotonic(), timed_out=False)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.container is not None:
            try:
                self.client.api.remove_container(self.container, force=True)
            except Exception:  # auto-remove may have won the race
                pass
            self.container = None

    def __enter__(self) -> DockerSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def observation_from_reply(reply: dict) -> Observation:
    return Observation(
        stdout=reply.get("stdout") or "",
        stderr=reply.get("stderr") or "",
        value=reply.get("value"),
        error=reply.get("error"),
        timed_out=bool(reply.get("timed_out")),
        restarted=bool(reply.get("restarted")),
        restart_reason=reply.get("restart_reason"),
        finished=reply.get("finished"),
        truncated_chars=int(reply.get("truncated_chars") or 0),
        duration_s=float(reply.get("duration_s") or 0.0),
    )
