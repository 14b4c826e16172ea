"""Which events start a run, from whom, and what task they make.

A run spends the repository's model budget and pushes branches where CI runs with the repository's
secrets, so only people who could push those branches themselves may start one: write access (admin,
maintain or write), asked of GitHub for the person who commented, reviewed or added the label
(`author_association` says nothing about this repository: MEMBER is any member of the organisation,
COLLABORATOR may be read-only), or an `--allow` entry. A dispatch needs write access to be made at
all. A comment or a review counts only when new (editing an old one does not re-run it).

On a pull request, a review comment (`pull_request_review_comment`) or a submitted review
(`pull_request_review`) whose body starts with /actsmith asks for one more round on the branch.

An `--allow` entry is `login:id` (both must match: a renamed or deleted account's login, taken by
someone else, lets nobody in), a numeric user id alone, or a login alone (whoever holds that login).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agent_cli.errors import UsageError

COMMAND = re.compile(r"\A\s*/actsmith(?=\s|\Z)(.*)", re.DOTALL)
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\[bot\])?")


@dataclass(frozen=True)
class ReviewComment:
    """A comment on a line of a pull request's diff, as GitHub sends it (an event's `comment`, or an
    item of `GET .../pulls/{n}/comments`)."""

    id: int
    author: str
    body: str
    path: str
    line: int | None  # None when the line is no longer in the diff
    diff_hunk: str
    in_reply_to: int | None  # the thread's first comment, for a reply
    review_id: int | None

    @property
    def thread(self) -> int:
        """The thread's top-level comment: the one replies go to (GitHub takes no reply to a reply)."""
        return self.in_reply_to or self.id

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReviewComment:
        line = data.get("line") or data.get("original_line")
        return cls(
            int(data["id"]),
            _login(data.get("user") or {}),
            _text(data.get("body")),
            str(data.get("path") or ""),
            line if isinstance(line, int) else None,
            _text(data.get("diff_hunk")),
            _int_or_none(data.get("in_reply_to_id")),
            _int_or_none(data.get("pull_request_review_id")),
        )


@dataclass(frozen=True)
class Trigger:
    """An event that starts a run."""

    kind: str  # issue | pull_request | review_comment | review | dispatch
    number: int | None  # the issue or pull request (None on dispatch)
    title: str
    body: str
    request: str  # the words after /actsmith, or the dispatch's task input
    actor: str  # the login of whoever commented, reviewed, added the label or dispatched
    actor_id: int | None = None
    review_id: int | None = None  # the review submitted (review)
    comment: ReviewComment | None = None  # the review comment made (review_comment)


@dataclass(frozen=True)
class Skipped:
    """An event that starts nothing, and why (a line of the step summary)."""

    reason: str


@dataclass(frozen=True)
class Access:
    """What GitHub says someone may do in the repository."""

    permission: str  # admin | write | read | none (maintain reads as write, triage as read)
    role_name: str  # admin | maintain | write | triage | read | a custom role's name | none
    user_id: int | None  # the account GitHub answered about

    @property
    def writes(self) -> bool:
        return self.permission in WRITE_ROLES or self.role_name in WRITE_ROLES


@dataclass(frozen=True)
class Allowed:
    """An `--allow` entry: a login, a user id, or both (then both must match)."""

    login: str | None  # lower case, as GitHub compares logins
    user_id: int | None

    def admits(self, login: str, user_id: int | None) -> bool:
        if self.user_id is not None and user_id != self.user_id:
            return False
        return self.login is None or login.lower() == self.login


def read_trigger(event_name: str, payload: dict[str, Any], *, label: str) -> Trigger | Skipped:
    """The trigger an event makes, before anyone's access is checked (see `admit`)."""
    sender = payload.get("sender") or {}
    if event_name == "workflow_dispatch":
        task = str((payload.get("inputs") or {}).get("task") or "").strip()
        if not task:
            raise UsageError("workflow_dispatch needs an input `task` saying what to do")
        return Trigger("dispatch", None, "", "", task, _login(sender), _id(sender))
    if event_name == "issues":
        return _labeled(payload, label, sender)
    if event_name == "issue_comment":
        return _commented(payload)
    if event_name == "pull_request_review_comment":
        return _review_commented(payload)
    if event_name == "pull_request_review":
        return _reviewed(payload)
    return Skipped(
        f"the `{event_name}` event does not start actsmith (issues, issue_comment, "
        "pull_request_review_comment, pull_request_review, workflow_dispatch do)"
    )


