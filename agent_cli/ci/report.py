"""What a run tells people: one conclusion, and the Markdown the comment, the step summary and the
pull request body show (prompts/ci_report.md). It is built from the session's own events, so it
says what the run did, never more: a conclusion of success needs a session that finished. Whatever
the model could have written in it is defanged (defang.py), and all of it passes the redactor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.ci.defang import Defanger, code_span, fence_for
from agent_cli.events import Edited, Ended, Event, Notice
from agent_cli.outcome import Category
from agent_cli.templates import render
from agent_cli.trajectory import Redactor
from agent_cli.ui import format_cost

if TYPE_CHECKING:
    from agent_cli.ci.actions_env import ActionsEnv
    from agent_cli.ci.github_api import PullLink
    from agent_cli.ci.trigger import Trigger

# A session's category, as the workflow's `conclusion` output. Any category not named here (the
# model's or the machine's failure, an interrupt, one added later) is a failure, so a new category
# can never read as success.
CONCLUSIONS = {
    Category.SUCCEEDED: "success",
    Category.NO_CHANGE: "success",
    Category.UNTESTED: "untested",
    Category.TESTS_FAILED: "tests_failed",
    Category.LIMIT_REACHED: "limit_reached",
}
HEADLINES = {
    "success": "finished",
    "untested": "finished, but no tests checked the change",
    "tests_failed": "the tests still fail",
    "limit_reached": "stopped before finishing",
    "failed": "failed",
}
PATCH_NOTE_ROOM = 600  # characters kept free for the note that says where the rest of a cut patch is


@dataclass
class RunWatcher:
    """Subscribes to the session's events and keeps the warnings shown along the way (a baseline
    that could not run, a setup problem) and the protected paths the harness put back; the outcome
    is the session's own (`Session.outcome`)."""

    warnings: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)  # protected paths the harness put back

    def emit(self, event: Event) -> None:
        if isinstance(event, Notice) and event.level == "warning":
            self.warnings.append(event.message)
        elif isinstance(event, Edited):
            self.undone += [path for path in event.undone if path not in self.undone]


@dataclass
class Report:
    trigger: Trigger
    env: ActionsEnv
    ended: Ended | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # a failure outside the session's own status: GitHub, a push, set-up
    branch: str | None = None  # the branch the work was pushed to
    commit: str | None = None
    pull: PullLink | None = None
    patch_file: Path | None = None  # a fork's patch, in full, in the run's artifact folder
    reverted: list[str] = field(default_factory=list)  # workflow files whose changes were not pushed
    notes: list[str] = field(default_factory=list)  # what the workflow's settings left out, and why
    issue: int | None = None  # the issue a review round's pull request resolves
    redactor: Redactor = field(default_factory=Redactor)

    @property
    def keep(self) -> int | None:
        """The issue a closing keyword may still name: the one that started the run, or that the
        pull request under review resolves."""
        return self.issue if self.issue is not None else self.trigger.number

    @property
    def conclusion(self) -> str:
        if self.error is not None or self.ended is None:
            return "failed"
        return CONCLUSIONS.get(self.ended.category, "failed")

    @property
    def headline(self) -> str:
        text = HEADLINES[self.conclusion]
        if (
            self.conclusion == "success"
            and self.ended
            and self.ended.tests
            and self.ended.tests.state == "passed"
        ):
            text = "finished, the tests pass"
        return text

    @property
    def delivered(self) -> list[str]:
        """The files changed that can be pushed (a workflow file taken out of the commit is not one)."""
        changed = self.ended.files_changed if self.ended else []
        return [path for path in changed if path not in self.reverted]

    @property
    def changed(self) -> bool:
        return bool(self.delivered)

    @property
    def cost(self) -> str:
        usage = self.ended.usage if self.ended else None
        return format_cost(usage.cost) if usage is not None else "none: no model call was made"

    def outputs(self) -> dict[str, str]:
        usage = self.ended.usage if self.ended else None
        cost = usage.cost if usage is not None else 0.0
        return {
            "conclusion": self.conclusion,
            "pr-url": self.pull.url if self.pull else "",
            "branch": self.branch or "",
            "cost-usd": "" if cost is None else f"{cost:.4f}",
        }

    def pull_body(self) -> str:
        return self._render("pull", None, None)

    def comment(self, patch: str | None = None) -> str:
        """The comment's final text (and the step summary's), a fork's patch included as far as
        GitHub's limit on a comment allows."""
        from agent_cli.ci.github_api import COMMENT_LIMIT

        if patch is None:
            return self._render("comment", None, None)
        patch = self.redactor.text(patch)  # before it is cut to fit: a redaction may be longer
        room = COMMENT_LIMIT - len(self._render("comment", "", None)) - PATCH_NOTE_ROOM
        shown, cut = cut_lines(patch, room)
        return self._render("comment", shown, cut)

    def show(self, text: str) -> str:
        """Text the model may have written (its summary, test names, file names), as Markdown that
        does nothing but read."""
        defanger = Defanger(self.env.repository, self.keep)
        return defanger.markdown(self.redactor.text(text))

    def _render(self, place: str, patch: str | None, cut: int | None) -> str:
        from agent_cli.candidates.render import markdown_table

        candidates = self.ended.candidates if self.ended else None
        text = render(
            "ci_report",
            place=place,
            r=self,
            end=self.ended,
            show=self.show,
            code=code_span,
            patch=patch,
            cut=cut,
            fence=fence_for(patch or ""),
            stat_fence=fence_for(self.ended.diff_stat if self.ended else ""),
            candidates=markdown_table(candidates, show=self.show, code=code_span) if candidates else None,
        )
        return self.redactor.text(text)


def clip(title: str, room: int = 80) -> str:
    """A pull request's title, at most `room` characters (GitHub shows no more in its lists)."""
    return title if len(title) <= room else title[: room - 3].rstrip() + "..."


def cut_lines(text: str, room: int) -> tuple[str, int]:
    """`text` as whole lines within `room` characters, and how many lines were left out."""
    if len(text) <= room:
        return text, 0
    lines = text.splitlines(keepends=True)
    kept, size = [], 0
    for line in lines:
        if size + len(line) > room:
            break
        kept.append(line)
        size += len(line)
    return "".join(kept), len(lines) - len(kept)
