"""Run a test command in the sandbox, beside the model's interpreter, with a timeout.

Each run is one `Sandbox.exec` of incontainer.py: it runs the command in its own process group,
interrupts it (then kills it) at the timeout, and answers with one JSON line holding the exit code,
the output (head and tail) and the report files the runner wrote (pytest's JUnit XML) in a folder
outside the repository. The exec shares the sandbox's limits, user, mounts and missing network, and
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

from agent_cli.gitops import git

if TYPE_CHECKING:
    from agent_cli.cancel import CancelToken
    from agent_cli.sandbox import Sandbox

RUNNER_SOURCE = (Path(__file__).resolve().parent / "incontainer.py").read_text()
# Beyond the timeout: the interrupt grace (incontainer.py), unpacking a baseline copy, and slack.
HOST_SLACK_S = 60.0


@dataclass(frozen=True)
class Job:
    command: str
    timeout: float
    reports: str  # the folder the runner writes its reports to (pytest's JUnit XML)
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    snapshot: bytes | None = None  # a tar of the repository to unpack into cwd first
    shadow: str | None = None  # the repository a copy in cwd stands in for (imports go to the copy)


@dataclass(frozen=True)
class RawRun:
    """What came back from the sandbox, before any parsing."""

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
    """Where test commands run: the sandbox (SandboxExec); unit tests use others."""

    def run(self, job: Job) -> RawRun: ...


@dataclass
class SandboxExec:
    """Runs jobs through the sandbox's exec, beside its interpreter (which may be replaced mid-run)."""

    sandbox: Sandbox
    cancel: CancelToken | None = None

    def run(self, job: Job) -> RawRun:
        spec = {
            "command": job.command,
            "cwd": job.cwd,
            "timeout": job.timeout,
            "env": job.env,
            "reports": job.reports,
            "snapshot": job.snapshot is not None,
            "shadow": job.shadow,
        }
        argv = [self.sandbox.python, "-I", "-c", RUNNER_SOURCE, json.dumps(spec)]
        result = self.sandbox.exec(
            argv, timeout=job.timeout + HOST_SLACK_S, stdin=job.snapshot, cancel=self.cancel
        )
        if result.lost is not None:
            said = result.stderr.strip().splitlines()
            detail = f": {said[-1]}" if said else ""
            return RawRun(lost=f"the test run ended without a result ({result.lost}){detail}")
        lines = result.stdout.decode("utf-8", "replace").strip().splitlines()
        try:
            message = json.loads(lines[-1]) if lines else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            said = result.stderr.strip().splitlines()
            detail = f": {said[-1]}" if said else f" (exit code {result.exit_code})"
            return RawRun(lost=f"the test runner gave no result{detail}")
        return RawRun.from_message(message)


def snapshot_tar(root: Path, tree: str) -> bytes:
    """The tree (the repository before the run) as a tar of the exact stored bytes. Built from the
    objects, not with `git archive`, which would leave out files marked `export-ignore`."""
    listing = git(root, "ls-tree", "-r", "-z", "--full-tree", tree).decode("utf-8", "surrogateescape")
    entries: list[tuple[int, str, str]] = []
    for record in filter(None, listing.split("\0")):
        meta, _, path = record.partition("\t")
        mode_text, kind, sha = meta.split()
        if kind == "blob":  # submodules (commits) have no content here
            entries.append((int(mode_text, 8), sha, path))
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
