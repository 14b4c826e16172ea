"""The review loop: a round is one more session on a pull request's branch, asked for by a review
comment, a submitted review, or an /actsmith comment on a pull request of actsmith's own.

A round's task holds what the reviewers asked (each comment with its file, line, diff hunk and the
thread before it), and goes on with the conversation of the round before when it can find it:
every commit actsmith pushes carries two trailers, the session's run id and the artifact its run
folder was uploaded as,

    Actsmith-Run-Id: 20240501-120000-fix-greet
    Actsmith-Artifact: actsmith-4201-1

so the next round looks for the newest such commit on the branch (never one the base branch has
too) and reads that session's `conversation.json`: in the checkout when the runner kept it, else
from the artifact. Without it (the first round on someone's pull request, an expired artifact, a
fork, whose commits could claim anything) the round starts fresh, with the pull request, the issue
it resolves and its diff so far.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.ci.report import cut_lines
from agent_cli.errors import ActsmithError
from agent_cli.gitops import GitError, git
from agent_cli.templates import render
from agent_cli.workspace import RUNS_DIR, Workspace

if TYPE_CHECKING:
    from agent_cli.ci.github_api import GitHub, IssueText, PullHead
    from agent_cli.ci.trigger import ReviewComment
    from agent_cli.session import Session
    from agent_cli.trajectory import Redactor

TRAILER_RUN = "Actsmith-Run-Id"
TRAILER_ARTIFACT = "Actsmith-Artifact"
CONVERSATION = "conversation.json"  # in a CI run's folder, and so in its artifact
DIFF_ROOM = 30_000  # characters of the diff so far a fresh round's task shows
SEARCHED_COMMITS = 200  # how far back on the branch the previous round is looked for
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_ARTIFACT = re.compile(r"actsmith-(\d+)-(\d+)")


@dataclass(frozen=True)
class Asked:
    """A review comment the round answers, and its thread up to it."""

    comment: ReviewComment
    earlier: list[ReviewComment] = field(default_factory=list)


@dataclass(frozen=True)
class PreviousRound:
    """The newest commit actsmith pushed on the branch, and what came on top of it since."""

    commit: str
    run_id: str
    artifact: str
    since: list[str]  # "<short sha> <subject>", newest first


@dataclass
class Round:
    kind: str  # review_comment | review | pull_request (an /actsmith comment on actsmith's pull request)
    actor: str
    request: str  # the words after /actsmith
    pull: PullHead
    asked: list[Asked]
    issue: IssueText | None = None  # the issue the pull request says it resolves
    base_sha: str | None = None
    previous: PreviousRound | None = None
    saved: dict[str, Any] | None = None  # the previous round's conversation, found
    diff: str = ""  # the pull request's changes so far (a fresh round's)
    diff_cut: int = 0  # lines of it left out
    note: str = ""  # how the round began, for the report

    @property
    def fresh(self) -> bool:
        return self.saved is None

    def message(self, repository: str) -> str:
        """The task of a fresh round, or the next message of a continued conversation."""
        return render("ci_round", r=self, repository=repository).strip()


def asked_in(
    trigger_comment: ReviewComment | None, asked: list[ReviewComment], every: list[ReviewComment]
) -> list[Asked]:
    """Each comment asked about with the comments of its thread before it (`every`: the pull
    request's review comments)."""
    comments = [trigger_comment] if trigger_comment is not None else asked
    return [
        Asked(comment, [c for c in every if c.thread == comment.thread and c.id < comment.id])
        for comment in comments
    ]


def trailers(run_id: str, artifact: str) -> dict[str, str]:
    return {TRAILER_RUN: run_id, TRAILER_ARTIFACT: artifact}


def find_previous(root: Path, start: str, base: str | None) -> PreviousRound | None:
    """The newest commit from `start` back (not on `base`) that actsmith pushed, by its trailers."""
    excluded = [f"^{base}"] if base else []
    out = git(root, "log", f"--max-count={SEARCHED_COMMITS}", "--format=%H%x1f%s%x1f%B%x1e", start, *excluded)
    since: list[str] = []
    for record in out.decode("utf-8", "replace").split("\x1e"):
        if not record.strip():
            continue
        commit, subject, message = record.strip("\n").split("\x1f", 2)
        values = _trailers_of(message)
        run_id, artifact = values.get(TRAILER_RUN, ""), values.get(TRAILER_ARTIFACT, "")
        if _RUN_ID.fullmatch(run_id) and ".." not in run_id and _ARTIFACT.fullmatch(artifact):
            return PreviousRound(commit, run_id, artifact, since)
        since.append(f"{commit[:12]} {subject}")
    return None


def _trailers_of(message: str) -> dict[str, str]:
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    values = {}
    for line in paragraphs[-1].splitlines():
        key, colon, value = line.partition(": ")
        if colon and key in (TRAILER_RUN, TRAILER_ARTIFACT):
            values[key] = value.strip()
    return values


def recall(found: Round, root: Path, start: str, github: GitHub, *, trusted: bool) -> None:
    """Give the round the previous round's conversation, found from the trailers of the branch's
    commits (`trusted`: not a fork's), or else the pull request's diff so far; its note says which."""
    found.previous = find_previous(root, start, found.base_sha) if trusted else None
    if found.previous is not None:
        found.saved, source = load_conversation(root, found.previous, github)
        if found.saved is not None:
            found.note = (
                "This round went on with the conversation of the previous one "
                f"(run `{found.previous.run_id}`, from {source})."
            )
        else:
            found.note = (
                f"The previous round's conversation was not found ({source}): "
                "this round started afresh, with the pull request's diff so far."
            )
    if found.saved is None:
        found.diff, found.diff_cut = diff_so_far(root, found.base_sha, start)


def load_conversation(
    root: Path, previous: PreviousRound, github: GitHub
) -> tuple[dict[str, Any] | None, str]:
    """The previous round's conversation, from the checkout's run folder or the run's artifact, and
    where it came from (or why it was not found)."""
    local = _local_conversation(root, previous.run_id)
    if local is not None:
        return local, "the run folder this runner kept"
    match = _ARTIFACT.fullmatch(previous.artifact)
    assert match is not None  # find_previous takes no other
    try:
        data = github.artifact_file(int(match.group(1)), previous.artifact, CONVERSATION)
    except ActsmithError as error:
        return None, f"its artifact {previous.artifact} could not be read ({error})"
    saved = _conversation(data)
    if saved is None:
        return None, f"its artifact {previous.artifact} is gone or holds no conversation"
    return saved, f"the artifact `{previous.artifact}`"


def _local_conversation(root: Path, run_id: str) -> dict[str, Any] | None:
    """A run folder this runner kept (a self-hosted runner's checkout): only a file the run wrote,
    never one the repository tracks or a link out of the runs folder."""
    runs = os.path.realpath(root / RUNS_DIR / "runs")
    path = os.path.realpath(root / RUNS_DIR / "runs" / run_id / CONVERSATION)
    if not path.startswith(runs + os.sep) or not os.path.isfile(path):
        return None
    try:
        git(root, "ls-files", "--error-unmatch", "--", os.path.relpath(path, os.path.realpath(root)))
        return None  # tracked: the repository's content, not a run's
    except GitError:
        pass
    try:
        return _conversation(Path(path).read_bytes())
    except OSError:
        return None


def _conversation(data: bytes | None) -> dict[str, Any] | None:
    """A saved conversation, if `data` is one."""
    if data is None:
        return None
    try:
        saved = json.loads(data)
    except ValueError:
        return None
    entries = saved.get("conversation") if isinstance(saved, dict) else None
    if not isinstance(entries, list) or not entries or not isinstance(saved.get("last_step_number"), int):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("role", "kind", "content")
        ):
            return None
    return saved


def diff_so_far(root: Path, base: str | None, start: str) -> tuple[str, int]:
    """The pull request's changes (from where it left its base), cut to fit a task."""
    if base is None:
        return "", 0
    diff = Workspace(root, root).diff(base, start, from_fork_point=True)
    return cut_lines(diff, DIFF_ROOM)


# ------------------------------------------------------------------------ the session's conversation
# The two places a round reaches the conversation a session holds. When the Session offers its
# conversation API (its state, and resuming one), these become calls to it.


def save_conversation(session: Session, folder: Path, redactor: Redactor) -> None:
    """The session's conversation into its run folder (so into the artifact), secrets redacted."""
    if session.agent is None or session.turn_count == 0:
        return
    state = session.conversation_state()
    data = {"conversation": state.conversation, "last_step_number": state.last_step_number}
    (folder / CONVERSATION).write_text(json.dumps(redactor.value(data)), encoding="utf-8")


def resume_conversation(session: Session, saved: dict[str, Any]) -> None:
    """Go on with a saved conversation in this session's new sandbox (the model is told its variables
    are gone)."""
    from agent_cli.session import ConversationState

    session.resume(ConversationState(saved["conversation"], saved["last_step_number"]))
