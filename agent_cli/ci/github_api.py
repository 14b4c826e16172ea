"""The few GitHub REST calls `actsmith ci` and `actsmith batch publish/status` make, through PyGithub.
Each failure becomes one line saying what was being done, what GitHub answered and what to do about
it; the token is redacted from anything GitHub or the HTTP stack said."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from agent_cli.ci.trigger import Access, ReviewComment
from agent_cli.errors import ActsmithError

if TYPE_CHECKING:
    from github.PullRequest import PullRequest
    from github.Repository import Repository

    from agent_cli.trajectory import Redactor

COMMENT_LIMIT = 65536  # characters GitHub accepts in an issue comment or a pull request body
TIMEOUT_S = 30
ARTIFACT_LIMIT = 64 * 1024 * 1024  # bytes of an earlier run's artifact worth downloading for one file
# A check run's conclusions that do not hold a pull request back.
CHECK_OK = frozenset({"success", "neutral", "skipped"})
HINTS = {
    401: "the token was refused: check the github-token input (expired or revoked?)",
    403: "the token may not do this: give the workflow `contents`, `pull-requests` and `issues: write` "
    "(or use an App or fine-grained token that has them)",
    404: "not found: check GITHUB_REPOSITORY and that the token can see the repository",
}


class GitHubError(ActsmithError):
    """GitHub refused or failed a request."""


class Editable(Protocol):
    """A comment actsmith posted and edits in place: an issue comment or a review comment's reply."""

    @property
    def id(self) -> int: ...

    def edit(self, body: str) -> None: ...


@dataclass(frozen=True)
class PullHead:
    """Where a pull request's changes live, and what it says."""

    number: int
    url: str
    branch: str  # the head branch's name, in `repository`
    repository: str | None  # owner/name of the head; None when the fork was deleted
    title: str = ""
    body: str = ""
    base: str = ""  # the branch it goes into
    open: bool = True


@dataclass(frozen=True)
class IssueText:
    number: int
    title: str
    body: str


@dataclass(frozen=True)
class PullState:
    """A pull request as `batch status` shows it."""

    number: int
    url: str
    state: str  # open | draft | merged | closed
    head_sha: str


@dataclass(frozen=True)
class Checks:
    """The checks of a commit: its check runs and its commit statuses, counted."""

    passed: int = 0
    failed: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.pending

    @property
    def summary(self) -> str:
        """`passing`, `failing`, `pending` or `none`, with the counts."""
        if not self.total:
            return "none"
        if self.failed:
            word = "failing"
        elif self.pending:
            word = "pending"
        else:
            word = "passing"
        return f"{word} ({self.passed}/{self.total} passed)"


@dataclass(frozen=True)
class PullLink:
    number: int
    url: str
    created: bool  # False: an open one for the branch existed and was updated


