"""Run one task end to end: settings -> workspace -> model -> sandbox -> agent loop -> result.

This is the library entry point that the CLI, batch jobs and the CI bot share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from agent_cli.agent import Agent, AgentConfig, Observer, RunResult, SilentObserver
from agent_cli.checkpoints import RunCheckpoints
from agent_cli.errors import EXIT_OK, ActsmithError, EnvironmentProblem, UsageError
from agent_cli.ledger import Ledger
from agent_cli.model import check_credentials, make_model
from agent_cli.repomap import RepoMap, repository_context
from agent_cli.sandbox.docker_sandbox import DockerSandbox, SandboxLimits, docker_client
from agent_cli.sandbox.image import print_to_stderr
from agent_cli.settings import Settings
from agent_cli.templates import render
from agent_cli.testing import TestsSummary, build_test_runner
from agent_cli.trajectory import Trajectory
from agent_cli.workspace import Workspace


@dataclass
class TaskOutcome:
    result: RunResult
    trajectory_path: Path
    diff_stat: str
    exit_code: int
    wall_s: float  # the whole run: set-up, sandbox start, the loop and clean-up
    run_id: str = ""
    branch: str | None = None  # --worktree: the branch holding the run's commit
    commit: str | None = None  # the commit made by --commit or --worktree
    not_committed: str | None = None  # why --commit left the changes uncommitted
    tests: TestsSummary | None = None  # the test outcome against the baseline


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
    from agent_cli.sandbox.image import ensure_image

    return ensure_image(client, base=settings.base_image, log=log or print_to_stderr)


def run_task(
    task: str,
    workspace: Workspace,
    settings: Settings,
    observer: Observer | None = None,
    log=None,
) -> TaskOutcome:
    started = time.monotonic()
    limits = sandbox_limits(settings)  # invalid --memory/--cpus/--pids fail before anything starts
    model = make_model(settings.model, api_base=settings.api_base)
    check_credentials(settings.model, api_base=settings.api_base)
    if settings.commit or settings.worktree:
        workspace.check_identity()
    client = docker_client()
    image = resolve_image(client, settings, log)

    run_id = workspace.new_run_id(task)
    trajectory = open_trajectory(settings.trajectory or workspace.run_dir(run_id) / "trajectory.jsonl")
    target, branch = workspace.create_worktree(task) if settings.worktree else (workspace, None)
    checkpoints = RunCheckpoints(target.root, target.git_dir, run_id, task, branch=branch)
    ledger = Ledger(checkpoints)
    base = ledger.start()
    trajectory.event(
        "start",
        repo=str(workspace.root),
        workdir=str(target.root),
        branch=branch,
        checkpoint=base.commit,
        run_id=run_id,
        settings=settings,
    )
    status = "interrupted"
    sandbox = DockerSandbox(client, image, target.root, limits)
    tests = None
    repo_map = RepoMap(target.root) if settings.map_tokens > 0 else None  # kept to refresh after edits
    try:
        say = log or print_to_stderr
        tests = build_test_runner(settings, target.root, base.tree, sandbox, model, trajectory, task, say)
        sandbox.start()
        tests.start_baseline()  # on the pre-run tree, beside the first model call
        agent = Agent(
            model,
            sandbox,
            trajectory,
            agent_config(settings),
            observer or SilentObserver(),
            ledger=ledger,
            tests=tests,
            repo_map=repo_map,
        )
        context = repository_context(target, task, settings.map_tokens, say, repo_map)
        result = agent.run(task, repo_summary=context)
        status = result.status
    except ActsmithError as error:
        status = "error"
        trajectory.event("error", message=str(error), exit_code=error.exit_code)
        raise
    except KeyboardInterrupt:
        trajectory.event("interrupted")
        raise
    finally:
        sandbox.close()
        if tests is not None:
            tests.close()
        if repo_map is not None:
            repo_map.close()
        final = checkpoints.close(status)
        trajectory.close()
    outcome = TaskOutcome(
        result,
        trajectory.path,
        target.diff_stat(base.tree, final.tree),
        result.exit_code,
        0.0,
        run_id,
        branch,
        tests=tests.summary() if tests else None,
    )
    if settings.worktree or settings.commit:
        _commit(outcome, target, ledger, task)
    if settings.worktree:
        target.remove_worktree(workspace)
    outcome.wall_s = time.monotonic() - started
    return outcome


def _commit(outcome: TaskOutcome, target: Workspace, ledger: Ledger, task: str) -> None:
    """--worktree always commits on its own branch; --commit touches the user's branch only when the
    run finished cleanly."""
    result = outcome.result
    if outcome.branch is None and result.exit_code != EXIT_OK:
        outcome.not_committed = f"the run ended with {result.status}; review the changes, or `actsmith undo`"
        return
    message = render(
        "commit_message",
        task=" ".join(task.split()),
        result=result,
        ledger=ledger.view(),
        run_id=outcome.run_id,
    )
    base, final = ledger.base_tree, ledger.checkpoints.history[-1].tree
    outcome.commit = target.commit_run(base, final, message.strip() + "\n")


def open_trajectory(path: Path) -> Trajectory:
    try:
        return Trajectory(path)
    except OSError as error:
        raise UsageError(f"cannot write the trajectory at {path}: {error.strerror or error}") from None
