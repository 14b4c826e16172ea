"""A batch ends as pull requests: `actsmith batch publish DIR` pushes each task's branch that
succeeded (and, if asked, those untested) to its repository's `origin` and opens a draft pull request
for it, or updates the one that already exists for that branch; `actsmith batch status DIR` asks
GitHub how each stands (state, checks, review decision).

Where a task's pull request goes: the spec's `github: OWNER/NAME` for it, else its repository's
`origin` when that is a GitHub remote (github.com, or the host of GITHUB_SERVER_URL). The token
(GITHUB_TOKEN or GH_TOKEN) goes to the API (GITHUB_API_URL) and to a push over HTTPS to GitHub's own
host, nowhere else. What the model wrote reaches the pull request redacted and defanged, as in CI.

Each task's pull request, as last seen, is DIR/tasks/<id>/pull.json; its number and address also go
into result.json and the journal (`published`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent_cli.batch.report import Row, Summary, render_pull_body, summarise, write_reports
from agent_cli.batch.results import PullSeen, TaskResult, rewrite_result, write_pull
from agent_cli.batch.spec import GITHUB_REPOSITORY
from agent_cli.errors import EXIT_OK, EXIT_TESTS_FAIL, ActsmithError, UsageError
from agent_cli.gitops import GitError, git
from agent_cli.outcome import Category

if TYPE_CHECKING:
    from agent_cli.batch.journal import Journal
    from agent_cli.ci.github_api import GitHub, PullLink
    from agent_cli.trajectory import Redactor

DEFAULT_API = "https://api.github.com"
DEFAULT_SERVER = "https://github.com"
INCLUDABLE = (Category.UNTESTED.value,)  # what --include may add to the tasks that succeeded
STAT_ROOM = 20_000  # characters of the diff stat in a pull request's body
# A remote URL: scheme://[user@]host[:port]/path, or scp-like [user@]host:path.
_REMOTE = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/|(?:[^@/:]+@)?(?P<scp>[^/:]+):)"
    r"(?P<path>[^?#]+?)(?:\.git)?/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GitHubAccess:
    """Where GitHub is and the token for it, from the environment as `gh` and Actions name them."""

    api_url: str
    server_url: str
    token: str | None

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> GitHubAccess:
        return cls(
            (environ.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/"),
            (environ.get("GITHUB_SERVER_URL") or DEFAULT_SERVER).rstrip("/"),
            environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or None,
        )

    @property
    def hosts(self) -> frozenset[str]:
        """The hosts that are GitHub's: a remote there is a GitHub remote, and gets the token."""
        return frozenset({"github.com", (urlsplit(self.server_url).hostname or "").lower()})


@dataclass(frozen=True)
class PublishOptions:
    only: tuple[str, ...] = ()  # task ids; none: every task
    ready: bool = False  # open pull requests ready for review rather than drafts
    include: tuple[str, ...] = ()  # statuses published beside succeeded (untested)


class Clients:
    """One GitHub client per repository, and the redactor that keeps the token out of what they say."""

    def __init__(self, access: GitHubAccess, *, patient: bool) -> None:
        from agent_cli.trajectory import Redactor

        assert access.token is not None
        self.access, self.token, self.patient = access, access.token, patient
        self.redactor = Redactor()
        self.redactor.add(access.token, "GITHUB_TOKEN")
        self._clients: dict[str, GitHub] = {}

    def __call__(self, repository: str) -> GitHub:
        from agent_cli.ci.github_api import GitHub

        if repository not in self._clients:
            self._clients[repository] = GitHub(
                self.access.api_url, repository, self.token, self.redactor, patient=self.patient
            )
        return self._clients[repository]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


# ----------------------------------------------------------------------------------------- publish


