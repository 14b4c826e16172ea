"""The repository's environment: its dependencies installed once, in an image the sandbox runs from.

detect.py       what to run (configured `setup`, or detected per ecosystem), and why; python.py
                chooses a Python project's requirements by role, testenvs.py reads its tox, nox,
                hatch or pdm test environment, inputs.py the files setup reads
network.py      the host's proxy, index settings and CA bundle, for the setup container only
confine.py      what the setup container may do: capabilities, limits, the addresses it cannot reach
environment.py  build or reuse `actsmith-env:<hash>`, remember failed builds; prune old ones
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.events import EventStream, SetupDone, SetupProgress
from agent_cli.setup.detect import SetupPlan, plan_setup
from agent_cli.setup.environment import (
    BuildContext,
    Environment,
    SetupFailed,
    ensure_environment,
    prune_environments,
)
from agent_cli.setup.network import HostNetwork, host_network

if TYPE_CHECKING:
    import docker

    from agent_cli.sandbox import SandboxRequest
    from agent_cli.settings import Settings

__all__ = [
    "Environment",
    "HostNetwork",
    "Prepared",
    "SetupPlan",
    "ensure_environment",
    "host_network",
    "plan_for",
    "plan_setup",
    "prepare_environment",
    "prune_environments",
]


@dataclass(frozen=True)
class Prepared:
    """The image a sandbox starts from and the folders layered over its mount; `problem` says why
    it is the plain sandbox image although setup had work to do (no detected plan could install)."""

    image: str
    layers: tuple[str, ...] = ()
    problem: str | None = None


def plan_for(settings: Settings, root: Path) -> SetupPlan:
    """The setup plan for a repository with these settings; the test command (configured, else
    detected) decides whether a Python project's Node tooling is needed."""
    from agent_cli.testing.detect import detect_test_command

    test_command = settings.test_cmd
    if test_command is None and (root / "package.json").is_file():  # the scan matters only then
        detected = detect_test_command(root)
        test_command = detected.command if detected else None
    return plan_setup(settings.setup, root, test_command)


def prepare_environment(
    client: docker.DockerClient,
    sandbox_image: str,
    settings: Settings,
    request: SandboxRequest,
    events: EventStream,
    *,
    rebuild: bool = False,
) -> Prepared:
    """The environment a session's sandbox starts from: the sandbox image itself when setup has
    nothing to do. A detected plan that fails falls back to narrower ones, then to the plain sandbox
    (never an error); a configured one that fails is the user's to fix (EnvironmentProblem)."""
    from agent_cli.sandbox import SandboxLimits

    plan = plan_for(settings, request.root)
    choices = [choice.record() for choice in plan.choices]
    if plan.empty:
        events.emit(
            SetupDone([], plan.reason, sandbox_image, True, 0.0, detected=plan.detected, choices=choices)
        )
        return Prepared(sandbox_image)
    network = host_network(credentials=settings.setup_credentials)
    if network.withheld:
        events.notice(
            f"setup: credentials in {', '.join(network.withheld)} are not passed to setup "
            "(allow with --setup-credentials)",
            "warning",
        )
    context = BuildContext(
        client,
        sandbox_image,
        request.root,
        request.repo,
        request.snapshot,
        network,
        SandboxLimits.from_settings(settings),
        settings.setup_timeout,
        settings.setup_idle_timeout,
        say=events.notice,
        progress=lambda step, of, command, line: events.emit(SetupProgress(step, of, command, line)),
        cancel=request.cancel,
        before_build=request.ready,
    )
    failed: list[dict[str, object]] = []
    for attempt in (plan, *plan.fallbacks):
        fallback = attempt.reason.rpartition("; fallback: ")[2] if attempt is not plan else None
        events.notice(
            f"setup: {' && '.join(attempt.commands)}" + (f" (fallback: {fallback})" if fallback else "")
        )
        try:
            environment = ensure_environment(
                context, attempt, rebuild=rebuild or settings.rebuild, remember=plan.detected
            )
        except SetupFailed as failure:
            if not plan.detected:
                raise
            failed.append({**failure.record(), "remembered": failure.remembered})
            events.notice(_failure_line(failure), "warning")
            continue
        if not environment.built:
            events.notice(
                f"setup: reusing {environment.image} (same repository, commands, manifests and sandbox image)"
            )
        events.emit(
            SetupDone(
                list(attempt.commands),
                attempt.reason,
                environment.image,
                not environment.built,
                round(environment.seconds, 3),
                str(environment.log) if environment.log else None,
                detected=plan.detected,
                choices=choices,
                fallback=fallback,
                failed=failed,
            )
        )
        return Prepared(environment.image, environment.layers)
    problem = "no detected setup could install the repository's dependencies"
    events.notice(
        f"setup: {problem}: the run goes on in the plain sandbox, and its tests do not gate it "
        "(set setup, or --rebuild to try again)",
        "warning",
    )
    events.emit(
        SetupDone([], plan.reason, sandbox_image, False, 0.0, detected=True, choices=choices, failed=failed)
    )
    return Prepared(sandbox_image, (), problem)


def _failure_line(failure: SetupFailed) -> str:
    log = f" (log: {failure.log})" if failure.log else ""
    if failure.remembered:
        return f"setup: `{failure.command}` failed before for these inputs{log}: not tried again (--rebuild retries)"
    return f"setup: `{failure.command}` {failure.detail}{log}"
