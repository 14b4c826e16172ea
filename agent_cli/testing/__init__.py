"""The test-runner agent: find the test command, run a baseline, report failures, gate finish().

detect.py finds the command; execute.py (with incontainer.py) runs it in the sandbox; parsers.py reads
the results; compare.py sets them against the baseline; gate.py holds it together behind the small
`TestRunner` seam the agent loop uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.events import EventStream, TestsPlanned
from agent_cli.testing.detect import TestCommand, configured_command, detect_test_command
from agent_cli.testing.gate import SuiteRunner, Summariser, TestRunner, TestVerdict

if TYPE_CHECKING:
    from agent_cli.cancel import CancelToken
    from agent_cli.model import Model
    from agent_cli.sandbox import Sandbox
    from agent_cli.settings import Settings

__all__ = [
    "SuiteRunner",
    "TestCommand",
    "TestRunner",
    "TestVerdict",
    "build_test_runner",
]


def build_test_runner(
    settings: Settings,
    root: Path,
    base_tree: str,
    sandbox: Sandbox,
    summary_model: Model | None,
    events: EventStream,
    task: str,
    cancel: CancelToken | None = None,
) -> SuiteRunner:
    """The runner for one session: the command chosen (and said), the summary model (None: long raw
    output is shown as its tail, undiagnosed), the pre-run tree."""
    from agent_cli.testing.execute import SandboxExec, snapshot_tar

    command = configured_command(settings.test_cmd) if settings.test_cmd else detect_test_command(root)
    runner = SuiteRunner(
        command,
        SandboxExec(sandbox, cancel),
        workdir=sandbox.workdir,
        scratch=sandbox.scratch,
        task=task,
        gate_on=settings.tests,
        max_rounds=settings.max_test_rounds,
        timeout=settings.test_timeout,
        snapshot=lambda: snapshot_tar(root, base_tree),
        summariser=Summariser(summary_model, events) if summary_model is not None else None,
        events=events,
        # A sandbox in the plain image because no detected setup could install (DockerSandbox).
        environment_problem=getattr(sandbox, "setup_problem", None),
    )
    events.notice(_announcement(command, settings.tests))
    events.emit(
        TestsPlanned(
            command=command.command if command else None,
            runner=command.kind if command else None,
            reason=command.reason if command else "no test command found",
            gate=bool(command and settings.tests),
            max_rounds=settings.max_test_rounds,
            timeout=settings.test_timeout,
        )
    )
    return runner


def _announcement(command: TestCommand | None, gate: bool) -> str:
    if command is None:
        return "tests: no test command found (set test_cmd or --test-cmd); finish() is not gated"
    if not gate:
        return f"tests: `{command.command}` ({command.reason}); no baseline or gate (--no-tests)"
    return f"tests: `{command.command}` ({command.reason}); baseline running beside the first model call"
