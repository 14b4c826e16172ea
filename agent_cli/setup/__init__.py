"""The repository's environment: its dependencies installed once, in an image the sandbox runs from.

detect.py       what to run (configured `setup`, or detected per ecosystem), and why
network.py      the host's proxy, index settings and CA bundle, for the setup container only
confine.py      what the setup container may do: capabilities, limits, the addresses it cannot reach
environment.py  build or reuse `actsmith-env:<hash>`; prune old ones
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_cli.events import EventStream, SetupDone, SetupProgress
from agent_cli.setup.detect import SetupPlan, plan_setup
from agent_cli.setup.environment import Environment, ensure_environment, prune_environments
from agent_cli.setup.network import HostNetwork, host_network

if TYPE_CHECKING:
    import docker

    from agent_cli.sandbox import SandboxRequest
    from agent_cli.settings import Settings

__all__ = [
    "Environment",
    "HostNetwork",
    "SetupPlan",
    "ensure_environment",
    "host_network",
    "plan_setup",
    "prepare_environment",
    "prune_environments",
]


def prepare_environment(
    client: docker.DockerClient,
    sandbox_image: str,
    settings: Settings,
    request: SandboxRequest,
    events: EventStream,
    *,
    rebuild: bool = False,
) -> tuple[str, tuple[str, ...]]:
    """The image a session's sandbox starts from, and the folders to layer over its mount: the
    sandbox image itself when setup has nothing to do."""
    from agent_cli.sandbox import SandboxLimits

    plan = plan_setup(settings.setup, request.root)
    if plan.empty:
        events.emit(SetupDone([], plan.reason, sandbox_image, reused=True, seconds=0.0))
        return sandbox_image, ()
    events.notice(f"setup: {' && '.join(plan.commands)} ({plan.reason})")
    network = host_network(credentials=settings.setup_credentials)
    if network.withheld:
        events.notice(
            f"setup: credentials in {', '.join(network.withheld)} are not passed to setup "
            "(allow with --setup-credentials)",
            "warning",
        )
    environment = ensure_environment(
        client,
        sandbox_image,
        plan,
        root=request.root,
        repo=request.repo,
        snapshot=request.snapshot,
        network=network,
        limits=SandboxLimits.from_settings(settings),
        timeout=settings.setup_timeout,
        say=events.notice,
        progress=lambda step, of, command, line: events.emit(SetupProgress(step, of, command, line)),
        rebuild=rebuild,
        before_build=request.ready,
    )
    if not environment.built:
        events.notice(
            f"setup: reusing {environment.image} (same repository, commands, manifests and sandbox image)"
        )
    events.emit(
        SetupDone(
            commands=list(plan.commands),
            reason=plan.reason,
            image=environment.image,
            reused=not environment.built,
            seconds=round(environment.seconds, 3),
            log=str(environment.log) if environment.log else None,
        )
    )
    return environment.image, environment.layers
