"""The `actsmith` command. It parses options and renders; the work happens in the library.

Heavy modules (litellm, docker, git, the agent) are imported inside commands so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, ParamSpec, cast

import typer

from agent_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, ActsmithError
from agent_cli.settings import FIELDS, flag_name, spec_of, value_type

if TYPE_CHECKING:
    from rich.console import Console

    from agent_cli.cancel import CancelToken
    from agent_cli.events import EventStream
    from agent_cli.trajectory import Redactor
    from agent_cli.workspace import Workspace

app = typer.Typer(
    name="actsmith",
    help="A coding agent: a model writes Python actions that run in a Docker sandbox on your repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(
    help="Build the Docker sandbox, prepare a repository's environment, clean up.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")
batch_app = typer.Typer(
    help="Run many tasks over many repositories, in parallel sandboxes or on a Ray cluster.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")
candidates_app = typer.Typer(
    help="Look at the attempts of a run with --candidates, or take another one.", no_args_is_help=True
)
app.add_typer(candidates_app, name="candidates")
P = ParamSpec("P")
BATCH_LOG_WIDTH = 160


def reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Turn our errors into one line and the exit code they carry, and Ctrl-C into 130."""

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


def with_settings(command: Callable[..., None] | None = None, *, only: tuple[str, ...] | None = None) -> Any:
    """Give a command one flag per setting (declared once, in settings.py), or those named in `only`;
    it receives the flags the user passed as `flags`, for load_settings to merge over the rest."""
    if command is None:
        return functools.partial(with_settings, only=only)
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "flags"]
    chosen = [name for name, item in FIELDS.items() if (name in only if only else spec_of(item).cli)]
    added = [parameter for name in chosen for parameter in _setting_parameters(name)]
    negatives = {f"no_{name}": name for name in chosen if spec_of(FIELDS[name]).negative}

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        flags = {name: kwargs.pop(name) for name in chosen}
        for negative, name in negatives.items():
            if kwargs.pop(negative):
                flags[name] = []
            elif not flags[name]:
                flags[name] = None  # an empty repeatable option: not given
        command(**kwargs, flags=flags)

    parameters = own + added
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper


def _setting_parameters(name: str) -> list[inspect.Parameter]:
    item = FIELDS[name]
    spec, kind = spec_of(item), value_type(item)
    option = spec.flag or flag_name(item)
    if kind is bool and "/" not in option:
        option = f"{option}/--no-{option[2:]}"
    default = item.default
    shown = ("on" if default else "off") if isinstance(default, bool) else default
    help_text = spec.help + (f" (default: {shown})" if shown not in (None, "") else "")
    optional: Any = list[str] | None if kind is tuple else kind | None
    annotation = Annotated[optional, typer.Option(option, help=help_text, show_default=False)]
    parameters = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    ]
    if spec.negative:
        flag, text = spec.negative
        negative = Annotated[bool, typer.Option(flag, help=text)]
        parameters.append(
            inspect.Parameter(
                f"no_{name}", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=negative
            )
        )
    return parameters


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


def _console(stderr: bool = False, redactor: Redactor | None = None) -> Console:
    from rich.console import Console

    if redactor is None:
        return Console(stderr=stderr, highlight=False)
    from agent_cli.trajectory import RedactedStream

    stream = RedactedStream(sys.stderr if stderr else sys.stdout, redactor)
    return Console(file=cast("IO[str]", stream), highlight=False)  # rich needs write, flush, isatty


def _open_workspace(repo: Path | None) -> Workspace:
    from agent_cli.workspace import Workspace

    return Workspace.open(repo or Path.cwd())