def publish(out: Path, options: PublishOptions, access: GitHubAccess, say: Callable[[str], None]) -> int:
    """Publish the batch in `out`: one line said per task; exit 0 when every task to publish was,
    1 when a push or an API call failed. A bad folder, an unknown id or no token is a UsageError."""
    from agent_cli.batch.driver import exclusive
    from agent_cli.batch.journal import Journal

    summary = _summary(out)
    if access.token is None:
        raise UsageError(
            "GITHUB_TOKEN (or GH_TOKEN) is not set: publishing needs a token that may push and open pull requests"
        )
    unknown = [task for task in options.only if task not in {row.id for row in summary.rows}]
    if unknown:
        raise UsageError(f"--only {', '.join(unknown)}: no such task in the batch {summary.name}")
    wanted = {Category.SUCCEEDED.value, *options.include}
    publisher = Publisher(summary, options, access)
    failed = False
    with exclusive(out):
        journal = Journal(out)
        try:
            for row in summary.rows:
                if options.only and row.id not in options.only:
                    continue
                if row.result is None or row.status not in wanted:
                    say(f"{row.id}: {row.status}, not published")
                    continue
                ok, line = publisher.publish(row, row.result, journal)
                failed = failed or ok is False
                say(f"{row.id}: {line}")
        finally:
            journal.close()
            publisher.close()
            write_reports(out)
    return EXIT_TESTS_FAIL if failed else EXIT_OK


class Publisher:
    """Publishes the tasks of one batch."""

    def __init__(self, summary: Summary, options: PublishOptions, access: GitHubAccess) -> None:
        self.summary, self.options, self.access = summary, options, access
        self.clients = Clients(access, patient=True)
        self.redactor = self.clients.redactor

    def close(self) -> None:
        self.clients.close()

    def publish(self, row: Row, result: TaskResult, journal: Journal) -> tuple[bool | None, str]:
        """(published? None: skipped, the line to say)."""
        root = Path(result.repo)
        url = _origin_url(root)
        repository = self.summary.github.get(row.id) or (
            github_repository(url, self.access.hosts) if url else None
        )
        if repository is None:
            where = f"its origin ({url}) is not on GitHub" if url else "it has no origin"
            return None, f"skipped: {root}: {where}; set `github: OWNER/NAME` for it in the spec"
        if url is None:
            return False, f"not published: {root} has no origin remote to push the branch to"
        try:
            tip = self._push(root, url, result.branch)
            link, state = self._open_or_update(repository, result, tip)
        except ActsmithError as error:
            return False, f"not published: {self.redactor.text(str(error))}"
        self._record(row, result, repository, link, state, tip, journal)
        if link.created:
            return True, f"opened {link.url} ({state})"
        if state in ("merged", "closed"):
            return True, f"{link.url} is {state}: left as it is"
        return True, f"updated {link.url}"

    def _push(self, root: Path, url: str, branch: str) -> str:
        from agent_cli.ci.origin import Origin, authenticated
        from agent_cli.workspace import Workspace

        tip = Workspace(root, root).branch_tip(branch)
        if tip is None:
            raise UsageError(f"the branch {branch} is no longer in {root}")
        host = (urlsplit(url).hostname or "").lower() if "://" in url else ""
        assert self.access.token is not None
        env = (
            authenticated(url, self.access.token)
            if host in self.access.hosts
            else {"GIT_TERMINAL_PROMPT": "0"}
        )
        Origin(root, url, env, self.redactor).push(branch, branch)  # a fast-forward, never forced
        return tip

    def _open_or_update(self, repository: str, result: TaskResult, tip: str) -> tuple[PullLink, str]:
        from agent_cli.ci.github_api import PullLink
        from agent_cli.ci.report import clip

        github = self.clients(repository)
        body = pull_body(self.summary.name, result, tip, repository, self.redactor)
        existing = github.pull_from(result.branch, state="all")
        if existing is None:
            draft = not self.options.ready
            title = clip(f"{self.summary.name}: {result.task.strip().splitlines()[0]}")
            return github.create_pull(result.branch, title, body, draft), "draft" if draft else "open"
        if existing.state in ("open", "draft"):
            github.update_pull_body(existing.number, body)
        return PullLink(existing.number, existing.url, created=False), existing.state

    def _record(
        self,
        row: Row,
        result: TaskResult,
        repository: str,
        link: PullLink,
        state: str,
        tip: str,
        journal: Journal,
    ) -> None:
        folder = self.summary.out / "tasks" / row.id
        write_pull(folder, PullSeen(link.number, link.url, repository, state))
        rewrite_result(folder, replace(result, pr_url=link.url, pr_number=link.number))
        journal.write(
            "published",
            id=row.id,
            pr_url=link.url,
            pr_number=link.number,
            repository=repository,
            branch=result.branch,
            commit=tip,
        )


