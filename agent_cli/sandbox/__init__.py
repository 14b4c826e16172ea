"""Sandboxes run code actions in a persistent interpreter, and processes beside it (test runs).

The agent loop and the test runner see only the `Sandbox` protocol. `DockerSandbox` (docker_sandbox.py)
is the one users get; `LocalSandbox` (local.py) runs the same kernel as a local subprocess with no
isolation, for fast tests of the loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent_cli.cancel import CancelToken
    from agent_cli.settings import Settings


@dataclass(frozen=True)
class Finish:
    """The action called finish(summary)."""

    summary: str


@dataclass(frozen=True)
class RunTests:
    """The action called run_tests(cmd, timeout): the project's tests when `command` is None."""

    command: str | None = None
    timeout: float | None = None


Control = Finish | RunTests


def control_from(data: Any) -> Control | None:
    """The control value the kernel reported, checked: it passed through code the model wrote."""
    if not isinstance(data, dict):
        return None
    if data.get("kind") == "finish":
        return Finish(str(data.get("summary") or ""))
    if data.get("kind") == "run_tests":
        command, timeout = data.get("command"), data.get("timeout")
        return RunTests(
            command if isinstance(command, str) and command.strip() else None,
            float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None,
        )
    return None


@dataclass
class Observation:
    """What one action produced, as the kernel reported it (already trimmed inside the sandbox)."""

    stdout: str = ""
    stderr: str = ""
    value: str | None = None  # repr of a final expression, as a REPL would echo it
    error: str | None = None  # traceback trimmed to the action's own frames
    timed_out: bool = False
    interrupted: bool = False  # stopped by a timeout or a cancel
    restarted: bool = False  # the interpreter was replaced: variables are gone, files persist
    restart_reason: str | None = None
    control: Control | None = None  # finish() or run_tests(), when the action called one
    truncated_chars: int = 0  # characters cut from stdout/stderr/value to respect the output cap
    duration_s: float = 0.0


def observation_from_reply(reply: dict[str, Any]) -> Observation:
    return Observation(
        stdout=reply.get("stdout") or "",
        stderr=reply.get("stderr") or "",
        value=reply.get("value"),
        error=reply.get("error"),
        timed_out=bool(reply.get("timed_out")),
        interrupted=bool(reply.get("interrupted")),
        restarted=bool(reply.get("restarted")),
        restart_reason=reply.get("restart_reason"),
        control=control_from(reply.get("control")),
        truncated_chars=int(reply.get("truncated_chars") or 0),
        duration_s=float(reply.get("duration_s") or 0.0),
    )


@dataclass(frozen=True)
class ExecResult:
    """A process run beside the interpreter: its exit code and output, or why there is none."""

    exit_code: int | None = None
    stdout: bytes = b""
    stderr: str = ""
    lost: str | None = None


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox, taken from (and validated by) Settings."""

    memory: str
    cpus: float
    pids: int
    network: bool
    max_output_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(settings.memory, settings.cpus, settings.pids, settings.network, settings.max_output_chars)

    @property
    def memory_bytes(self) -> int:
        from agent_cli.settings import parse_size

        return parse_size(self.memory) or 0


class Sandbox(Protocol):
    """A persistent interpreter whose working directory is the repository, and room for processes
    beside it. `workdir` is the repository's path as code in the sandbox sees it; `scratch` a folder
    of the harness's own outside the repository."""

    workdir: str
    scratch: str
    python: str  # the interpreter that runs harness scripts beside the kernel

    def start(self) -> None: ...

    def run(self, code: str, timeout: float) -> Observation: ...

    def exec(
        self,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        cancel: CancelToken | None = None,
    ) -> ExecResult:
        """Run a process beside the interpreter (same limits, user, mounts and network) and wait for
        it; the model's variables are untouched. Closing its stdin tells it to stop."""
        ...

    def interrupt(self) -> None: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SandboxRequest:
    """What a sandbox factory gets from the session."""

    root: Path  # the working tree the sandbox works on (the checkout, or a worktree)
    repo: Path  # the user's checkout (where logs of the environment's setup are kept)
    snapshot: Callable[[], bytes]  # the repository before the run, as a tar (waits for the checkpoint)
    # Called before anything slow (an image build): returns once the session's own checks passed,
    # so a missing API key is said before minutes of setup, not after.
    ready: Callable[[], None] = lambda: None
    read_only: bool = False  # the working tree mounted read-only (plan mode)
    cancel: CancelToken | None = None  # tripped: an environment being built stops (Ctrl-C, SIGTERM)


SandboxFactory = Callable[[SandboxRequest], Sandbox]


SANDBOX_MEMORY_SHARE = 0.8  # of the machine's memory, for the sandboxes of parallel tasks


def default_jobs(sandbox_memory: int) -> int:
    """Sandboxes at once: two per core (tasks mostly wait for the model), as many as the memory can
    hold at each sandbox's limit (what runs out first with many workers), at least one."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return max(1, 2 * cores)
    return max(1, min(2 * cores, int(memory * SANDBOX_MEMORY_SHARE) // max(sandbox_memory, 1)))