def admit(
    trigger: Trigger, allow: frozenset[Allowed], access_of: Callable[[str], Access]
) -> Trigger | Skipped:
    """The trigger if its actor may start a run: an `--allow` entry, else write access on GitHub
    (`access_of(login)`), for the same account the event names."""
    if trigger.kind == "dispatch" or any(entry.admits(trigger.actor, trigger.actor_id) for entry in allow):
        return trigger
    if not trigger.actor:
        return Skipped("the event names nobody whose access could be checked")
    access = access_of(trigger.actor)
    if trigger.actor_id is not None and access.user_id not in (None, trigger.actor_id):
        return Skipped(
            f"@{trigger.actor} is now another account than the one that made this event "
            f"(id {access.user_id}, not {trigger.actor_id})"
        )
    if access.writes:
        return trigger
    role = access.role_name if access.role_name not in ("", "none") else access.permission
    return Skipped(
        f"@{trigger.actor} ({role} access) may not start actsmith: only people with write access to the "
        "repository can, and the workflow's `allow` entries"
    )


def _labeled(payload: dict[str, Any], label: str, sender: dict[str, Any]) -> Trigger | Skipped:
    added = (payload.get("label") or {}).get("name")
    if payload.get("action") != "labeled" or added != label:
        return Skipped(f"this issue event is not the label `{label}` being added")
    issue = payload.get("issue") or {}
    return Trigger(
        "issue",
        int(issue["number"]),
        _text(issue.get("title")),
        _text(issue.get("body")),
        "",
        _login(sender),  # who added the label, not who opened the issue
        _id(sender),
    )


def _commented(payload: dict[str, Any]) -> Trigger | Skipped:
    comment = payload.get("comment") or {}
    match = COMMAND.match(_text(comment.get("body")))
    if payload.get("action") != "created" or match is None:
        return Skipped("the comment does not start with /actsmith")
    author = comment.get("user") or {}
    issue = payload.get("issue") or {}
    kind = "pull_request" if issue.get("pull_request") else "issue"
    return Trigger(
        kind,
        int(issue["number"]),
        _text(issue.get("title")),
        _text(issue.get("body")),
        match.group(1).strip(),
        _login(author),
        _id(author),
    )


def _review_commented(payload: dict[str, Any]) -> Trigger | Skipped:
    comment = payload.get("comment") or {}
    match = COMMAND.match(_text(comment.get("body")))
    if payload.get("action") != "created" or match is None:
        return Skipped("the review comment does not start with /actsmith")
    on_pull = _on_pull("review_comment", payload, match.group(1), comment.get("user") or {})
    return replace(on_pull, comment=ReviewComment.from_json(comment))


def _reviewed(payload: dict[str, Any]) -> Trigger | Skipped:
    review = payload.get("review") or {}
    match = COMMAND.match(_text(review.get("body")))
    if payload.get("action") != "submitted" or match is None:
        return Skipped("the review's body does not start with /actsmith")
    on_pull = _on_pull("review", payload, match.group(1), review.get("user") or {})
    return replace(on_pull, review_id=int(review["id"]))


def _on_pull(kind: str, payload: dict[str, Any], request: str, author: dict[str, Any]) -> Trigger:
    """A trigger asked by `author` on the event's pull request."""
    pull = payload.get("pull_request") or {}
    return Trigger(
        kind,
        int(pull["number"]),
        _text(pull.get("title")),
        _text(pull.get("body")),
        request.strip(),
        _login(author),
        _id(author),
    )


def starts_actsmith(body: str) -> bool:
    """Whether a comment's or a review's body is an /actsmith command."""
    return COMMAND.match(_text(body)) is not None


def parse_allow(values: list[str]) -> frozenset[Allowed]:
    """`--allow` entries, repeated or comma/space separated: `login`, `login:id` or `id`."""
    return frozenset(_allowed(entry) for value in values for entry in re.split(r"[\s,]+", value) if entry)


def _allowed(entry: str) -> Allowed:
    login, colon, number = entry.lstrip("@").partition(":")
    if not colon and login.isdigit():
        login, number = "", login
    if (colon and not (login and number.isdigit())) or (login and not LOGIN.fullmatch(login)):
        raise UsageError(
            f"--allow {entry!r} is not `login`, `login:id` or a numeric user id "
            "(a user's id: `gh api users/LOGIN --jq .id`)"
        )
    return Allowed(login.lower() or None, int(number) if number else None)


def _login(user: dict[str, Any]) -> str:
    return str(user.get("login") or "")


def _id(user: dict[str, Any]) -> int | None:
    value = user.get("id")
    return value if isinstance(value, int) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return str(value or "").replace("\r\n", "\n")
