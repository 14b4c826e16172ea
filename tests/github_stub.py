"""A small GitHub REST server on 127.0.0.1 for `actsmith ci` tests.

It serves the endpoints actsmith uses, with the response shapes GitHub documents (repositories,
issues, pull requests listed by head and state, issue comments, review comments and their replies,
reviews and their comments, check runs and the combined status of a commit, workflow run artifacts,
a collaborator's permission), keeps their state (comments with every body they had, pull requests
with their edits) and records every request. Several repositories may live on one stub
(`add_repository`); the first is the main one. Tests script failures by method and path (`fail`),
seed what an event refers to (`add_pull`, `add_issue`, `add_review_comment`, `add_review`), what CI
and reviewers said (`add_check_run`, `add_status`, `add_review`, `merge`), an earlier run's artifact
(`add_artifact`) and the people who have access (`add_collaborator`; anyone else has none). Requests
without the expected token are answered 401, as GitHub does; an artifact's download redirects to
storage that wants none. Standard library only, loopback only.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

DOCS = "https://docs.github.com/rest"
# A role and the legacy permission GitHub reports with it (maintain reads as write, triage as read).
PERMISSION_OF_ROLE = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}


class Loopback:
    """An HTTP server on 127.0.0.1, in a thread, handing each request and its method to `handle`."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, str], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self, "GET")

            def do_POST(self) -> None:
                handle(self, "POST")

            def do_PATCH(self) -> None:
                handle(self, "PATCH")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Served:
    """A test server's life: `start` serves `_handle` on loopback, `stop` ends it."""

    _server: Loopback | None = None

    def start(self) -> Self:
        self._server = Loopback(self._handle)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Failure:
    status: int
    message: str
    errors: list[dict[str, str]] | None = None


@dataclass
class Repository:
    """One repository's state on the stub: its pull requests and what hangs off them."""

    full_name: str
    default_branch: str = "main"
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    review_comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    review_comment_bodies: dict[int, list[str]] = field(default_factory=dict)  # every body each had
    reviews: dict[int, dict[str, Any]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit sha -> runs
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit sha -> statuses
    artifacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    artifact_zips: dict[int, bytes] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]


