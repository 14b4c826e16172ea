"""The test-runner agent: find the test command, run a baseline, report failures, gate finish().

detect.py finds the command; execute.py (with incontainer.py) runs it in the sandbox; parsers.py reads
the results; compare.py sets them against the baseline; gate.py holds it together behind the small
`TestRunner` seam the agent loop uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.testing.detect import TestCommand, configured_command, detect_test_command
from agent_cli.testing.gate import (
    SuiteRunner,
    Summariser,
    TestRequest,
    TestRunner,
    TestsSummary,
    TestVerdict,
    split_test_request,
)

if TYPE_CHECKING:
    from agent_cli.model import Model
    from agent_cli.sandbox.docker_sandbox import DockerSandbox
    from agent_cli.settings import Settings
    from agent_cli.trajectory import Trajectory

__all__ = [
    "SuiteRunner",
    "TestCommand",
    "TestRequest",
    "TestRunner",
    "TestVerdict",
    "TestsSummary",
    "build_test_runner",
    "split_test_request",
]


def build_test_runner(
    settings: Settings,
    root: Path,
    base_tree: str,
    sandbox: DockerSandbox,
    model: Model,
    trajectory: Trajectory,
    task: str,
    log: Callable[[str], None],
) -> SuiteRunner:
    """The runner for one task: the command chosen (and said), a summary model, the pre-run tree."""
    from agent_cli.model import check_credentials, make_model
    from agent_cli.testing.execute import ContainerExec, snapshot_tar

    command = configured_command(settings.test_cmd) if settings.test_cmd else detect_test_command(root)
    summary_model = model
    if settings.summary_model:
        check_credentials(settings.summary_model, api_base=settings.api_base)
        summary_model = make_model(settings.summary_model, api_base=settings.api_base)
    runner = SuiteRunner(
        command,
        ContainerExec(sandbox),
        task=task,
        gate_on=settings.tests,
        max_rounds=settings.max_test_rounds,
        timeout=settings.test_timeout,
        snapshot=lambda: snapshot_tar(root, base_tree),
        summariser=Summariser(summary_model, trajectory),
        trajectory=trajectory,
        note=log,
    )
    log(_announcement(command, settings.tests))
    trajectory.event(
        "tests",
        command=command.command if command else None,
        runner=command.kind if command else None,
        reason=command.reason if command else "no test command found",
        gate=bool(command and settings.tests),
        max_rounds=settings.max_test_rounds,
        timeout=settings.test_timeout,
    )
    return runner


def _announcement(command: TestCommand | None, gate: bool) -> str:
    if command is None:
        return "tests: no test command found (set test_cmd or --test-cmd); finish() is not gated"
    if not gate:
        return f"tests: `{command.command}` ({command.reason}); no baseline or gate (--no-tests)"
    return f"tests: `{command.command}` ({command.reason}); baseline running beside the first model call"