@contextlib.contextmanager
def interrupts_cancel(token: CancelToken) -> Iterator[None]:
    """While a session runs, Ctrl-C and SIGTERM trip its token (the action is interrupted, the model
    call abandoned, the sandbox removed as the session closes). When nothing watches the token (set-up,
    an image build) or on a second Ctrl-C, they interrupt at once, as usual; so does SIGHUP (the
    terminal is gone: there is nobody to show a summary to)."""

    def handler(signum: int, frame: object) -> None:
        if signum != signal.SIGHUP and token.watched and not token.cancelled:
            token.cancel("interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)")
            return
        raise KeyboardInterrupt

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in watched}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _event_stream(
    json_output: bool, redacted: bool = False, candidates: bool = False
) -> tuple[EventStream, Callable[[], None]]:
    """The consumers a terminal command shows its session through: the rich view (`redacted`, as
    the trajectory is: for a log others read; parallel rows for candidates), or JSON lines (always
    redacted)."""
    from agent_cli.events import EventStream
    from agent_cli.trajectory import Redactor, stdout_json

    events = EventStream()
    if json_output:
        sink = stdout_json()
        events.subscribe(sink)
        return events, sink.close
    redactor = Redactor() if redacted else None
    consoles = (_console(redactor=redactor), _console(stderr=True, redactor=redactor))
    view: Any
    if candidates:
        from agent_cli.candidates.render import CandidatesView

        view = CandidatesView(*consoles)
    else:
        from agent_cli.ui import TerminalView

        view = TerminalView(*consoles)
    events.subscribe(view)
    return events, view.close


@app.command()
@reports_errors
@with_settings
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do, in plain words.")],
    repo: Annotated[
        Path | None, typer.Option(help="Repository to work in (default: the current one).")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the session's events as JSON lines on stdout, nothing else.")
    ] = False,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan", help="Only plan: the repository is read-only and the plan is printed; nothing changes."
        ),
    ] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """Solve TASK in the repository, then print what changed."""
    from agent_cli.candidates import wants_candidates
    from agent_cli.candidates.opening import open_session
    from agent_cli.session import require_task
    from agent_cli.settings import load_settings

    require_task(task)
    workspace = _open_workspace(repo)
    if flags.get("trajectory") is not None:
        flags["trajectory"] = Path(os.path.abspath(flags["trajectory"]))
    settings = load_settings(workspace.root, flags)
    several = wants_candidates(settings) and not plan
    events, close_view = _event_stream(json_output, candidates=several)
    session = open_session(settings, workspace, label=task, events=events, task=task, plan=plan)
    try:
        with interrupts_cancel(session.cancel), session:
            session.run(task)
    finally:
        close_view()
    outcome = session.outcome
    assert outcome is not None
    if plan and outcome.summary and not json_output:
        _print_plan(outcome.summary)
    raise typer.Exit(outcome.exit_code)


def _print_plan(plan: str) -> None:
    """The plan as Markdown: rendered on a terminal, verbatim when piped (to a file or an issue)."""
    if sys.stdout.isatty():
        from rich.markdown import Markdown

        _console().print(Markdown(plan))
    else:
        sys.stdout.write(plan.rstrip("\n") + "\n")


