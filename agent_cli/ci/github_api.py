"""The few GitHub REST calls `actsmith ci` makes, through PyGithub. Each failure becomes one line
saying what was being done, what GitHub answered and what to do about it; the token is redacted
from anything GitHub or the HTTP stack said."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from agent_cli.ci.trigger import Access
from agent_cli.errors import ActsmithError

if TYPE_CHECKING:
    from github.IssueComment import IssueComment
    from github.Repository import Repository

    from agent_cli.trajectory import Redactor

COMMENT_LIMIT = 65536  # characters GitHub accepts in an issue comment or a pull request body
TIMEOUT_S = 30
HINTS = {
    401: "the token was refused: check the github-token input (expired or revoked?)",
    403: "the token may not do this: give the workflow `contents`, `pull-requests` and `issues: write` "
    "(or use an App or fine-grained token that has them)",
    404: "not found: check GITHUB_REPOSITORY and that the token can see the repository",
}


class GitHubError(ActsmithError):
    """GitHub refused or failed a request."""


@dataclass(frozen=True)
class PullHead:
    """Where a pull request's changes live."""

    number: int
    url: str
    branch: str  # the head branch's name, in `repository`
    repository: str | None  # owner/name of the head; None when the fork was deleted


@dataclass(frozen=True)
class PullLink:
    number: int
    url: str
    created: bool  # False: an open one for the branch existed and was updated


class GitHub:
    def __init__(self, api_url: str, repository: str, token: str, redactor: Redactor) -> None:
        from github import Auth, Github, GithubRetry

        # GET and PATCH are retried on 5xx (repeating them changes nothing); a POST is not, so a
        # comment or a pull request is never made twice by a reply that was lost.
        retry = GithubRetry(
            total=3, backoff_factor=1.0, allowed_methods=frozenset({"GET", "PATCH"}), raise_on_status=False
        )
        self._client = Github(
            base_url=api_url.rstrip("/"), auth=Auth.Token(token), timeout=TIMEOUT_S, retry=retry
        )
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
            return PullHead(number, pull.html_url, head.ref, head.repo.full_name if head.repo else None)

    def comment(self, number: int, body: str) -> IssueComment:
        with self._calling(f"commenting on #{number}"):
            return self._repo.get_issue(number).create_comment(body)

    def edit_comment(self, comment: IssueComment, body: str) -> None:
        with self._calling(f"updating comment {comment.id}"):
            comment.edit(body)

    def open_or_update_pull(self, branch: str, title: str, body: str, draft: bool) -> PullLink:
        """The open pull request from `branch` with a fresh body, or a new one into the default branch."""
        owner = self.repository.split("/")[0]
        with self._calling(f"looking for an open pull request from {branch}"):
            existing = next(iter(self._repo.get_pulls(state="open", head=f"{owner}:{branch}")), None)
        if existing is not None:
            with self._calling(f"updating pull request #{existing.number}"):
                existing.edit(body=body)
            return PullLink(existing.number, existing.html_url, created=False)
        with self._calling("reading the repository's default branch"):
            base = self._repo.default_branch
        with self._calling(f"opening a pull request from {branch} into {base}"):
            pull = self._repo.create_pull(base=base, head=branch, title=title, body=body, draft=draft)
        return PullLink(pull.number, pull.html_url, created=True)

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


def _explain(error: object) -> str:
    from github import GithubException

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
    return f"{status} {_first_line(said)}" + (f"; {hint}" if hint else "")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