def pull_body(name: str, result: TaskResult, tip: str, repository: str, redactor: Redactor) -> str:
    """The pull request's Markdown: the task as written, the model's summary (defanged), tests
    against the baseline, the diff stat and the cost."""
    from agent_cli.ci.defang import Defanger, code_span, fence_for
    from agent_cli.ci.report import cut_lines
    from agent_cli.workspace import Workspace

    defanger = Defanger(repository, None)  # a batch closes no issue but those its task names

    def show(text: str) -> str:
        return defanger.markdown(redactor.text(text))

    repo = Path(result.repo)
    stat, cut = cut_lines(Workspace(repo, repo).diff_stat(result.base, tip), STAT_ROOM)
    text = render_pull_body(
        name=name,
        r=result,
        tip=tip,
        show=show,
        code=code_span,
        stat=stat,
        cut=cut,
        fence=fence_for(stat),
    )
    return redactor.text(text)


def github_repository(url: str, hosts: frozenset[str]) -> str | None:
    """OWNER/NAME when `url` is a remote on one of GitHub's `hosts`."""
    match = _REMOTE.match(url.strip())
    if match is None or (match.group("host") or match.group("scp") or "").lower() not in hosts:
        return None
    path = match.group("path").strip("/")
    return path if GITHUB_REPOSITORY.fullmatch(path) else None


def _origin_url(root: Path) -> str | None:
    try:
        return git(root, "remote", "get-url", "origin").decode().strip() or None
    except GitError:
        return None


def _summary(out: Path) -> Summary:
    try:
        return summarise(out)
    except FileNotFoundError:
        raise UsageError(
            f"{out} is not a batch folder (no journal.jsonl): pass the --out of a batch run"
        ) from None


# ------------------------------------------------------------------------------------------ status


def refresh(out: Path, access: GitHubAccess, say: Callable[[str], None]) -> None:
    """Ask GitHub how each published task's pull request stands, into its pull.json; a call that
    fails is one line, and the others go on."""
    from agent_cli.ci.github_api import GitHubError

    published = [row for row in _summary(out).rows if row.pull is not None]
    if not published:
        return
    if access.token is None:
        say("the pull requests' state was not asked: set GITHUB_TOKEN (or GH_TOKEN)")
        return
    clients = Clients(access, patient=False)
    try:
        for row in published:
            pull = row.pull
            assert pull is not None
            github = clients(pull.repository)
            seen = replace(pull, error="")
            try:  # what GitHub answered before a call failed is kept
                state = github.pull_state(pull.number)
                seen.state = state.state
                seen.checks = github.checks(state.head_sha).summary
                seen.review = github.review_decision(pull.number)
                seen.checked = time.time()
            except GitHubError as error:
                say(f"{row.id}: {error}")
                seen.error = str(error)
            write_pull(out / "tasks" / row.id, seen)
    finally:
        clients.close()


def status_record(row: Row) -> dict[str, Any]:
    """One task's line of `batch status --json`."""
    result, pull = row.result, row.pull
    return {
        "id": row.id,
        "status": row.status,
        "branch": result.branch if result else None,
        "files": row.files,
        "tests": result.tests_state if result else None,
        "cost": result.cost if result else None,
        "steps": result.steps if result else None,
        "pr_number": pull.number if pull else None,
        "pr_url": pull.url if pull else None,
        "pr_state": (pull.state or None) if pull else None,
        "checks": (pull.checks or None) if pull else None,
        "review": (pull.review or None) if pull else None,
        "error": (pull.error or None) if pull else None,
    }