@dataclass
class GitHubStub(Served):
    repository: str  # the main repository (owner/name); more with `add_repository`
    token: str
    default_branch: str = "main"
    requests: list[Request] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # issue comments, any repository
    comment_bodies: dict[int, list[str]] = field(default_factory=dict)  # every body a comment had
    collaborators: dict[str, tuple[int, str]] = field(default_factory=dict)  # login (lower) -> (id, role)
    repositories: dict[str, Repository] = field(default_factory=dict)  # full name (lower) -> its state
    _failures: list[tuple[str, re.Pattern[str], Failure]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 900_000

    def __post_init__(self) -> None:
        self.add_repository(self.repository, self.default_branch)

    # ------------------------------------------------------------------------------ test side

    def add_repository(self, full_name: str, default_branch: str = "main") -> Repository:
        state = Repository(full_name, default_branch)
        self.repositories[full_name.lower()] = state
        return state

    def repo(self, full_name: str | None = None) -> Repository:
        return self.repositories[(full_name or self.repository).lower()]

    @property
    def pulls(self) -> dict[int, dict[str, Any]]:
        """The main repository's pull requests."""
        return self.repo().pulls

    def fail(
        self, method: str, path: str, status: int, message: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        """Answer requests whose path fully matches the regex `path` with an error, from now on."""
        self._failures.append((method, re.compile(path), Failure(status, message, errors)))

    def add_pull(
        self,
        number: int,
        head_branch: str,
        head_repository: str,
        head_sha: str,
        *,
        title: str | None = None,
        body: str = "",
        repository: str | None = None,
    ) -> dict[str, Any]:
        """A pull request that exists before the run (the one an event comments on)."""
        return self._new_pull(
            self.repo(repository),
            number,
            head_branch,
            head_repository,
            head_sha,
            title or f"PR {number}",
            body,
            draft=False,
        )

    def add_issue(self, number: int, title: str, body: str, repository: str | None = None) -> dict[str, Any]:
        state = self.repo(repository)
        issue = {
            "id": 2_000_000_000 + number,
            "node_id": f"I_{number}",
            "number": number,
            "url": self._api(state, f"/issues/{number}"),
            "html_url": self._html(state, f"/issues/{number}"),
            "title": title,
            "body": body,
            "state": "open",
            "user": _user("monalisa", 583231),
            "labels": [],
            "author_association": "MEMBER",
        }
        state.issues[number] = issue
        return issue

    def add_collaborator(self, login: str, user_id: int, role: str) -> None:
        """Someone with a role on the repository: admin, maintain, write, triage or read."""
        self.collaborators[login.lower()] = (user_id, role)

    def add_review_comment(
        self,
        number: int,
        login: str,
        body: str,
        *,
        path: str = "app.py",
        line: int | None = 1,
        diff_hunk: str = "@@ -1,2 +1,2 @@",
        in_reply_to: int | None = None,
        review_id: int | None = None,
        comment_id: int | None = None,
        repository: str | None = None,
    ) -> dict[str, Any]:
        """A review comment on pull request `number` (in a review of its own unless `review_id`)."""
        state = self.repo(repository)
        pull = state.pulls[number]
        if review_id is None:
            review_id = self.add_review(number, login, "COMMENTED", "", repository=repository)["id"]
        return self._new_review_comment(
            state, pull, login, body, path, line, diff_hunk, in_reply_to, review_id, comment_id
        )

    def add_review(
        self,
        number: int,
        login: str,
        state_name: str,
        body: str,
        *,
        comments: list[dict[str, Any]] | None = None,
        repository: str | None = None,
    ) -> dict[str, Any]:
        """A submitted review (APPROVED, CHANGES_REQUESTED, COMMENTED) and its comments, each a dict of
        add_review_comment's keyword arguments with `body`."""
        state = self.repo(repository)
        pull = state.pulls[number]
        review_id = self._new_id()
        user = self._user(login)
        review = {
            "id": review_id,
            "node_id": f"PRR_{review_id}",
            "user": user,
            "body": body,
            "state": state_name,
            "html_url": f"{pull['html_url']}#pullrequestreview-{review_id}",
            "pull_request_url": pull["url"],
            "_links": {
                "html": {"href": f"{pull['html_url']}#pullrequestreview-{review_id}"},
                "pull_request": {"href": pull["url"]},
            },
            "submitted_at": _now(),
            "commit_id": pull["head"]["sha"],
            "author_association": "MEMBER",
        }
        state.reviews[review_id] = review
        for comment in comments or []:
            self.add_review_comment(number, login, review_id=review_id, repository=repository, **comment)
        return review

    def add_check_run(
        self, sha: str, name: str, status: str, conclusion: str | None, repository: str | None = None
    ) -> None:
        """A check run on a commit: status queued, in_progress or completed; conclusion once completed."""
        state = self.repo(repository)
        run_id = self._new_id()
        state.check_runs.setdefault(sha, []).append(
            {
                "id": run_id,
                "node_id": f"CR_{run_id}",
                "head_sha": sha,
                "external_id": "",
                "url": self._api(state, f"/check-runs/{run_id}"),
                "html_url": self._html(state, f"/runs/{run_id}"),
                "details_url": self._html(state, f"/runs/{run_id}"),
                "status": status,
                "conclusion": conclusion,
                "started_at": _now(),
                "completed_at": _now() if status == "completed" else None,
                "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
                "name": name,
                "check_suite": {"id": run_id + 1},
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
                "pull_requests": [],
            }
        )

    def add_status(self, sha: str, context: str, state_name: str, repository: str | None = None) -> None:
        """A commit status (the older API beside check runs): pending, success, failure or error."""
        state = self.repo(repository)
        status_id = self._new_id()
        state.statuses.setdefault(sha, []).insert(
            0,
            {
                "url": self._api(state, f"/statuses/{sha}"),
                "id": status_id,
                "node_id": f"SC_{status_id}",
                "state": state_name,
                "description": f"{context}: {state_name}",
                "target_url": f"https://ci.example.invalid/{status_id}",
                "context": context,
                "created_at": _now(),
                "updated_at": _now(),
            },
        )

    def add_artifact(self, run_id: int, name: str, archive: bytes, repository: str | None = None) -> None:
        """What actions/upload-artifact leaves: an artifact of workflow run `run_id`, a zip."""
        state = self.repo(repository)
        artifact_id = self._new_id()
        state.artifacts[artifact_id] = {
            "id": artifact_id,
            "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}",
            "name": name,
            "size_in_bytes": len(archive),
            "url": self._api(state, f"/actions/artifacts/{artifact_id}"),
            "archive_download_url": self._api(state, f"/actions/artifacts/{artifact_id}/zip"),
            "expired": False,
            "created_at": _now(),
            "expires_at": "2099-01-01T00:00:00Z",
            "updated_at": _now(),
            "workflow_run": {"id": run_id, "repository_id": 1296269, "head_branch": "main"},
        }
        state.artifact_zips[artifact_id] = archive

    def merge(self, number: int, repository: str | None = None) -> None:
        pull = self.repo(repository).pulls[number]
        pull.update({"state": "closed", "merged": True, "merged_at": _now(), "closed_at": _now()})

    def calls(self, method: str, path: str) -> list[Request]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    # ---------------------------------------------------------------------------- server side

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(Request(method, parts.path, query, dict(handler.headers.items()), body))
            status, payload = self._route(
                method, parts.path, query, body, handler.headers.get("Authorization")
            )
        if isinstance(payload, Redirect):
            handler.send_response(status)
            handler.send_header("Location", f"{self.url}{payload.path}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        kind = "application/zip" if isinstance(payload, bytes) else "application/json; charset=utf-8"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, auth: str | None
    ) -> tuple[int, Any]:
        if match := re.fullmatch(r"/_blobs/(\d+)\.zip", path):
            # Where an artifact's download redirects: storage that wants no token (GitHub's is signed).
            blob = next((s.artifact_zips.get(int(match.group(1))) for s in self.repositories.values()), None)
            return (200, blob) if blob is not None else _not_found()
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
        for fail_method, pattern, failure in self._failures:
            if fail_method == method and pattern.fullmatch(path):
                error: dict[str, Any] = {"message": failure.message, "documentation_url": DOCS}
                if failure.errors:
                    error["errors"] = failure.errors
                return failure.status, error
        match = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        state = self.repositories.get(match.group(1).lower()) if match else None
        if match is None or state is None:
            return _not_found()
        return self._route_repository(state, method, match.group(2) or "", query, body)

    def _route_repository(
        self, state: Repository, method: str, rest: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if method == "GET" and rest == "":
            return 200, self._repository(state.full_name, state.default_branch)
        if (match := re.fullmatch(r"/collaborators/([^/]+)/permission", rest)) and method == "GET":
            return 200, self._permission(state, unquote(match.group(1)))
        if method == "GET" and rest == "/pulls":
            return 200, self._list_pulls(state, query)
        if method == "POST" and rest == "/pulls":
            return self._create_pull(state, body)
        if match := re.fullmatch(r"/pulls/(\d+)(/.*)?", rest):
            pull = state.pulls.get(int(match.group(1)))
            if pull is None:
                return _not_found()
            return self._route_pull(state, pull, method, match.group(2) or "", body)
        if (match := re.fullmatch(r"/pulls/comments/(\d+)", rest)) and method in ("GET", "PATCH"):
            comment = state.review_comments.get(int(match.group(1)))
            if comment is None:
                return _not_found()
            if method == "PATCH":
                comment["body"] = body["body"]
                state.review_comment_bodies[comment["id"]].append(body["body"])
            return 200, comment
        if (match := re.fullmatch(r"/issues/(\d+)", rest)) and method == "GET":
            issue = state.issues.get(int(match.group(1)))
            return (200, issue) if issue is not None else _not_found()
        if (match := re.fullmatch(r"/issues/(\d+)/comments", rest)) and method == "POST":
            return 201, self._create_comment(state, int(match.group(1)), body["body"])
        if (match := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            comment = self.comments.get(int(match.group(1)))
            if comment is None:
                return _not_found()
            comment["body"] = body["body"]
            self.comment_bodies[comment["id"]].append(body["body"])
            return 200, comment
        if (match := re.fullmatch(r"/commits/([^/]+)/check-runs", rest)) and method == "GET":
            runs = state.check_runs.get(match.group(1), [])
            return 200, {"total_count": len(runs), "check_runs": runs}
        if (match := re.fullmatch(r"/commits/([^/]+)/status", rest)) and method == "GET":
            return 200, self._combined_status(state, match.group(1))
        if (match := re.fullmatch(r"/actions/runs/(\d+)/artifacts", rest)) and method == "GET":
            found = [
                a
                for a in state.artifacts.values()
                if a["workflow_run"]["id"] == int(match.group(1)) and query.get("name") in (None, a["name"])
            ]
            return 200, {"total_count": len(found), "artifacts": found}
        if (match := re.fullmatch(r"/actions/artifacts/(\d+)/zip", rest)) and method == "GET":
            if int(match.group(1)) not in state.artifacts:
                return _not_found()
            return 302, Redirect(f"/_blobs/{match.group(1)}.zip")
        return _not_found()

    def _route_pull(
        self, state: Repository, pull: dict[str, Any], method: str, rest: str, body: Any
    ) -> tuple[int, Any]:
        if rest == "":
            if method == "PATCH":
                pull.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
            return 200, pull
        if rest == "/comments" and method == "GET":
            return 200, [c for c in state.review_comments.values() if c["pull_request_url"] == pull["url"]]
        if (match := re.fullmatch(r"/comments/(\d+)/replies", rest)) and method == "POST":
            return self._reply(state, pull, int(match.group(1)), body)
        if rest == "/reviews" and method == "GET":
            return 200, [r for r in state.reviews.values() if r["pull_request_url"] == pull["url"]]
        if match := re.fullmatch(r"/reviews/(\d+)(/comments)?", rest):
            review = state.reviews.get(int(match.group(1)))
            if review is None or review["pull_request_url"] != pull["url"] or method != "GET":
                return _not_found()
            if match.group(2):
                return 200, [
                    c for c in state.review_comments.values() if c["pull_request_review_id"] == review["id"]
                ]
            return 200, review
        return _not_found()

    def _api(self, state: Repository, path: str) -> str:
        return f"{self.url}/repos/{state.full_name}{path}"

    def _html(self, state: Repository, path: str) -> str:
        return f"https://github.com/{state.full_name}{path}"

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _user(self, login: str) -> dict[str, Any]:
        user_id = self.collaborators.get(login.lower(), (_user_id(login), ""))[0]
        return _user(login, user_id)

    def _repository(self, full_name: str, default_branch: str | None = None) -> dict[str, Any]:
        owner = full_name.split("/")[0]
        return {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": full_name.split("/")[1],
            "full_name": full_name,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "private": False,
            "html_url": f"https://github.com/{full_name}",
            "url": f"{self.url}/repos/{full_name}",
            "fork": full_name.lower() not in self.repositories,
            "default_branch": default_branch or self.default_branch,
        }

    def _permission(self, state: Repository, login: str) -> dict[str, Any]:
        """GET /repos/{owner}/{repo}/collaborators/{username}/permission: anyone GitHub knows gets an
        answer, `none` when they have no access."""
        user_id, role = self.collaborators.get(login.lower(), (_user_id(login), "none"))
        permission = PERMISSION_OF_ROLE[role]
        flags = {
            "admin": permission == "admin",
            "maintain": role in ("admin", "maintain"),
            "push": permission in ("admin", "write"),
            "triage": role in ("admin", "maintain", "write", "triage"),
            "pull": permission != "none",
        }
        return {
            "permission": permission,
            "role_name": role,
            "user": {
                "login": login,
                "id": user_id,
                "node_id": f"U_{user_id}",
                "type": "User",
                "site_admin": False,
                "url": f"{self.url}/users/{login}",
                "html_url": f"https://github.com/{login}",
                "permissions": flags,
                "role_name": role,
            },
        }

    def _list_pulls(self, state: Repository, query: dict[str, str]) -> list[dict[str, Any]]:
        """GET /pulls: `state` open (the default), closed or all; `head` owner:branch; newest first."""
        pulls = sorted(state.pulls.values(), key=lambda p: -p["number"])
        wanted = query.get("state", "open")
        if wanted != "all":
            pulls = [p for p in pulls if p["state"] == wanted]
        if "head" in query:
            pulls = [p for p in pulls if p["head"]["label"] == query["head"]]
        return pulls

    def _create_pull(self, state: Repository, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [name for name in ("head", "base") if not body.get(name)]
        if missing or not body.get("title"):
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "missing_field"}],
            }
        label = body["head"] if ":" in body["head"] else f"{state.owner}:{body['head']}"
        if any(p["head"]["label"] == label and p["state"] == "open" for p in state.pulls.values()):
            message = f"A pull request already exists for {label}."
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
            }
        number = max([100, *state.pulls, *state.issues]) + 1
        pull = self._new_pull(
            state,
            number,
            body["head"],
            state.full_name,
            "",
            body["title"],
            body.get("body") or "",
            draft=bool(body.get("draft")),
        )
        pull["base"]["ref"] = body["base"]
        return 201, pull

    def _new_pull(
        self,
        state: Repository,
        number: int,
        branch: str,
        repository: str,
        sha: str,
        title: str,
        body: str,
        *,
        draft: bool,
    ) -> dict[str, Any]:
        user = {"login": "octocat", "id": 1, "type": "User"}
        pull = {
            "id": 1_000_000 + number,
            "node_id": f"PR_{number}",
            "number": number,
            "url": self._api(state, f"/pulls/{number}"),
            "html_url": self._html(state, f"/pull/{number}"),
            "diff_url": self._html(state, f"/pull/{number}.diff"),
            "patch_url": self._html(state, f"/pull/{number}.patch"),
            "issue_url": self._api(state, f"/issues/{number}"),
            "state": "open",
            "locked": False,
            "title": title,
            "body": body,
            "draft": draft,
            "merged": False,
            "merged_at": None,
            "closed_at": None,
            "user": user,
            "head": {
                "label": f"{repository.split('/')[0]}:{branch}",
                "ref": branch,
                "sha": sha,
                "user": user,
                "repo": self._repository(repository),
            },
            "base": {
                "label": f"{state.owner}:{state.default_branch}",
                "ref": state.default_branch,
                "sha": "",
                "user": user,
                "repo": self._repository(state.full_name, state.default_branch),
            },
            "author_association": "MEMBER",
        }
        state.pulls[number] = pull
        return pull

    def _new_review_comment(
        self,
        state: Repository,
        pull: dict[str, Any],
        login: str,
        body: str,
        path: str,
        line: int | None,
        diff_hunk: str,
        in_reply_to: int | None,
        review_id: int,
        comment_id: int | None = None,
    ) -> dict[str, Any]:
        number = comment_id or self._new_id()
        comment = {
            "url": self._api(state, f"/pulls/comments/{number}"),
            "pull_request_review_id": review_id,
            "id": number,
            "node_id": f"PRRC_{number}",
            "diff_hunk": diff_hunk,
            "path": path,
            "commit_id": pull["head"]["sha"],
            "original_commit_id": pull["head"]["sha"],
            "user": self._user(login),
            "body": body,
            "created_at": _now(),
            "updated_at": _now(),
            "html_url": f"{pull['html_url']}#discussion_r{number}",
            "pull_request_url": pull["url"],
            "author_association": "MEMBER",
            "_links": {
                "self": {"href": self._api(state, f"/pulls/comments/{number}")},
                "html": {"href": f"{pull['html_url']}#discussion_r{number}"},
                "pull_request": {"href": pull["url"]},
            },
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": line,
            "original_line": line,
            "side": "RIGHT",
            "subject_type": "line",
        }
        if in_reply_to is not None:
            comment["in_reply_to_id"] = in_reply_to
        state.review_comments[number] = comment
        state.review_comment_bodies[number] = [body]
        return comment

    def _reply(
        self, state: Repository, pull: dict[str, Any], comment_id: int, body: dict[str, Any]
    ) -> tuple[int, Any]:
        """POST /pulls/{n}/comments/{id}/replies: the id must be a top-level review comment (GitHub does
        not support replies to replies)."""
        parent = state.review_comments.get(comment_id)
        if parent is None or parent["pull_request_url"] != pull["url"]:
            return _not_found()
        if "in_reply_to_id" in parent:
            return 422, {
                "message": "Validation Failed",
                "errors": [
                    {"resource": "PullRequestReviewComment", "code": "invalid", "field": "in_reply_to"}
                ],
            }
        review = self.add_review(
            pull["number"], "github-actions[bot]", "COMMENTED", "", repository=state.full_name
        )
        reply = self._new_review_comment(
            state,
            pull,
            "github-actions[bot]",
            body["body"],
            parent["path"],
            parent["line"],
            parent["diff_hunk"],
            comment_id,
            review["id"],
        )
        return 201, reply

    def _combined_status(self, state: Repository, sha: str) -> dict[str, Any]:
        """GET /commits/{ref}/status: `pending` when there is no status at all, as GitHub says."""
        statuses = state.statuses.get(sha, [])
        latest: dict[str, dict[str, Any]] = {}
        for status in statuses:  # newest first: the first of each context counts
            latest.setdefault(status["context"], status)
        states = [s["state"] for s in latest.values()]
        if any(s in ("failure", "error") for s in states):
            combined = "failure"
        elif states and all(s == "success" for s in states):
            combined = "success"
        else:
            combined = "pending"
        return {
            "state": combined,
            "statuses": list(latest.values()),
            "sha": sha,
            "total_count": len(latest),
            "repository": self._repository(state.full_name, state.default_branch),
            "commit_url": self._api(state, f"/commits/{sha}"),
            "url": self._api(state, f"/commits/{sha}/status"),
        }

    def _create_comment(self, state: Repository, issue: int, body: str) -> dict[str, Any]:
        number = self._new_id()
        comment = {
            "id": number,
            "node_id": f"IC_{number}",
            "url": self._api(state, f"/issues/comments/{number}"),
            "html_url": self._html(state, f"/issues/{issue}#issuecomment-{number}"),
            "issue_url": self._api(state, f"/issues/{issue}"),
            "body": body,
            "user": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "created_at": _now(),
            "updated_at": _now(),
            "author_association": "NONE",
        }
        self.comments[number] = comment
        self.comment_bodies[number] = [body]
        return comment


@dataclass(frozen=True)
class Redirect:
    path: str


def _user(login: str, user_id: int) -> dict[str, Any]:
    return {"login": login, "id": user_id, "node_id": f"U_{user_id}", "type": "User", "site_admin": False}


def _now() -> str:
    return "2024-05-01T12:00:00Z"


def _user_id(login: str) -> int:
    """A stable made-up id for a login the stub was not told about."""
    return 10_000_000 + sum(ord(c) * 31**i for i, c in enumerate(login.lower())) % 1_000_000


def _not_found() -> tuple[int, Any]:
    return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


class GitHttpServer(Served):
    """git's smart HTTP protocol on 127.0.0.1, through `git http-backend` (CGI), for the repositories
    under `root`. Requests must carry `Authorization: basic x-access-token:<token>`, as GitHub takes
    a token over HTTPS; every Authorization header received is recorded."""

    def __init__(self, root: Any, token: str) -> None:
        import base64

        self.root = root
        self.expected = "basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.authorizations: list[list[str]] = []  # the Authorization headers of each request

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        import os
        import subprocess

        given = handler.headers.get_all("Authorization") or []
        self.authorizations.append(given)
        if [value.lower() for value in given] != [self.expected.lower()]:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        parts = urlsplit(handler.path)
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",  # an authenticated user may push
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(
            ["git", "http-backend"], input=_request_body(handler), env=env, capture_output=True
        )
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
        status = next((int(value.split()[0]) for name, value in headers if name.lower() == "status"), 200)
        handler.send_response(status)
        for name, value in headers:
            if name.lower() != "status":
                handler.send_header(name, value.strip())
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    body = b""
    while True:
        size = int(handler.rfile.readline().split(b";")[0], 16)
        if size == 0:
            handler.rfile.readline()
            return body
        body += handler.rfile.read(size)
        handler.rfile.readline()
