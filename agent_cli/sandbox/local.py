"""A sandbox with no isolation: the same kernel as the Docker one, run as a local subprocess.

It exists to test the agent loop fast and without Docker (the way mini-swe-agent tests its loop),
and to prove that the loop and the test runner need nothing but the `Sandbox` protocol. Code runs
as you, on your files, with your network: actsmith never offers it to users.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.sandbox import ExecResult, Observation, SandboxLimits, observation_from_reply
from agent_cli.sandbox.channel import LineChannel, Requests

if TYPE_CHECKING:
    from agent_cli.cancel import CancelToken

KERNEL = Path(__file__).resolve().parent / "kernel" / "server.py"
READY_TIMEOUT_S = 30.0
HOST_SLACK_S = 15.0


@dataclass
class LocalSandbox:
    repo: Path
    limits: SandboxLimits
    python: str = sys.executable
    proc: subprocess.Popen[bytes] | None = None
    requests: Requests | None = None
    workdir: str = ""
    scratch: str = ""

    def __post_init__(self) -> None:
        self.workdir = str(self.repo)

    def start(self) -> None:
        self.scratch = self.scratch or tempfile.mkdtemp(prefix="actsmith-local-")
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.scratch,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.proc = subprocess.Popen(
            [self.python, "-u", str(KERNEL)],
            cwd=self.repo,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        stdin = self.proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        channel = LineChannel(self.proc.stdout.fileno(), write)
        ready = channel.receive(time.monotonic() + READY_TIMEOUT_S)
        if not ready or ready.get("event") != "ready":
            self.close()
            raise RuntimeError("the local interpreter did not start")
        self.requests = Requests(channel)

    def run(self, code: str, timeout: float) -> Observation:
        if self.requests is None:
            self.start()
        assert self.requests is not None
        started = time.monotonic()
        try:
            reply = self.requests.run(
                code, timeout, self.limits.max_output_chars, started + timeout + HOST_SLACK_S
            )
        except (ConnectionError, OSError, ValueError):
            reply = None
        if reply is None:
            self.restart()
            return Observation(
                restarted=True,
                restart_reason="the interpreter process stopped; a new one was started",
                duration_s=time.monotonic() - started,
            )
        return observation_from_reply(reply)

    def exec(
        self,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        cancel: CancelToken | None = None,
    ) -> ExecResult:
        proc = subprocess.Popen(
            argv, cwd=self.repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        outputs: dict[str, bytes] = {}
        readers = [
            threading.Thread(target=lambda: outputs.__setitem__("out", proc.stdout.read())),  # type: ignore[union-attr]
            threading.Thread(target=lambda: outputs.__setitem__("err", proc.stderr.read())),  # type: ignore[union-attr]
        ]
        for reader in readers:
            reader.start()
        with contextlib.suppress(BrokenPipeError):
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.flush()
        stop = cancel.on_cancel(proc.stdin.close) if cancel is not None else contextlib.nullcontext()
        with stop:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
        proc.wait()
        for reader in readers:
            reader.join()
        stderr = outputs.get("err", b"").decode(errors="replace")
        if cancel is not None and cancel.cancelled:
            return ExecResult(None, outputs.get("out", b""), stderr, "cancelled")
        return ExecResult(proc.returncode, outputs.get("out", b""), stderr)

    def interrupt(self) -> None:
        if self.requests is not None:
            with contextlib.suppress(OSError, ValueError):
                self.requests.interrupt()

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # the supervisor stops its worker on SIGTERM
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None
            self.requests = None
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = ""
