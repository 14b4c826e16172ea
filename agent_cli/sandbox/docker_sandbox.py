"""A sandbox backed by one Docker container whose main process is the kernel supervisor.

The host talks to the supervisor over the container's attached stdio (newline-delimited JSON), so an
action costs one write and one read on a local socket instead of a `docker exec`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.errors import EnvironmentProblem
from agent_cli.sandbox import (
    ExecResult,
    Observation,
    SandboxLimits,
    observation_from_reply,
)
from agent_cli.sandbox.channel import AttachChannel, Requests
from agent_cli.sandbox.identity import (
    LABEL,
    OWNER_LABEL,
    WORKSPACE,
    docker_client,
    owner_token,
    sweep_leftovers,
)
from agent_cli.sandbox.mounts import workspace_binds

if TYPE_CHECKING:
    import docker

    from agent_cli.cancel import CancelToken

SCRATCH = "/tmp/actsmith"  # the harness's own files in the container, outside the repository
READY_TIMEOUT_S = 60.0
# Beyond the action's own timeout: the in-container interrupt grace, a worker restart, and slack.
HOST_SLACK_S = 15.0
SEND_CHUNK = 1 << 20


@dataclass
class DockerSandbox:
    """One container per session, the repository bind-mounted read-write at /workspace."""

    client: docker.DockerClient
    image: str
    repo: Path
    limits: SandboxLimits
    container: str | None = None  # container id
    channel: AttachChannel | None = None
    requests: Requests | None = None
    layers: tuple[str, ...] = ()  # folders of the environment image layered over the repository mount
    setup_problem: str | None = None  # why it runs the plain image although setup had work to do
    made_mountpoints: list[str] = field(default_factory=list)
    private: Path | None = None  # a host folder of this sandbox's own (sanitized git config copies)
    read_only: bool = False  # the working tree mounted read-only (plan mode)
    workdir: str = WORKSPACE
    scratch: str = SCRATCH
    python: str = "python3"
    _exec_clients: threading.local = field(default_factory=threading.local)
    _all_exec_clients: list[Any] = field(default_factory=list)

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
        assert self.channel is not None
        self.requests = Requests(self.channel)

    def _create_container(self) -> str:
        from docker.errors import APIError

        # Docker makes the mount points of layered folders in the repository; those it made (empty,
        # root's) go again at close, so the user's checkout ends as it began.
        self.made_mountpoints = [layer for layer in self.layers if not (self.repo / layer).exists()]
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
        from docker.types import Mount

        api = self.client.api
        stat = self.repo.stat()
        limits = self.limits
        host_config = api.create_host_config(
            binds=workspace_binds(self.repo, self._private(), read_only=self.read_only),
            network_mode="bridge" if limits.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # no swap on top: the limit is the limit
            nano_cpus=int(cpus * 1e9),
            pids_limit=limits.pids,
            init=True,  # reaps the zombies an action's background processes leave
            auto_remove=True,
            # Anonymous volumes, filled from the environment image (node_modules setup installed),
            # layered over the repository's mount so the tests find them; removed with the container.
            mounts=[Mount(f"{WORKSPACE}/{layer}", None, type="volume") for layer in self.layers],
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
        if self.requests is None:
            self.start()
        assert self.requests is not None
        started = time.monotonic()
        try:
            reply = self.requests.run(
                code, timeout, self.limits.max_output_chars, started + timeout + HOST_SLACK_S
            )
        except (ConnectionError, OSError):
            reason = "the sandbox container stopped (its supervisor was killed or the container removed)"
            return self._replace_container(reason, started, timed_out=False)
        if reply is None:
            return self._replace_container("the sandbox stopped responding", started, timed_out=True)
        return observation_from_reply(reply)

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
        if self.requests is not None:
            self.requests.interrupt()

    def restart(self) -> None:
        if self.requests is None:
            self.start()
        elif not self.requests.restart(time.monotonic() + READY_TIMEOUT_S):
            self._replace_container("the interpreter did not restart", time.monotonic(), timed_out=False)

    def exec(
        self,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        cancel: CancelToken | None = None,
    ) -> ExecResult:
        """`docker exec` beside the interpreter, stdin attached: whatever is given is sent, and the
        stream stays open until the process answers or we give up (closing it tells it to stop)."""
        from docker.errors import APIError

        container = self.container
        if container is None:
            return ExecResult(lost="the sandbox is not running")
        api = self._exec_api()
        try:
            created = api.exec_create(container, argv, stdin=True, stdout=True, stderr=True)
            channel = AttachChannel(api.exec_start(created["Id"], socket=True))
        except APIError as error:
            return ExecResult(lost=f"the sandbox could not start it: {error.explanation or error}")
        deadline = time.monotonic() + timeout
        lost: str | None
        stop = cancel.on_cancel(channel.close) if cancel is not None else _nothing()
        try:
            with stop:
                if stdin:
                    view = memoryview(stdin)
                    for start in range(0, len(view), SEND_CHUNK):
                        channel.sock.sendall(view[start : start + SEND_CHUNK])
                stdout = channel.read_all(deadline)
        except (ConnectionError, OSError) as error:
            stdout, lost = bytes(channel.stdout), f"the connection was lost ({error})"
        else:
            lost = None if stdout is not None else f"no answer within {timeout:.0f} s"
        finally:
            channel.close()
        if cancel is not None and cancel.cancelled:
            lost = "cancelled"
        stderr = channel.stderr_tail.decode(errors="replace")
        if lost is not None:
            return ExecResult(None, bytes(channel.stdout), stderr, lost)
        code = api.exec_inspect(created["Id"]).get("ExitCode")
        return ExecResult(code, stdout or b"", stderr)

    def _exec_api(self) -> Any:
        """A client of the calling thread's own: a baseline test run execs from its thread while
        the loop talks to the container on the main one."""
        client = getattr(self._exec_clients, "client", None)
        if client is None:
            client = docker_client()
            self._exec_clients.client = client
            self._all_exec_clients.append(client)
        return client.api

    def close(self) -> None:
        self.requests = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.container is not None:
            try:
                self.client.api.remove_container(self.container, force=True, v=True)
            except Exception:  # auto-remove may have won the race
                pass
            self.container = None
        for client in self._all_exec_clients:
            client.close()
        self._all_exec_clients.clear()
        for layer in self.made_mountpoints:
            with contextlib.suppress(OSError):
                (self.repo / layer).rmdir()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    def _private(self) -> Path:
        if self.private is None:
            self.private = Path(tempfile.mkdtemp(prefix="actsmith-sandbox-"))
        return self.private

    def __enter__(self) -> DockerSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield
