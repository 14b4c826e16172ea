"""The review loop's parts that need no sandbox: the review events as triggers, where the previous
round is found (commit trailers on the branch, never the base's), which saved conversation is
trusted, the round's task, the issue a pull request resolves, and the trailers the commit gets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import git, make_repo

from agent_cli.ci import rounds
from agent_cli.ci.defang import Defanger, closed_issues
from agent_cli.ci.github_api import IssueText, PullHead
from agent_cli.ci.guard import guard_commit
from agent_cli.ci.trigger import ReviewComment, Skipped, Trigger, read_trigger, starts_actsmith

FIXTURES = Path(__file__).parent / "fixtures" / "github"
SAVED = {"conversation": [{"role": "system", "kind": "system", "content": "you are"}], "last_step_number": 3}


def event(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# ------------------------------------------------------------------------------------------ triggers


def test_a_review_comment_and_a_review_make_their_triggers():
    commented = read_trigger("pull_request_review_comment", event("pull_request_review_comment"), label="x")
    assert isinstance(commented, Trigger)
    assert (commented.kind, commented.number, commented.request) == (
        "review_comment",
        101,
        "add a docstring to greet()",
    )
    assert (commented.actor, commented.actor_id) == ("monalisa", 583231)
    assert commented.comment == ReviewComment(
        1200001,
        "monalisa",
        "/actsmith add a docstring to greet()",
        "app.py",
        2,
        "@@ -1,2 +1,2 @@\n def greet():\n-    return 'hi'\n+    return 'hello'",
        None,
        1100001,
    )
    reviewed = read_trigger("pull_request_review", event("pull_request_review"), label="x")
    assert isinstance(reviewed, Trigger)
    assert (reviewed.kind, reviewed.number, reviewed.review_id, reviewed.request) == (
        "review",
        101,
        1100002,
        "please address these",
    )


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("pull_request_review_comment", {"action": "edited"}),
        ("pull_request_review_comment", {"comment": {"body": "looks good", "id": 1}}),
        ("pull_request_review", {"action": "dismissed"}),
        ("pull_request_review", {"review": {"body": "LGTM /actsmith", "id": 2}}),
    ],
)
def test_review_events_that_ask_nothing_start_nothing(name, change):
    payload = event(name) | change
    assert isinstance(read_trigger(name, payload, label="x"), Skipped)


def test_a_reply_in_a_thread_is_answered_in_its_first_comment():
    reply = ReviewComment(7, "a", "b", "p", 1, "", in_reply_to=3, review_id=None)
    assert reply.thread == 3 and ReviewComment(3, "a", "b", "p", 1, "", None, None).thread == 3
    assert starts_actsmith("  /actsmith do it") and not starts_actsmith("/actsmithing")


# ----------------------------------------------------------------------------- the previous round


def commit(repo: Path, name: str, message: str) -> str:
    (repo / name).write_text(message)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def trailed(run_id: str, artifact: str = "actsmith-4201-1") -> str:
    return f"did it\n\nactsmith run: {run_id}\n\nActsmith-Run-Id: {run_id}\nActsmith-Artifact: {artifact}"


def test_the_previous_round_is_the_newest_trailed_commit_on_the_branch_and_not_the_bases(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    commit(repo, "merged.txt", trailed("20240101-old"))  # another pull request's, squash-merged
    base = git(repo, "rev-parse", "HEAD").strip()
    assert rounds.find_previous(repo, base, base) is None
    git(repo, "checkout", "-q", "-b", "feature")
    assert rounds.find_previous(repo, "HEAD", base) is None  # nothing of the branch's own yet
    first = commit(repo, "one.txt", trailed("20240501-first"))
    commit(repo, "two.txt", trailed("20240502-second", "actsmith-4202-1"))
    commit(repo, "three.txt", "a reviewer's fixup")
    found = rounds.find_previous(repo, "HEAD", base)
    assert found is not None and (found.run_id, found.artifact) == ("20240502-second", "actsmith-4202-1")
    assert [line.split(" ", 1)[1] for line in found.since] == ["a reviewer's fixup"]
    # Trailers that could point outside the runs folder or at no artifact are no trailers.
    commit(repo, "four.txt", trailed("../../etc"))
    commit(repo, "five.txt", trailed("20240503-x", "someone-else-1"))
    assert rounds.find_previous(repo, "HEAD", base).run_id == "20240502-second"  # type: ignore[union-attr]
    assert first


def write_saved(root: Path, run_id: str, data: object) -> Path:
    path = root / ".actsmith" / "runs" / run_id / rounds.CONVERSATION
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


class NoArtifacts:
    def artifact_file(self, run_id: int, artifact: str, member: str) -> bytes | None:
        return None


def test_a_conversation_in_the_runs_folder_is_used_but_not_one_the_repository_tracks(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    previous = rounds.PreviousRound("abc", "20240501-x", "actsmith-1-1", [])
    write_saved(repo, "20240501-x", SAVED)
    saved, source = rounds.load_conversation(repo, previous, NoArtifacts())  # type: ignore[arg-type]
    assert saved == SAVED and "run folder" in source
    git(repo, "add", "-f", ".actsmith")
    git(repo, "commit", "-q", "-m", "a conversation in the repository")
    saved, source = rounds.load_conversation(repo, previous, NoArtifacts())  # type: ignore[arg-type]
    assert saved is None and "actsmith-1-1" in source


def test_a_link_out_of_the_runs_folder_is_not_followed(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / rounds.CONVERSATION).write_text(json.dumps(SAVED))
    (repo / ".actsmith" / "runs").mkdir(parents=True)
    os.symlink(elsewhere, repo / ".actsmith" / "runs" / "20240501-x")
    previous = rounds.PreviousRound("abc", "20240501-x", "actsmith-1-1", [])
    assert rounds.load_conversation(repo, previous, NoArtifacts())[0] is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps({"conversation": [], "last_step_number": 1}).encode(),
        json.dumps({"conversation": [{"role": "user"}], "last_step_number": 1}).encode(),
        json.dumps({"conversation": SAVED["conversation"], "last_step_number": "3"}).encode(),
    ],
)
def test_only_a_well_formed_conversation_is_taken(data):
    assert rounds._conversation(data) is None
    assert rounds._conversation(json.dumps(SAVED).encode()) == SAVED


# --------------------------------------------------------------------------------------- the task


def a_round(**changes) -> rounds.Round:
    pull = PullHead(
        101,
        "https://github.com/o/r/pull/101",
        "actsmith/issue-5",
        "o/r",
        "actsmith: Greet",
        "Fixes #5",
        "main",
    )
    asked = [
        rounds.Asked(
            ReviewComment(11, "monalisa", "Document greet().", "app.py", 1, "@@ -1 +1 @@\n-a\n+b", None, 9),
            [ReviewComment(10, "hubot", "Is this documented?", "app.py", 1, "", None, 8)],
        ),
        rounds.Asked(ReviewComment(12, "monalisa", "Add a test.", "tests/t.py", None, "", None, 9)),
    ]
    found = rounds.Round(
        "review", "monalisa", "please address these", pull, asked, IssueText(5, "Greet", "say hello")
    )
    for name, value in changes.items():
        setattr(found, name, value)
    return found


def test_a_fresh_round_holds_the_pull_request_its_issue_and_its_diff_so_far():
    text = a_round(base_sha="f" * 40, diff="+hello\n", diff_cut=3).message("o/r")
    assert (
        text.splitlines()[0] == "Review of pull request #101 by @monalisa: please address these (2 comments)"
    )
    for part in (
        'pull request #101 of o/r, "actsmith: Greet", into main',
        "It resolves issue #5: Greet\n\nsay hello",
        f"`git diff {'f' * 12}...HEAD`",
        "```diff\n+hello\n```",
        "(3 more lines of the diff not shown",
        "## Comment 1: app.py, line 1",
        "Earlier in this thread, @hubot wrote: Is this documented?",
        "@monalisa wrote: Document greet().",
        "## Comment 2: tests/t.py\n",
        "Address every comment above in this one round",
    ):
        assert part in text


def test_a_continued_round_names_what_was_pushed_since_and_repeats_nothing_else():
    previous = rounds.PreviousRound("c" * 40, "r1", "actsmith-1-1", ["abc123 a reviewer's fixup"])
    text = a_round(saved=SAVED, previous=previous).message("o/r")
    assert "with these commits pushed on top since your last round:\n- abc123 a reviewer's fixup" in text
    assert "It resolves issue" not in text and "```diff\n+hello" not in text
    assert "@monalisa wrote: Add a test." in text


def test_a_pull_request_says_which_issue_it_resolves():
    assert closed_issues("Fixes #5 and closes #6", "o/r") == [5, 6]
    assert closed_issues("Resolves o/r#7, fixes other/repo#8", "o/r") == [7]
    assert closed_issues("fixed: https://github.com/o/r/issues/9", "O/R") == [9]
    assert closed_issues("mentions #10 only", "o/r") == []


def test_the_pushed_commit_carries_the_trailers_the_next_round_looks_for(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "checkout", "-q", "-b", "work")
    tip = commit(repo, "b.txt", "did the work\n\nactsmith run: r1")
    guarded = guard_commit(
        repo,
        "work",
        tip,
        Defanger("o/r", 5),
        allow_workflows=False,
        trailers=rounds.trailers("r1", "actsmith-9-2"),
    )
    assert guarded.commit is not None and guarded.commit != tip
    assert git(repo, "rev-parse", "work").strip() == guarded.commit
    found = rounds.find_previous(repo, "work", "main")
    assert found is not None and (found.commit, found.run_id, found.artifact) == (
        guarded.commit,
        "r1",
        "actsmith-9-2",
    )