@app.command()
@reports_errors
@with_settings
def chat(
    repo: Annotated[
        Path | None, typer.Option(help="Repository to work in (default: the current one).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Go on with the last chat of this repository, in a new sandbox.")
    ] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """Talk to the agent in this repository: each message is a turn, in one sandbox. /help lists commands."""
    from dataclasses import replace

    from agent_cli.candidates import wants_candidates
    from agent_cli.chat import Chat, Saved
    from agent_cli.chat.loop import chat_loop
    from agent_cli.errors import UsageError
    from agent_cli.events import EventStream
    from agent_cli.ignored import summary_line
    from agent_cli.session import Session
    from agent_cli.settings import load_settings
    from agent_cli.ui import TerminalView

    workspace = _open_workspace(repo)
    settings = load_settings(workspace.root, flags)
    if wants_candidates(settings):  # a repository's config for `run` must not stop a chat
        _progress(
            "chat works turn by turn in one sandbox: candidates and designed tests are for run, batch and ci"
        )
        settings = replace(settings, candidates=1, design_tests=False)
    saved = Saved.load(workspace) if resume else None
    if resume and saved is None:
        raise UsageError("there is no chat to resume in this repository: start one with `actsmith chat`")
    if saved is not None and not flags.get("trajectory"):
        settings = replace(settings, trajectory=Path(saved.trajectory))  # one file for the whole chat
    console = _console()
    view = TerminalView(console, _console(stderr=True), summary=False)
    session = Session(settings, workspace, label="chat", events=EventStream([view]))
    try:
        with interrupts_cancel(session.cancel), session:
            conversation = Chat(session, console)
            if saved is not None:
                conversation.resume(saved)
            chat_loop(conversation, console)
    finally:
        view.close()
    end = session.outcome
    if end is not None and end.files_changed:
        console.print(
            f"{len(end.files_changed)} file(s) changed in this chat; `{end.undo}` takes them all back",
            style="dim",
        )
    if end is not None and end.ignored_changed:
        console.print(summary_line(end.ignored_changed), style="yellow", markup=False, soft_wrap=True)


@app.command()
@reports_errors
@with_settings(
    # A CI run always works in its own worktree and commits there: those two are not for the user to turn off.
    only=tuple(
        name for name, item in FIELDS.items() if spec_of(item).cli and name not in ("worktree", "commit")
    )
)
def ci(
    label: Annotated[str, typer.Option(help="The issue label that starts a run.")] = "actsmith",
    allow: Annotated[
        list[str] | None,
        typer.Option(
            help="People who may start a run without write access (repeatable, or comma separated): "
            "LOGIN:ID (both must match), a numeric user ID, or a LOGIN (whoever holds it)."
        ),
    ] = None,
    draft: Annotated[
        bool,
        typer.Option(
            "--draft/--ready", help="Open the pull request as a draft (always, unless the run succeeded)."
        ),
    ] = True,
    allow_workflow_changes: Annotated[
        bool,
        typer.Option(
            "--allow-workflow-changes",
            help="Push changes to .github/workflows too (by default they are taken out of the commit).",
        ),
    ] = False,
    setup_on_forks: Annotated[
        bool,
        typer.Option(
            "--setup-on-forks", help="Run environment setup for a pull request from a fork (off by default)."
        ),
    ] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """In a GitHub Actions job: turn the event (a labeled issue, an /actsmith comment, a dispatch) into a pushed branch, a pull request and one comment; a review asking /actsmith into one more commit on its pull request and a reply."""
    from agent_cli.cancel import CancelToken
    from agent_cli.ci import CiOptions, run_ci
    from agent_cli.ci.actions_env import workflow_commands_stopped
    from agent_cli.ci.trigger import parse_allow

    if flags.get("trajectory") is not None:
        flags["trajectory"] = Path(os.path.abspath(flags["trajectory"]))
    options = CiOptions(label, parse_allow(allow or []), draft, flags, allow_workflow_changes, setup_on_forks)
    token = CancelToken()
    with workflow_commands_stopped(dict(os.environ)):  # all the run prints, the model's words included
        # The job's log is public on a public repository: what the run prints goes through the
        # redactor (the job's GITHUB_TOKEN included), as the trajectory does.
        events, close_view = _event_stream(json_output=False, redacted=True)
        try:
            with interrupts_cancel(token):
                result = run_ci(options, dict(os.environ), events, token)
        finally:
            close_view()
    if result.problem:
        _print_error(result.problem)
    else:
        _console().print(f"actsmith ci: {result.message}", markup=False)
    raise typer.Exit(result.exit_code)


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
    from agent_cli.ignored import ignored_undo_lines

    workspace = _open_workspace(repo)
    undone = undo_run(workspace, run_id, step)
    assert undone.run is not None
    where = "before it began" if undone.step == 0 else f"after step {undone.step}"
    console = _console()
    console.print(
        f"restored {len(undone.paths)} file(s) to run {undone.run.run_id} {where}; "
        f"`actsmith undo` again brings back what was there"
    )
    for line in ignored_undo_lines(undone.ignored):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@candidates_app.command("show")
@reports_errors
def candidates_show(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN", help="The run (its id, as `actsmith runs` lists it).")
    ],
    number: Annotated[
        int | None, typer.Argument(metavar="[N]", help="A candidate: print its change as a diff.")
    ] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository (default: the current one).")] = None,
) -> None:
    """The candidates of RUN (how each did, which one was applied), or candidate N's change."""
    from agent_cli.candidates.commands import candidate_diff, load_record
    from agent_cli.candidates.render import candidates_table

    workspace = _open_workspace(repo)
    record = load_record(workspace, run_id)
    if number is None:
        _console().print(candidates_table(record.candidates))
        return
    candidate = record.candidate(number)
    _console().print(
        f"candidate #{number} of run {run_id} ({candidate.model}): {candidate.category}; "
        f"{'applied: ' if candidate.won else ''}{candidate.why}; ref {candidate.ref or 'none'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    print(candidate_diff(workspace, record, number), end="")


@candidates_app.command("apply")
@reports_errors
def candidates_apply(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN", help="The run (its id, as `actsmith runs` lists it).")
    ],
    number: Annotated[int, typer.Argument(metavar="N", help="The candidate to apply.")],
    repo: Annotated[Path | None, typer.Option(help="Repository (default: the current one).")] = None,
) -> None:
    """Put candidate N's change in the checkout, in place of what RUN applied; `actsmith undo` takes it back."""
    from agent_cli.candidates.commands import apply_candidate, load_record

    workspace = _open_workspace(repo)
    applied = apply_candidate(workspace, load_record(workspace, run_id), number)
    _console().print(
        f"applied candidate #{number} of run {run_id}: {len(applied.paths)} file(s); "
        "`actsmith undo` takes it back",
        markup=False,
        highlight=False,
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
    from agent_cli.sandbox.identity import docker_client
    from agent_cli.sandbox.image import ensure_image
    from agent_cli.settings import load_settings

    settings = load_settings(None, {"base_image": base})
    tag = ensure_image(docker_client(), base=settings.base_image, rebuild=rebuild, log=_progress)
    _console().print(tag)


@sandbox_app.command("setup")
@reports_errors
@with_settings(only=("setup", "setup_timeout", "setup_idle_timeout", "setup_credentials", "image"))
def sandbox_setup(
    repo: Annotated[Path | None, typer.Option(help="Repository (default: the current one).")] = None,
    rebuild: Annotated[
        bool, typer.Option(help="Build even if an environment for these inputs exists.")
    ] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """Prepare the repository's environment image now (setup, detected or configured), with its log."""
    from agent_cli.checkpoints import working_tree
    from agent_cli.environment import prepare
    from agent_cli.sandbox import SandboxRequest
    from agent_cli.settings import load_settings
    from agent_cli.testing.execute import snapshot_tar

    workspace = _open_workspace(repo)
    settings = load_settings(workspace.root, flags)
    events, close_view = _event_stream(json_output=False)
    try:
        tree = working_tree(workspace)
        request = SandboxRequest(workspace.root, workspace.root, lambda: snapshot_tar(workspace.root, tree))
        prepared = prepare(settings, request, events, rebuild=rebuild)
    finally:
        close_view()
    _console().print(prepared.image)


@sandbox_app.command("prune")
@reports_errors
def sandbox_prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove every environment image.")] = False,
) -> None:
    """Remove environment images no longer current (superseded, or their repository is gone)."""
    from agent_cli.sandbox.identity import docker_client
    from agent_cli.setup import prune_environments

    removed = prune_environments(docker_client(), everything=everything)
    _console().print(f"removed {len(removed)} image(s)" + (f": {', '.join(removed)}" if removed else ""))


@sandbox_app.command("clean")
@reports_errors
def sandbox_clean(
    everything: Annotated[
        bool, typer.Option("--all", help="Also remove containers of runs that are still going.")
    ] = False,
) -> None:
    """Remove sandbox containers left behind by runs that were killed."""
    from agent_cli.sandbox.identity import docker_client, sweep_leftovers

    removed = sweep_leftovers(docker_client(), everything=everything)
    _console().print(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))


@batch_app.command("run")
@reports_errors
def batch_run(
    spec: Annotated[Path, typer.Argument(help="The batch spec (YAML): name, settings and tasks.")],
    out: Annotated[
        Path | None, typer.Option(help="Batch folder (default: .actsmith/batches/<name> beside the spec).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            min=1,
            help="Tasks at once (default: from cores and memory, or the cluster's sandboxes).",
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="local (threads here) or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: start a local one and stop it after).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Also run again the tasks whose result is a failure.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the batch's events as JSON lines on stdout, nothing else.")
    ] = False,
) -> None:
    """Run every task of SPEC (resuming the batch folder if it exists); exit 0 when all succeeded,
    1 when some did not, 2 for a bad spec, 3 when max_cost_total stopped it, 130 when interrupted."""
    from agent_cli.batch import run_batch
    from agent_cli.batch.driver import BatchOptions, Driver
    from agent_cli.batch.spec import load_spec
    from agent_cli.cancel import CancelToken

    if backend not in ("local", "ray"):
        raise typer.BadParameter("local or ray", param_hint="--backend")
    loaded = load_spec(spec)
    folder = Path(os.path.abspath(out)) if out else loaded.default_out
    options = BatchOptions(folder, jobs, backend, ray_address, retry_failed)
    events, close_view = _batch_stream(json_output)
    token = CancelToken()
    try:
        with interrupts_cancel(token):
            tally = run_batch(Driver(loaded, options, events, token))
    finally:
        close_view()
    raise typer.Exit(tally.exit_code)


def _batch_stream(json_output: bool) -> tuple[EventStream, Callable[[], None]]:
    """The batch's events, shown as a live table on a terminal, plain lines otherwise, or JSON."""
    from agent_cli.batch.progress import LiveView, PlainView
    from agent_cli.events import EventStream
    from agent_cli.trajectory import stdout_json

    events = EventStream()
    console = _batch_console()
    view: Any = (
        stdout_json() if json_output else LiveView(console) if console.is_terminal else PlainView(console)
    )
    events.subscribe(view)
    return events, view.close


@batch_app.command("status")
@reports_errors
def batch_status(
    folder: Annotated[Path, typer.Argument(help="The batch folder (--out of the run).")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the table as one JSON object, nothing else.")
    ] = False,
) -> None:
    """Print the table of a running or finished batch, with each published task's pull request as
    GitHub has it now (state, checks, review decision)."""
    import json

    from agent_cli.batch.progress import status_table
    from agent_cli.batch.publish import GitHubAccess, refresh, status_record
    from agent_cli.batch.report import write_reports

    summary = _batch_summary(folder)
    if summary.published:
        refresh(folder, GitHubAccess.from_environ(dict(os.environ)), _lines(stderr=True))
        summary = _batch_summary(folder)
        write_reports(folder)  # the report shows what was just asked
    if json_output:
        records = [status_record(row) for row in summary.rows]
        print(json.dumps({"batch": summary.name, "out": str(summary.out), "tasks": records}))
        return
    _batch_console().print(status_table(summary))


@batch_app.command("publish")
@reports_errors
def batch_publish(
    folder: Annotated[Path, typer.Argument(help="The batch folder (--out of the run).")],
    only: Annotated[
        list[str] | None, typer.Option(help="Publish only this task (repeatable, or comma separated).")
    ] = None,
    ready: Annotated[
        bool, typer.Option("--ready", help="Open pull requests ready for review (default: drafts).")
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Also publish the tasks with this status: untested (succeeded always are)."),
    ] = None,
) -> None:
    """Push the branch of each task that succeeded to its repository's origin and open a draft pull
    request for it (or update the one that exists); exit 0 when all were, 1 when a push or a GitHub
    call failed, 2 for a bad folder or no GITHUB_TOKEN."""
    from agent_cli.batch.publish import INCLUDABLE, GitHubAccess, PublishOptions, publish
    from agent_cli.errors import UsageError

    included = tuple(status for value in include or [] for status in _words(value))
    if any(status not in INCLUDABLE for status in included):
        raise UsageError(f"--include {', '.join(included)}: only {', '.join(INCLUDABLE)} can be added")
    options = PublishOptions(tuple(task for value in only or [] for task in _words(value)), ready, included)
    access = GitHubAccess.from_environ(dict(os.environ))
    raise typer.Exit(publish(Path(os.path.abspath(folder)), options, access, _lines()))


def _lines(stderr: bool = False) -> Callable[[str], None]:
    """Print whole lines (one per task), never folded to the terminal's width."""
    return functools.partial(_console(stderr).print, markup=False, highlight=False, soft_wrap=True)


def _words(value: str) -> list[str]:
    return [word for word in value.replace(",", " ").split() if word]


@batch_app.command("report")
@reports_errors
def batch_report(
    folder: Annotated[Path, typer.Argument(help="The batch folder (--out of the run).")],
) -> None:
    """Write report.md and report.html of a batch folder again, from its files."""
    from agent_cli.batch.report import write_reports

    _batch_summary(folder)  # a folder that is not a batch's is one line, not a traceback
    report = write_reports(folder)
    _console().print(f"{report}\n{report.with_suffix('.html')}", markup=False, highlight=False)


def _batch_console() -> Console:
    """A batch's tables in a log or a pipe keep whole rows (rich would fold them to 80 columns)."""
    console = _console()
    if not console.is_terminal:
        console.width = max(console.width, BATCH_LOG_WIDTH)
    return console


def _batch_summary(folder: Path) -> Any:
    from agent_cli.batch.report import summarise
    from agent_cli.errors import UsageError

    try:
        return summarise(folder)
    except FileNotFoundError:
        raise UsageError(
            f"{folder} is not a batch folder (no journal.jsonl): pass the --out of a batch run"
        ) from None


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM gets the same cleanup path as Ctrl-C: containers are removed before we exit.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    app()
