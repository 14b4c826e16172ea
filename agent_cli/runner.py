"""Run one task end to end: settings -> workspace -> model -> sandbox -> agent loop -> result.

This is the library entry point that the CLI, batch jobs and the CI bot share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from agent_cli.agent import Agent, AgentConfig, Observer, RunResult, SilentObserver
from agent_cli.errors import ActsmithError, EnvironmentProblem, UsageError
from agent_cli.model import check_credentials, make_model
from agent_cli.sandbox.docker_sandbox import DockerSandbox, SandboxLimits, docker_client
from agent_cli.settings import Settings
from agent_cli.trajectory import Trajectory
from agent_cli.workspace import Workspace


@dataclass
class TaskOutcome:
    result: RunResult
    trajectory_path: Path
    diff_stat: str
    exit_code: int
    wall_s: float  # the whole run: set-up, sandbox start, the loop and clean-up


def agent_config(settings: Settings) -> AgentConfig:
    return AgentConfig(
        max_steps=settings.max_steps,
        max_cost=settings.max_cost,
        max_time=settings.max_time,
        action_timeout=settings.action_timeout,
        max_output_chars=settings.max_output_chars,
        network=settings.network,
    )


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        memory=settings.memory,
        cpus=settings.cpus,
        pids=settings.pids,
        network=settings.network,
        max_output_chars=settings.max_output_chars,
    )


def resolve_image(client, settings: Settings, log=None) -> str:
    """The image to run: the one the user named, or ours built from sandboxes/ (cached by recipe hash)."""
    if settings.image:
        from docker.errors import ImageNotFound

        try:
            client.images.get(settings.image)
        except ImageNotFound:
            raise EnvironmentProblem(
                f"image {settings.image} is not present locally: pull or build it, or drop --image"
            ) from None
        return settings.image
    from agent_cli.sandbox.image import ensure_image, print_to_stderr

    return ensure_image(client, base=settings.base_image, log=log or print_to_stderr)


def run_task(
    task: str,
    workspace: Workspace,
    settings: Settings,
    observer: Observer | None = None,
    log=None,
) -> TaskOutcome:
    started = time.monotonic()
    model = make_model(settings.model, api_base=settings.api_base)
    check_credentials(settings.model, api_base=settings.api_base)
    client = docker_client()
    image = resolve_image(client, settings, log)

    trajectory = open_trajectory(settings.trajectory or workspace.new_run_dir(task) / "trajectory.jsonl")
    before = workspace.snapshot()
    trajectory.event("start", repo=str(workspace.root), snapshot=before, settings=settings)
    sandbox = DockerSandbox(client, image, workspace.root, sandbox_limits(settings))
    try:
        sandbox.start()
        agent = Agent(model, sandbox, trajectory, agent_config(settings), observer or SilentObserver())
        result = agent.run(task, repo_summary=workspace.summary())
    except KeyboardInterrupt:
        trajectory.event("interrupted")
        raise
    except ActsmithError as error:
        trajectory.event("error", message=str(error), exit_code=error.exit_code)
        raise
    finally:
        sandbox.close()
        trajectory.close()
    after = workspace.snapshot()
    diff_stat = workspace.diff_stat(before, after)
    return TaskOutcome(result, trajectory.path, diff_stat, result.exit_code, time.monotonic() - started)


def open_trajectory(path: Path) -> Trajectory:
    try:
        return Trajectory(path)
    except OSError as error:
        raise UsageError(f"cannot write the trajectory at {path}: {error.strerror or error}") from None
