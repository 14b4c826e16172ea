"""The `actsmith` command. It parses options and renders; the work happens in the library.

Heavy modules (litellm, docker, git, the agent) are imported inside commands so `--help` stays fast.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec

import typer

from agent_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, ActsmithError

app = typer.Typer(
    name="actsmith",
    help="A coding agent: a model writes Python actions that run in a Docker sandbox on your repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Build or clean the Docker sandbox.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
P = ParamSpec("P")


def reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Turn our errors into one line and the exit code DESIGN.md assigns, and Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except ActsmithError as error:
            _print_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except Exception as error:
            if not _is_environment_error(error):
                raise
            _print_error(f"{type(error).__name__}: {_first_line(error)}")
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]interrupted: the sandbox was removed[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _is_environment_error(error: Exception) -> bool:
    """Failures of Docker or git that reached us unexpected: still one line and exit 2, not a traceback."""
    return type(error).__module__.split(".")[0] in {"docker", "git", "requests", "urllib3"}


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _print_error(message: str) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def _progress(line: str) -> None:
    """Progress of slow set-up (image builds): dim, on stderr, printed as plain text."""
    _console(stderr=True).print(line, style="dim", markup=False, highlight=False)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _open_workspace(repo: Path | None):
    from agent_cli.workspace import Workspace

    return Workspace.open(repo or Path.cwd())


@app.command()
@reports_errors
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do, in plain words.")],
    repo: Annotated[
        Path | None, typer.Option(help="Repository to work in (default: the current one).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Any litellm model name, or replay:PATH for a scripted model.")
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (exit 3).")] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Stop once the run cost this many USD (exit 3).")
    ] = None,
    max_time: Annotated[float | None, typer.Option(help="Stop after this many seconds of wall time.")] = None,
    action_timeout: Annotated[
        float | None, typer.Option(help="Seconds before an action is interrupted.")
    ] = None,
    max_output: Annotated[
        int | None, typer.Option("--max-output", help="Characters of action output shown to the model.")
    ] = None,
    trajectory: Annotated[Path | None, typer.Option(help="Write the JSON Lines trajectory here.")] = None,
    image: Annotated[
        str | None, typer.Option(help="Use this sandbox image instead of building ours.")
    ] = None,
    network: Annotated[
        bool | None, typer.Option("--network/--no-network", help="Give the sandbox network access.")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit of the sandbox, such as 512m or 8g (default 4g).")
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs the sandbox may use (default 2).")] = None,
    pids: Annotated[
        int | None, typer.Option(help="Processes the sandbox may run at once (default 1024).")
    ] = None,
    commit: Annotated[
        bool | None,
        typer.Option(
            "--commit/--no-commit", help="Commit the run's changes (only its files) when it finishes."
        ),
    ] = None,
    worktree: Annotated[
        bool | None,
        typer.Option(
            "--worktree/--in-place",
            help="Work in a new git worktree on branch actsmith/<slug> and commit there; your checkout is untouched.",
        ),
    ] = None,
    test_cmd: Annotated[
        str | None,
        typer.Option(help="The test command (default: detected: pytest, unittest, npm, go, cargo, make)."),
    ] = None,
    tests: Annotated[
        bool | None,
        typer.Option(
            "--tests/--no-tests", help="Run a baseline and check the tests when the model finishes."
        ),
    ] = None,
    max_test_rounds: Annotated[
        int | None,
        typer.Option(help="Test reports sent back on finish() before the run ends failing (exit 1)."),
    ] = None,
    test_timeout: Annotated[float | None, typer.Option(help="Seconds before a test run is stopped.")] = None,
    summary_model: Annotated[
        str | None, typer.Option(help="Model that condenses long test output (default: --model).")
    ] = None,
    map_tokens: Annotated[
        int | None,
        typer.Option(help="Token budget of the repo map in the first prompt (default 1024; 0: no map)."),
    ] = None,
) -> None:
    """Solve TASK in the repository, then print what changed."""
    from agent_cli.runner import run_task
    from agent_cli.settings import load_settings
    from agent_cli.ui import TerminalObserver, render_summary

    workspace = _open_workspace(repo)
    flags = {
        "model": model,
        "api_base": api_base,
        "max_steps": max_steps,
        "max_cost": max_cost,
        "max_time": max_time,
        "action_timeout": action_timeout,
        "max_output_chars": max_output,
        "trajectory": trajectory.resolve() if trajectory else None,
        "image": image,
        "network": network,
        "memory": memory,
        "cpus": cpus,
        "pids": pids,
        "commit": commit,
        "worktree": worktree,
        "test_cmd": test_cmd,
        "tests": tests,
        "max_test_rounds": max_test_rounds,
        "test_timeout": test_timeout,
        "summary_model": summary_model,
        "map_tokens": map_tokens,
    }
    settings = load_settings(workspace.root, flags)
    console = _console()
    observer = TerminalObserver(console)
    try:
        outcome = run_task(task, workspace, settings, observer, log=_progress)
    finally:
        observer.close()
    render_summary(console, outcome)
    raise typer.Exit(outcome.exit_code)


@app.command()
@reports_errors
def undo(
    step: Annotated[
        int | None, typer.Option(help="Restore the state after this step of the run instead of before it.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Which run (default: the latest).")] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository (default: the current one).")] = None,
) -> None:
    """Restore the working tree to how it was before the last run (or after one of its steps)."""
    from agent_cli.checkpoints import undo as undo_run

    workspace = _open_workspace(repo)
    undone = undo_run(workspace.root, workspace.git_dir, run_id, step)
    where = "before it began" if undone.step == 0 else f"after step {undone.step}"
    _console().print(
        f"restored {len(undone.paths)} file(s) to run {undone.run.run_id} {where}; "
        f"`actsmith undo` again brings back what was there"
    )


@app.command()
@reports_errors
def runs(
    repo: Annotated[Path | None, typer.Option(help="Repository (default: the current one).")] = None,
) -> None:
    """List past runs of this repository, newest first."""
    from agent_cli.checkpoints import list_runs
    from agent_cli.ui import render_runs

    workspace = _open_workspace(repo)
    render_runs(_console(), list_runs(workspace.root))


@app.command()
@reports_errors
def doctor(
    repo: Annotated[Path | None, typer.Option(help="Repository whose settings to check.")] = None,
    model: Annotated[str | None, typer.Option(help="Check this model instead of the configured one.")] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")] = None,
) -> None:
    """Check Docker, the sandbox image, the model configuration and leftover containers (exit 0 if all good)."""
    from agent_cli.doctor import exit_code, run_checks
    from agent_cli.errors import UsageError

    try:
        root = _open_workspace(repo).root
    except UsageError:
        if repo is not None:
            raise
        root = None  # outside a repository: the user's config and environment only
    checks = run_checks(root, {"model": model, "api_base": api_base})
    console = _console()
    for check in checks:
        console.print(check.line(), style=None if check.ok else "bold red", markup=False, soft_wrap=True)
    raise typer.Exit(exit_code(checks))


@app.command("map")
@reports_errors
def map_command(
    path: Annotated[
        Path | None, typer.Argument(help="The repository, or any path inside it (default: the current one).")
    ] = None,
    tokens: Annotated[int, typer.Option(help="Token budget (estimated as characters / 4).")] = 1024,
    focus: Annotated[
        list[str] | None,
        typer.Option(help="A file or identifier to rank first (repeatable), as a task would mention it."),
    ] = None,
) -> None:
    """Print the repo map: the most central definitions of the repository, by file, within a budget."""
    from agent_cli.repomap import RepoMap, focus_from_text

    workspace = _open_workspace(path)
    files, names = focus_from_text(" ".join(focus or []))
    with RepoMap(workspace.root) as mapper:
        text = mapper.render(tokens, files, names)
    if not text:
        _progress("nothing to map: no source file in a supported language (or --tokens 0)")
    print(text, end="")


@sandbox_app.command("build")
@reports_errors
def sandbox_build(
    base: Annotated[str | None, typer.Option(help="Base image (default: python:3.12-slim).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Build even if an image for this recipe exists.")] = False,
) -> None:
    """Build the sandbox image (pull or build its base offline from Debian packages when needed)."""
    from agent_cli.sandbox.docker_sandbox import docker_client
    from agent_cli.sandbox.image import ensure_image
    from agent_cli.settings import load_settings

    settings = load_settings(None, {"base_image": base})
    tag = ensure_image(docker_client(), base=settings.base_image, rebuild=rebuild, log=_progress)
    _console().print(tag)


@sandbox_app.command("clean")
@reports_errors
def sandbox_clean(
    everything: Annotated[
        bool, typer.Option("--all", help="Also remove containers of runs that are still going.")
    ] = False,
) -> None:
    """Remove sandbox containers left behind by runs that were killed."""
    from agent_cli.sandbox.docker_sandbox import docker_client, sweep_leftovers

    removed = sweep_leftovers(docker_client(), everything=everything)
    _console().print(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM gets the same cleanup path as Ctrl-C: containers are removed before we exit.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app()
