"""A small GitHub REST server on 127.0.0.1 for `actsmith ci` tests.

It serves the endpoints actsmith uses, with the response shapes GitHub documents (the repository,
pull requests, issue comments, a collaborator's permission), keeps their state (comments with every
body they had, pull requests with their edits) and records every request. Tests script failures by
method and path (`fail`), seed the pull requests an event refers to (`add_pull`) and the people who
have access (`add_collaborator`; anyone else has none). Requests without the expected token are
answered 401, as GitHub does. Standard library only, loopback only.
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
class GitHubStub(Served):
    repository: str
    token: str
    default_branch: str = "main"
    requests: list[Request] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    comment_bodies: dict[int, list[str]] = field(default_factory=dict)  # every body a comment had
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    collaborators: dict[str, tuple[int, str]] = field(default_factory=dict)  # login (lower) -> (id, role)
    _failures: list[tuple[str, re.Pattern[str], Failure]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 900_000

    # ------------------------------------------------------------------------------ test side

    def fail(
        self, method: str, path: str, status: int, message: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        """Answer requests whose path fully matches the regex `path` with an error, from now on."""
        self._failures.append((method, re.compile(path), Failure(status, message, errors)))

    def add_pull(self, number: int, head_branch: str, head_repository: str, head_sha: str) -> dict[str, Any]:
        """A pull request that exists before the run (the one an event comments on)."""
        return self._new_pull(number, head_branch, head_repository, head_sha, f"PR {number}", "", draft=False)

    def add_collaborator(self, login: str, user_id: int, role: str) -> None:
        """Someone with a role on the repository: admin, maintain, write, triage or read."""
        self.collaborators[login.lower()] = (user_id, role)

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
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, auth: str | None
    ) -> tuple[int, Any]:
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
        for fail_method, pattern, failure in self._failures:
            if fail_method == method and pattern.fullmatch(path):
                error: dict[str, Any] = {"message": failure.message, "documentation_url": DOCS}
                if failure.errors:
                    error["errors"] = failure.errors
                return failure.status, error
        prefix = f"/repos/{self.repository}"
        if not path.startswith(prefix):
            return _not_found()
        rest = path[len(prefix) :]
        if method == "GET" and rest == "":
            return 200, self._repository()
        if (match := re.fullmatch(r"/collaborators/([^/]+)/permission", rest)) and method == "GET":
            return 200, self._permission(unquote(match.group(1)))
        if method == "GET" and rest == "/pulls":
            return 200, self._list_pulls(query)
        if method == "POST" and rest == "/pulls":
            return self._create_pull(body)
        if match := re.fullmatch(r"/pulls/(\d+)", rest):
            pull = self.pulls.get(int(match.group(1)))
            if pull is None:
                return _not_found()
            if method == "PATCH":
                pull.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
            return 200, pull
        if (match := re.fullmatch(r"/issues/(\d+)/comments", rest)) and method == "POST":
            return 201, self._create_comment(int(match.group(1)), body["body"])
        if (match := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            comment = self.comments.get(int(match.group(1)))
            if comment is None:
                return _not_found()
            comment["body"] = body["body"]
            self.comment_bodies[comment["id"]].append(body["body"])
            return 200, comment
        return _not_found()

    def _api(self, path: str) -> str:
        return f"{self.url}/repos/{self.repository}{path}"

    def _html(self, path: str) -> str:
        return f"https://github.com/{self.repository}{path}"

    def _repository(self, full_name: str | None = None) -> dict[str, Any]:
        name = full_name or self.repository
        owner = name.split("/")[0]
        return {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": name.split("/")[1],
            "full_name": name,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "private": False,
            "html_url": f"https://github.com/{name}",
            "url": f"{self.url}/repos/{name}",
            "fork": name != self.repository,
            "default_branch": self.default_branch,
        }

    def _permission(self, login: str) -> dict[str, Any]:
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

    def _list_pulls(self, query: dict[str, str]) -> list[dict[str, Any]]:
        pulls = list(self.pulls.values())
        if "state" in query and query["state"] != "all":
            pulls = [p for p in pulls if p["state"] == query["state"]]
        if "head" in query:
            pulls = [p for p in pulls if p["head"]["label"] == query["head"]]
        return pulls

    def _create_pull(self, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [name for name in ("head", "base") if not body.get(name)]
        if missing or not body.get("title"):
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "missing_field"}],
            }
        owner = self.repository.split("/")[0]
        label = body["head"] if ":" in body["head"] else f"{owner}:{body['head']}"
        if any(p["head"]["label"] == label and p["state"] == "open" for p in self.pulls.values()):
            message = f"A pull request already exists for {label}."
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
            }
        number = max([100, *self.pulls]) + 1
        pull = self._new_pull(
            number,
            body["head"],
            self.repository,
            "",
            body["title"],
            body.get("body") or "",
            draft=bool(body.get("draft")),
        )
        pull["base"]["ref"] = body["base"]
        return 201, pull

    def _new_pull(
        self, number: int, branch: str, repository: str, sha: str, title: str, body: str, *, draft: bool
    ) -> dict[str, Any]:
        user = {"login": "octocat", "id": 1, "type": "User"}
        pull = {
            "id": 1_000_000 + number,
            "node_id": f"PR_{number}",
            "number": number,
            "url": self._api(f"/pulls/{number}"),
            "html_url": self._html(f"/pull/{number}"),
            "diff_url": self._html(f"/pull/{number}.diff"),
            "patch_url": self._html(f"/pull/{number}.patch"),
            "issue_url": self._api(f"/issues/{number}"),
            "state": "open",
            "locked": False,
            "title": title,
            "body": body,
            "draft": draft,
            "user": user,
            "head": {
                "label": f"{repository.split('/')[0]}:{branch}",
                "ref": branch,
                "sha": sha,
                "user": user,
                "repo": self._repository(repository),
            },
            "base": {
                "label": f"{self.repository.split('/')[0]}:{self.default_branch}",
                "ref": self.default_branch,
                "sha": "",
                "user": user,
                "repo": self._repository(),
            },
            "author_association": "MEMBER",
        }
        self.pulls[number] = pull
        return pull

    def _create_comment(self, issue: int, body: str) -> dict[str, Any]:
        self._next_id += 1
        number = self._next_id
        comment = {
            "id": number,
            "node_id": f"IC_{number}",
            "url": self._api(f"/issues/comments/{number}"),
            "html_url": self._html(f"/issues/{issue}#issuecomment-{number}"),
            "issue_url": self._api(f"/issues/{issue}"),
            "body": body,
            "user": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "created_at": "2024-05-01T12:00:00Z",
            "updated_at": "2024-05-01T12:00:00Z",
            "author_association": "NONE",
        }
        self.comments[number] = comment
        self.comment_bodies[number] = [body]
        return comment


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
