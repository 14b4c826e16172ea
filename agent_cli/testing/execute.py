"""Run a test command in the sandbox container, beside the model's interpreter, with a timeout.

Each run is one `docker exec` of incontainer.py: it runs the command in its own process group,
interrupts it (then kills it) at the timeout, and answers with one JSON line holding the exit code,
the output (head and tail) and the report files the runner wrote (pytest's JUnit XML) in a folder
outside the repository. An exec shares the container's limits, user, mounts and missing network, and
does not go through the interpreter, so the model's variables and action numbering are untouched.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent_cli.sandbox.docker_sandbox import WORKSPACE, AttachChannel

if TYPE_CHECKING:
    from agent_cli.sandbox.docker_sandbox import DockerSandbox

RUNNER_SOURCE = (Path(__file__).resolve().parent / "incontainer.py").read_text()
REPORTS_DIR = "/tmp/actsmith-tests"  # outside the repository: reports never show up in its diff
BASELINE_DIR = "/tmp/actsmith-baseline"  # the pre-run copy of the repository the baseline runs in
# Beyond the timeout: the interrupt grace (incontainer.py), unpacking a baseline copy, and slack.
HOST_SLACK_S = 60.0
SEND_CHUNK = 1 << 20


@dataclass(frozen=True)
class Job:
    command: str
    timeout: float
    reports: str  # the folder the runner writes its reports to (pytest's JUnit XML)
    cwd: str = WORKSPACE
    env: dict[str, str] = field(default_factory=dict)
    snapshot: bytes | None = None  # a tar of the repository to unpack into cwd first


@dataclass(frozen=True)
class RawRun:
    """What came back from the container, before any parsing."""

    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    output: str = ""
    reports: dict[str, str] = field(default_factory=dict)
    lost: str | None = None  # no outcome: why

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> RawRun:
        if message.get("error"):
            return cls(lost=f"the test runner failed: {message['error']}")
        reports = message.get("reports") or {}
        return cls(
            exit_code=int(message["exit_code"]) if message.get("exit_code") is not None else None,
            timed_out=bool(message.get("timed_out")),
            duration_s=float(message.get("duration_s") or 0.0),
            output=str(message.get("output") or ""),
            reports={str(k): str(v) for k, v in reports.items()} if isinstance(reports, dict) else {},
        )


class Executor(Protocol):
    """Where test commands run. The container one is the real thing; tests may use others."""

    def run(self, job: Job) -> RawRun: ...

    def close(self) -> None: ...


@dataclass
class ContainerExec:
    """Runs jobs with `docker exec` in the sandbox's current container (it may be replaced mid-run)."""

    sandbox: DockerSandbox
    _client: Any = None

    def run(self, job: Job) -> RawRun:
        from docker.errors import APIError

        container = self.sandbox.container
        if container is None:
            return RawRun(lost="the sandbox is not running")
        spec = {
            "command": job.command,
            "cwd": job.cwd,
            "timeout": job.timeout,
            "env": job.env,
            "reports": job.reports,
            "snapshot": job.snapshot is not None,
        }
        api = self._api()
        try:
            created = api.exec_create(
                container,
                ["python3", "-I", "-c", RUNNER_SOURCE, json.dumps(spec)],
                stdin=job.snapshot is not None,
                stdout=True,
                stderr=True,
            )
            sock = api.exec_start(created["Id"], socket=True)
        except APIError as error:
            return RawRun(lost=f"the sandbox could not start the tests: {error.explanation or error}")
        return self._collect(AttachChannel(sock), job)

    def _collect(self, channel: AttachChannel, job: Job) -> RawRun:
        deadline = time.monotonic() + job.timeout + HOST_SLACK_S
        try:
            if job.snapshot is not None:
                _send(channel, job.snapshot)
            message = channel.receive(deadline)
        except (ConnectionError, OSError, ValueError):
            message = None
        finally:
            channel.close()
        if message is None:
            said = channel.stderr_tail.decode(errors="replace").strip().splitlines()
            detail = f": {said[-1]}" if said else ""
            return RawRun(lost=f"the test run ended without a result (the sandbox was restarted?){detail}")
        return RawRun.from_message(message)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _api(self) -> Any:
        """A client of our own: the baseline runs in a thread while the loop uses the sandbox's."""
        if self._client is None:
            from agent_cli.sandbox.docker_sandbox import docker_client

            self._client = docker_client()
        return self._client.api


def _send(channel: AttachChannel, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), SEND_CHUNK):
        channel.sock.sendall(view[start : start + SEND_CHUNK])


def snapshot_tar(root: Path, tree: str) -> bytes:
    """The tree (the repository before the run) as a tar of the exact stored bytes. Built from the
    objects, not with `git archive`, which would leave out files marked `export-ignore`."""
    from agent_cli.workspace import git

    listing = git(root, "ls-tree", "-r", "-z", "--full-tree", tree).decode("utf-8", "surrogateescape")
    entries = []
    for record in filter(None, listing.split("\0")):
        meta, _, path = record.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "blob":  # submodules (commits) have no content here
            entries.append((int(mode, 8), sha, path))
    contents = git(root, "cat-file", "--batch", input="".join(f"{sha}\n" for _, sha, _ in entries).encode())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        offset = 0
        for mode, _sha, path in entries:
            header_end = contents.index(b"\n", offset)
            size = int(contents[offset:header_end].split()[2])
            data = contents[header_end + 1 : header_end + 1 + size]
            offset = header_end + 1 + size + 1
            info = tarfile.TarInfo(path)
            info.mtime = int(time.time())
            if mode == 0o120000:
                info.type, info.linkname = tarfile.SYMTYPE, data.decode("utf-8", "surrogateescape")
                archive.addfile(info)
            else:
                info.size, info.mode = size, 0o755 if mode & 0o111 else 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
