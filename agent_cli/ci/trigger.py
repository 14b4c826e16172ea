"""Which events start a run, from whom, and what task they make.

A run spends the repository's model budget and pushes branches, so only people the repository
trusts may start one: adding a label already needs triage access; a comment counts only from an
OWNER, MEMBER or COLLABORATOR (or a login the workflow allows by name), and only when new (editing
an old comment does not re-run it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent_cli.errors import UsageError

TRUSTED = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
COMMAND = re.compile(r"\A\s*/actsmith(?=\s|\Z)(.*)", re.DOTALL)


@dataclass(frozen=True)
class Trigger:
    """An event that starts a run."""

    kind: str  # issue | pull_request | dispatch
    number: int | None  # the issue or pull request (None on dispatch)
    title: str
    body: str
    request: str  # the words after /actsmith, or the dispatch's task input
    actor: str


@dataclass(frozen=True)
class Skipped:
    """An event that starts nothing, and why (a line of the step summary)."""

    reason: str


def read_trigger(
    event_name: str, payload: dict[str, Any], *, label: str, allow: frozenset[str]
) -> Trigger | Skipped:
    actor = str((payload.get("sender") or {}).get("login") or "")
    if event_name == "workflow_dispatch":
        task = str((payload.get("inputs") or {}).get("task") or "").strip()
        if not task:
            raise UsageError("workflow_dispatch needs an input `task` saying what to do")
        return Trigger("dispatch", None, "", "", task, actor)
    if event_name == "issues":
        return _labeled(payload, label, actor)
    if event_name == "issue_comment":
        return _commented(payload, allow)
    return Skipped(
        f"the `{event_name}` event does not start actsmith (issues, issue_comment, workflow_dispatch do)"
    )


def _labeled(payload: dict[str, Any], label: str, actor: str) -> Trigger | Skipped:
    added = (payload.get("label") or {}).get("name")
    if payload.get("action") != "labeled" or added != label:
        return Skipped(f"this issue event is not the label `{label}` being added")
    issue = payload.get("issue") or {}
    return Trigger(
        "issue", int(issue["number"]), _text(issue.get("title")), _text(issue.get("body")), "", actor
    )


def _commented(payload: dict[str, Any], allow: frozenset[str]) -> Trigger | Skipped:
    comment = payload.get("comment") or {}
    match = COMMAND.match(_text(comment.get("body")))
    if payload.get("action") != "created" or match is None:
        return Skipped("the comment does not start with /actsmith")
    author = str((comment.get("user") or {}).get("login") or "")
    association = str(comment.get("author_association") or "NONE")
    if association not in TRUSTED and author.lower() not in allow:
        return Skipped(
            f"@{author} ({association}) may not start actsmith: only owners, members and collaborators "
            "can, and logins the workflow allows"
        )
    issue = payload.get("issue") or {}
    kind = "pull_request" if issue.get("pull_request") else "issue"
    return Trigger(
        kind,
        int(issue["number"]),
        _text(issue.get("title")),
        _text(issue.get("body")),
        match.group(1).strip(),
        author,
    )


def parse_allow(values: list[str]) -> frozenset[str]:
    """Logins from repeated or comma/space separated --allow values, compared without case as GitHub does."""
    return frozenset(
        login.lstrip("@").lower() for value in values for login in re.split(r"[\s,]+", value) if login
    )


def _text(value: Any) -> str:
    return str(value or "").replace("\r\n", "\n")
