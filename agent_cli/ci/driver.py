"""`actsmith ci` from event to outcome: read the trigger, say "working" on the issue (or in the
review comment's thread), prepare the branch, run one Session in a worktree (a review round going on
with the conversation of the round before: rounds.py), push, open or update the pull request, and
replace the "working" comment with the outcome. Whatever fails, the comment, the step summary and
the outputs still say so, and work already pushed stays where it is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent_cli.ci import rounds
from agent_cli.ci.actions_env import ActionsEnv
from agent_cli.ci.defang import Defanger, closed_issues
from agent_cli.ci.github_api import GitHub, GitHubError, PullHead, PullLink
from agent_cli.ci.guard import guard_commit
from agent_cli.ci.origin import Origin, prepare_branch
from agent_cli.ci.report import Report, RunWatcher, clip
from agent_cli.ci.trigger import Allowed, Skipped, Trigger, admit, read_trigger, starts_actsmith
from agent_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, ActsmithError, UsageError
from agent_cli.protect import WORKFLOWS, ProtectedPaths
from agent_cli.safe_paths import open_path
from agent_cli.templates import render
from agent_cli.trajectory import Redactor

if TYPE_CHECKING:
    from pathlib import Path

    from agent_cli.cancel import CancelToken
    from agent_cli.ci.github_api import Editable
    from agent_cli.events import EventStream
    from agent_cli.settings import Settings
    from agent_cli.workspace import Workspace

# Who commits when the runner's git knows nobody (as on GitHub's hosted runners).
BOT = {"NAME": "github-actions[bot]", "EMAIL": "41898282+github-actions[bot]@users.noreply.github.com"}
API_KEY_VARIABLE = "ACTSMITH_API_KEY"


@dataclass(frozen=True)
class CiOptions:
    label: str
    allow: frozenset[Allowed]
    draft: bool
    flags: dict[str, Any]  # settings passed as flags, as for `run`
    allow_workflow_changes: bool = False  # push changes to .github/workflows (they run with secrets)
    setup_on_forks: bool = False  # run environment setup (a fork's own install steps) for a fork's PR


@dataclass(frozen=True)
class CiResult:
    exit_code: int
    conclusion: str
    problem: str | None  # the one line to print as an error
    message: str  # a line for the log otherwise


@dataclass(frozen=True)
class BranchPlan:
    """Where the work happens and where it goes."""

    local: str  # the branch the session's worktree is on
    push_to: str | None  # the branch on origin; None for a fork's pull request (nothing is pushed)
    source: str | None  # the ref on origin the work continues, when origin has it; else the checkout's HEAD
    required: bool = False  # no HEAD to fall back on: the source must exist

    @property
    def from_fork(self) -> bool:
        return self.push_to is None


def run_ci(options: CiOptions, environ: dict[str, str], events: EventStream, cancel: CancelToken) -> CiResult:
    env = ActionsEnv.from_environ(environ)
    trigger = read_trigger(env.event_name, env.event(), label=options.label)
    if isinstance(trigger, Skipped):
        return _not_triggered(env, trigger)
    if not env.token:
        raise UsageError("GITHUB_TOKEN is not set: give the action a github-token (or set GITHUB_TOKEN)")
    redactor = Redactor()
    redactor.add(env.token, "GITHUB_TOKEN")
    github = GitHub(env.api_url, env.repository, env.token, redactor)
    try:
        admitted = admit(trigger, options.allow, github.access)
        if isinstance(admitted, Trigger) and admitted.kind == "review_comment":
            admitted = _left_to_its_review(admitted, github)
    except BaseException:
        github.close()
        raise
    if isinstance(admitted, Skipped):
        github.close()
        return _not_triggered(env, admitted)
    api_key = environ.get(API_KEY_VARIABLE) or None
    return CiRun(env, env.token, admitted, options, events, cancel, github, redactor, api_key).run()


def _left_to_its_review(trigger: Trigger, github: GitHub) -> Trigger | Skipped:
    """A comment of a review whose own body starts with /actsmith is that review's to answer: GitHub
    sends both events, and one round takes every comment of the review."""
    comment, number = trigger.comment, trigger.number
    if comment is None or comment.review_id is None or number is None:
        return trigger
    if starts_actsmith(github.review_body(number, comment.review_id)):
        return Skipped(
            "this comment belongs to a review that asks actsmith itself; that review's run answers it"
        )
    return trigger


def _not_triggered(env: ActionsEnv, skipped: Skipped) -> CiResult:
    env.append_summary(render("ci_skipped", reason=skipped.reason))
    env.write_outputs(
        {"conclusion": "not_triggered", "pr-url": "", "branch": "", "cost-usd": "", "run-dir": ""}
    )
    return CiResult(0, "not_triggered", None, f"not triggered: {skipped.reason}")


class CiRun:
    def __init__(
        self,
        env: ActionsEnv,
        token: str,
        trigger: Trigger,
        options: CiOptions,
        events: EventStream,
        cancel: CancelToken,
        github: GitHub,
        redactor: Redactor,
        api_key: str | None = None,
    ) -> None:
        self.env, self.token, self.trigger, self.options = env, token, trigger, options
        self.events, self.cancel = events, cancel
        self.api_key = api_key  # the action's api-key: handed to the session, never to os.environ
        self.redactor = redactor
        self.github = github
        self.report = Report(trigger, env, redactor=redactor)
        self.watcher = RunWatcher()
        self.comment: Editable | None = None  # "working", then the outcome
        self.head: PullHead | None = None  # the pull request the event is about
        self.commented_pull: PullLink | None = None  # the same-repository pull request commented on
        self.round: rounds.Round | None = None
        self.patch: str | None = None
        self.session_id = ""
        self.run_dir: Path | None = None
        self.exit_code = EXIT_USAGE

    def run(self) -> CiResult:
        try:
            self._run()
        except ActsmithError as error:
            self._failed(str(error), error.exit_code)
        except KeyboardInterrupt:
            self._failed("interrupted", EXIT_INTERRUPTED)
        except Exception as error:  # a bug or an unexpected library failure: still say why, then raise
            self._failed(f"{type(error).__name__}: {error}", EXIT_USAGE)
            raise
        finally:
            self._tell()
            self.github.close()
        conclusion = self.report.conclusion
        pull = f": {self.report.pull.url}" if self.report.pull else ""
        return CiResult(self.exit_code, conclusion, self.report.error, f"{conclusion}{pull}")

    def _run(self) -> None:
        from agent_cli.settings import load_settings
        from agent_cli.workspace import Workspace

        workspace = Workspace.open(self.env.workspace)
        settings = replace(load_settings(workspace.root, self.options.flags), worktree=True)
        if not self.options.allow_workflow_changes:
            # Undone after each step, so the model learns at once; the guard before the push stays.
            settings = replace(settings, protect=(*(settings.protect or ()), WORKFLOWS))
        plan = self._plan()
        if plan.from_fork and not self.options.setup_on_forks:
            # Setup runs the fork's own install steps (its setup.py, its package.json scripts) with
            # network: a stranger's code, outside the sandbox's confinement.
            settings = replace(settings, setup=())
            self.report.notes.append(
                "Environment setup did not run: this pull request comes from a fork "
                "(the workflow can allow it with `setup-on-forks`)."
            )
        self.comment = self._say_working()
        origin = Origin.of(workspace, self.token, self.redactor)
        start = origin.fetch(plan.source) if plan.source else None
        if plan.required and start is None:
            raise UsageError(f"origin has no {plan.source} to work on")
        prepare_branch(workspace, plan.local, start)
        if self._is_round(plan):
            assert start is not None
            self.round = self._gather_round(workspace, origin, plan, start)
        self._session(settings, workspace, plan, _lent_identity(workspace))
        self._deliver(workspace, origin, plan, start)

    def _plan(self) -> BranchPlan:
        trigger = self.trigger
        if trigger.kind == "dispatch":
            return BranchPlan(f"actsmith/run-{self.env.run_id}", f"actsmith/run-{self.env.run_id}", None)
        if trigger.kind == "issue":
            branch = f"actsmith/issue-{trigger.number}"
            return BranchPlan(branch, branch, f"refs/heads/{branch}")  # a re-run continues the branch
        assert trigger.number is not None
        head = self.head = self.github.pull(trigger.number)
        same_repository = (head.repository or "").lower() == self.env.repository.lower()
        if same_repository:
            self.commented_pull = PullLink(head.number, head.url, created=False)
        return BranchPlan(
            f"actsmith/pr-{trigger.number}",
            head.branch if same_repository else None,
            f"refs/pull/{trigger.number}/head",
            required=True,
        )

    def _say_working(self) -> Editable | None:
        """The comment that will show the outcome: a reply in the review comment's thread, or a
        comment on the issue or pull request (none on a dispatch)."""
        trigger, working = self.trigger, render("ci_working", run_url=self.env.run_url)
        if trigger.number is None:
            return None
        if trigger.comment is not None:
            return self.github.reply(trigger.number, trigger.comment, working)
        return self.github.comment(trigger.number, working)

    def _is_round(self, plan: BranchPlan) -> bool:
        """A review, or an /actsmith comment on a pull request actsmith opened: one more round on
        its branch (a comment on anyone else's pull request is a task about it, as before)."""
        if self.trigger.kind in ("review_comment", "review"):
            return True
        head = self.head
        return (
            self.trigger.kind == "pull_request"
            and not plan.from_fork
            and head is not None
            and head.branch.startswith("actsmith/")
        )

    def _gather_round(
        self, workspace: Workspace, origin: Origin, plan: BranchPlan, start: str
    ) -> rounds.Round:
        """What this round is asked, what the pull request is about, and the round before's
        conversation when it can be found (else the diff so far)."""
        trigger, head, github = self.trigger, self.head, self.github
        assert head is not None and trigger.number is not None
        if not head.open:  # its branch may be gone: a push would make it anew
            raise UsageError(f"pull request #{head.number} is closed: reopen it to ask for another round")
        every = github.review_comments(trigger.number) if trigger.kind != "pull_request" else []
        of_review = github.review_comments(trigger.number, trigger.review_id) if trigger.review_id else []
        asked = rounds.asked_in(trigger.comment, of_review, every)
        if not asked and not trigger.request:
            raise UsageError("the review asks nothing: write what to do after /actsmith, or in its comments")
        issues = closed_issues(head.body, self.env.repository)
        issue = github.issue(issues[0]) if issues else None
        self.report.issue = issue.number if issue else None
        found = rounds.Round(trigger.kind, trigger.actor, trigger.request, head, asked, issue)
        found.base_sha = origin.fetch(f"refs/heads/{head.base}") if head.base else None
        # A fork's commits could name any run: its rounds always start fresh.
        rounds.recall(found, workspace.root, start, github, trusted=not plan.from_fork)
        if found.note:
            self.report.notes.append(found.note)
        return found

    def _session(
        self, settings: Settings, workspace: Workspace, plan: BranchPlan, identity: dict[str, str] | None
    ) -> None:
        from agent_cli.candidates.opening import open_session
        from agent_cli.session import Session

        if self.round is not None:
            task = self.round.message(self.env.repository)
            # A round goes on with one conversation: candidates are for new work.
            settings = replace(settings, candidates=1, design_tests=False)
        else:
            task = render("ci_task", trigger=self.trigger, repository=self.env.repository)
        # The task names the run id and its commit's message; the branch is the plan's.
        session = open_session(
            settings,
            workspace,
            label=task,
            events=self.events,
            cancel=self.cancel,
            branch=plan.local,
            task=task,
            api_key=self.api_key,
            identity=identity,
        )
        session.redactor.add(self.token, "GITHUB_TOKEN")
        self.events.subscribe(self.watcher)
        try:
            with session:
                if isinstance(session, Session) and self.round is not None and self.round.saved is not None:
                    rounds.resume_conversation(session, self.round.saved)
                    session.continue_(task)
                else:
                    session.run(task)
        finally:
            self.events.unsubscribe(self.watcher)
            if session.run_id:  # its trajectory is there even when the session failed to start
                self.session_id = session.run_id
                self.run_dir = workspace.run_dir(session.run_id)
                if isinstance(session, Session):  # candidates leave no one conversation to go on with
                    rounds.save_conversation(session, self.run_dir, session.redactor)
            self.report.ended, self.report.warnings = session.outcome, self.watcher.warnings
            workflows = ProtectedPaths((WORKFLOWS,))
            self.report.reverted = [path for path in self.watcher.undone if workflows.match(path)]
        self.exit_code = session.outcome.exit_code if session.outcome else EXIT_USAGE

    def _deliver(self, workspace: Workspace, origin: Origin, plan: BranchPlan, start: str | None) -> None:
        ended = self.report.ended
        if ended is None or not ended.files_changed:
            return
        if ended.commit is None:
            raise UsageError(f"the run's changes were not committed: {ended.not_committed}")
        guarded = guard_commit(
            workspace.root,
            plan.local,
            ended.commit,
            Defanger(self.env.repository, self.report.keep),
            allow_workflows=self.options.allow_workflow_changes,
            # Where the next round on this branch finds this one's conversation.
            trailers=rounds.trailers(self.session_id, self.env.artifact),
        )
        self.report.reverted += [path for path in guarded.reverted if path not in self.report.reverted]
        if guarded.commit is None:
            return  # only workflow files changed: nothing to deliver
        self.report.commit = guarded.commit
        if plan.push_to is None:
            self._keep_patch(workspace, start or "HEAD", plan.local)
            return
        origin.push(plan.local, plan.push_to)
        self.report.branch = plan.push_to
        if self.commented_pull is not None:
            self.report.pull = self.commented_pull  # the commits went onto the pull request itself
            return
        draft = self.options.draft or self.report.conclusion != "success"  # only earned success is ready
        try:
            self.report.pull = self.github.open_or_update_pull(
                plan.push_to, self._title(), self.report.pull_body(), draft
            )
        except GitHubError as error:
            raise GitHubError(f"{error}; the work is pushed on branch {plan.push_to}") from None

    def _keep_patch(self, workspace: Workspace, start: str, local: str) -> None:
        """A fork's pull request cannot be pushed to: its change goes into the comment as a patch,
        and whole into the run's folder (the artifact)."""
        self.patch = workspace.format_patch(start, f"refs/heads/{local}")
        assert self.run_dir is not None
        self.report.patch_file = self.run_dir / "changes.patch"
        with open_path(self.report.patch_file, "w", workspace.root) as out:  # never through a link
            out.write(self.patch)

    def _title(self) -> str:
        words = self.trigger.title or self.trigger.request.strip().splitlines()[0]
        return clip(f"actsmith: {words}")

    def _failed(self, message: str, exit_code: int) -> None:
        self.report.error = self.redactor.text(message)
        self.exit_code = exit_code

    def _tell(self) -> None:
        """The outcome, everywhere it is shown; a comment that cannot be edited is one more failure."""
        text = self.report.comment(self.patch)
        if self.comment is not None:
            try:
                self.github.edit_comment(self.comment, text)
            except GitHubError as error:
                if self.report.error is None:
                    self._failed(str(error), error.exit_code)
                    text = self.report.comment(self.patch)
        self.env.append_summary(text)
        self.env.write_outputs({**self.report.outputs(), "run-dir": str(self.run_dir or "")})


def _lent_identity(workspace: Workspace) -> dict[str, str] | None:
    """The session commits its work; a runner's git usually has no identity, so lend the Actions
    bot's, to the session's own commits only (None: git knows who commits)."""
    try:
        workspace.check_identity()
    except UsageError:
        return {
            f"GIT_{role}_{part}": value for role in ("AUTHOR", "COMMITTER") for part, value in BOT.items()
        }
    return None