class GitHub:
    def __init__(
        self, api_url: str, repository: str, token: str, redactor: Redactor, *, patient: bool = True
    ) -> None:
        """`patient`: retry what failed for GitHub's own reasons (5xx, rate limits, waiting as told).
        `batch status` is not: a call that fails is one line, and the other tasks go on."""
        from github import Auth, Github, GithubRetry

        # GET and PATCH are retried on 5xx (repeating them changes nothing); a POST is not, so a
        # comment or a pull request is never made twice by a reply that was lost.
        retry = (
            GithubRetry(
                total=3,
                backoff_factor=1.0,
                allowed_methods=frozenset({"GET", "PATCH"}),
                raise_on_status=False,
            )
            if patient
            else None
        )
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._client = Github(base_url=self._api_url, auth=Auth.Token(token), timeout=TIMEOUT_S, retry=retry)
        self.repository = repository
        self._redactor = redactor
        self._repo: Repository = self._client.get_repo(repository, lazy=True)

    def close(self) -> None:
        self._client.close()

    def access(self, login: str) -> Access:
        """`login`'s permission on the repository. GitHub answers 404 for a login it does not know:
        that is no access."""
        from github import UnknownObjectException

        path = f"/repos/{self.repository}/collaborators/{quote(login, safe='')}/permission"
        with self._calling(f"asking GitHub for @{login}'s access to {self.repository}"):
            try:
                _, data = self._client.requester.requestJsonAndCheck("GET", path)
            except UnknownObjectException:
                return Access("none", "none", None)
        user = data.get("user") or {}
        return Access(
            str(data.get("permission") or "none"),
            str(data.get("role_name") or ""),
            user.get("id") if isinstance(user.get("id"), int) else None,
        )

    def pull(self, number: int) -> PullHead:
        with self._calling(f"reading pull request #{number}"):
            pull = self._repo.get_pull(number)
            head = pull.head
            return PullHead(
                number,
                pull.html_url,
                head.ref,
                head.repo.full_name if head.repo else None,
                pull.title or "",
                pull.body or "",
                pull.base.ref,
                pull.state == "open",
            )

    def issue(self, number: int) -> IssueText | None:
        """Issue `number`'s text; None when there is no such issue (or it is a pull request)."""
        from github import UnknownObjectException

        with self._calling(f"reading issue #{number}"):
            try:
                issue = self._repo.get_issue(number)
                if issue.pull_request is not None:
                    return None
                return IssueText(number, issue.title or "", issue.body or "")
            except UnknownObjectException:
                return None

    def comment(self, number: int, body: str) -> Editable:
        with self._calling(f"commenting on #{number}"):
            return self._repo.get_issue(number).create_comment(body)

    def reply(self, number: int, comment: ReviewComment, body: str) -> Editable:
        """A reply in `comment`'s thread on pull request `number`."""
        with self._calling(f"replying to review comment {comment.thread} on #{number}"):
            return self._pull_object(number).create_review_comment_reply(comment.thread, body)

    def edit_comment(self, comment: Editable, body: str) -> None:
        with self._calling(f"updating comment {comment.id}"):
            comment.edit(body)

    def review_body(self, number: int, review_id: int) -> str:
        with self._calling(f"reading review {review_id} of #{number}"):
            return self._pull_object(number).get_review(review_id).body or ""

    def review_comments(self, number: int, review_id: int | None = None) -> list[ReviewComment]:
        """The review comments of pull request `number`, oldest first; of one review when `review_id`."""
        what = f"review {review_id}'s comments" if review_id else "the review comments"
        with self._calling(f"reading {what} on #{number}"):
            pull = self._pull_object(number)
            listed = pull.get_single_review_comments(review_id) if review_id else pull.get_review_comments()
            comments = [_review_comment(item) for item in listed]
        return sorted(comments, key=lambda comment: comment.id)

    def artifact_file(self, run_id: int, artifact: str, member: str) -> bytes | None:
        """`member` of the artifact `artifact` that workflow run `run_id` uploaded; None when the run
        has no such artifact (expired, or never uploaded) or the artifact no such file."""
        import requests

        path = f"/repos/{self.repository}/actions/runs/{run_id}/artifacts"
        with self._calling(f"looking for the artifact {artifact} of run {run_id}"):
            _, data = self._client.requester.requestJsonAndCheck("GET", path, parameters={"name": artifact})
        found = [a for a in data.get("artifacts") or [] if a.get("name") == artifact and not a.get("expired")]
        if not found:
            return None
        url = str(found[0].get("archive_download_url") or "")
        if not url.startswith(self._api_url + "/"):
            return None  # the token goes to this API only
        try:
            # The API answers with a redirect to storage elsewhere; requests drops the token there.
            with requests.get(
                url, headers={"Authorization": f"Bearer {self._token}"}, timeout=TIMEOUT_S, stream=True
            ) as response:
                response.raise_for_status()
                archive = response.raw.read(ARTIFACT_LIMIT + 1, decode_content=True)
        except requests.RequestException as error:
            raise GitHubError(
                self._redactor.text(f"GitHub API: downloading the artifact {artifact} failed: {error}")
            ) from None
        if len(archive) > ARTIFACT_LIMIT:
            return None
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as unzipped:
                return unzipped.read(member)
        except (KeyError, zipfile.BadZipFile):
            return None

    def open_or_update_pull(self, branch: str, title: str, body: str, draft: bool) -> PullLink:
        """The open pull request from `branch` with a fresh body, or a new one into the default branch."""
        existing = self.pull_from(branch, state="open")
        if existing is not None:
            self.update_pull_body(existing.number, body)
            return PullLink(existing.number, existing.url, created=False)
        return self.create_pull(branch, title, body, draft)

    def pull_from(self, branch: str, state: str = "all") -> PullState | None:
        """The newest pull request whose head is `branch` of this repository, in `state` (open,
        closed or all)."""
        owner = self.repository.split("/")[0]
        with self._calling(f"looking for a pull request from {branch}"):
            found = next(iter(self._repo.get_pulls(state=state, head=f"{owner}:{branch}")), None)
            return _pull_state(found) if found is not None else None

    def create_pull(self, branch: str, title: str, body: str, draft: bool) -> PullLink:
        with self._calling("reading the repository's default branch"):
            base = self._repo.default_branch
        with self._calling(f"opening a pull request from {branch} into {base}"):
            pull = self._repo.create_pull(base=base, head=branch, title=title, body=body, draft=draft)
        return PullLink(pull.number, pull.html_url, created=True)

    def update_pull_body(self, number: int, body: str) -> None:
        with self._calling(f"updating pull request #{number}"):
            self._pull_object(number).edit(body=body)

    def pull_state(self, number: int) -> PullState:
        with self._calling(f"reading pull request #{number}"):
            return _pull_state(self._repo.get_pull(number))

    def checks(self, sha: str) -> Checks:
        """The check runs and the commit statuses of `sha`, counted."""
        requester = self._client.requester
        base = f"/repos/{self.repository}/commits/{sha}"
        with self._calling(f"reading the checks of {sha[:12]}"):
            _, runs = requester.requestJsonAndCheck("GET", f"{base}/check-runs", parameters={"per_page": 100})
            _, combined = requester.requestJsonAndCheck("GET", f"{base}/status", parameters={"per_page": 100})
        return count_checks(runs.get("check_runs") or [], combined.get("statuses") or [])

    def review_decision(self, number: int) -> str:
        """approved, changes_requested or none, from each reviewer's latest approval or change request
        (a comment changes nobody's verdict; a dismissal takes theirs back)."""
        with self._calling(f"reading the reviews of #{number}"):
            reviews = [
                (r.user.login if r.user else "", r.state) for r in self._pull_object(number).get_reviews()
            ]
        return decision_of(reviews)

    def _pull_object(self, number: int) -> PullRequest:
        # Lazy: no request until a call on it (each call says what it was doing when it fails).
        return self._repo.get_pull(number)

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        from github import GithubException
        from requests import RequestException

        try:
            yield
        except GithubException as error:
            raise GitHubError(self._redactor.text(f"GitHub API: {what} failed: {_explain(error)}")) from None
        except RequestException as error:
            raise GitHubError(
                self._redactor.text(
                    f"GitHub API: {what} failed: {type(error).__name__}: {_first_line(str(error))}"
                )
            ) from None


def count_checks(runs: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> Checks:
    """Check runs (queued, in progress, or completed with a conclusion) and commit statuses (pending,
    success, failure, error) as one count."""
    passed = failed = pending = 0
    for run in runs:
        if run.get("status") != "completed":
            pending += 1
        elif run.get("conclusion") in CHECK_OK:
            passed += 1
        else:
            failed += 1
    for status in statuses:
        state = status.get("state")
        if state == "success":
            passed += 1
        elif state == "pending":
            pending += 1
        else:
            failed += 1
    return Checks(passed, failed, pending)


def decision_of(reviews: list[tuple[str, str]]) -> str:
    """The review decision from (reviewer, state) in the order submitted."""
    verdicts: dict[str, str] = {}
    for login, state in reviews:
        if state in ("APPROVED", "CHANGES_REQUESTED"):
            verdicts[login] = state
        elif state == "DISMISSED":
            verdicts.pop(login, None)
    if "CHANGES_REQUESTED" in verdicts.values():
        return "changes_requested"
    return "approved" if verdicts else "none"


def _pull_state(pull: Any) -> PullState:
    if pull.merged_at is not None:  # a listed pull request has no `merged`
        state = "merged"
    elif pull.state == "closed":
        state = "closed"
    else:
        state = "draft" if pull.draft else "open"
    return PullState(pull.number, pull.html_url, state, pull.head.sha)


def _review_comment(item: Any) -> ReviewComment:
    """A PyGithub review comment as ours, from the fields the listing had (no request per item)."""
    user = item.user
    return ReviewComment(
        item.id,
        user.login if user else "",
        (item.body or "").replace("\r\n", "\n"),
        item.path or "",
        item.line if item.line is not None else item.original_line,
        item.diff_hunk or "",
        item.in_reply_to_id,
        item.pull_request_review_id,
    )


def _explain(error: object) -> str:
    from github import GithubException, RateLimitExceededException

    assert isinstance(error, GithubException)
    data = error.data if isinstance(error.data, dict) else {}
    said = str(data.get("message") or error.message or "").strip()
    details = [
        str(e.get("message") or e.get("code")) for e in data.get("errors") or [] if isinstance(e, dict)
    ]
    if details:
        said += f" ({'; '.join(details)})"
    status = error.status
    hint = HINTS.get(status) or ("GitHub is failing; re-run the job" if status >= 500 else "")
    if isinstance(error, RateLimitExceededException) or status == 429:
        hint = "rate limited: try again later"
    return f"{status} {_first_line(said)}" + (f"; {hint}" if hint else "")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
