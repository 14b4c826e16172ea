"""The review loop end to end: `actsmith ci` on `pull_request_review_comment`, `pull_request_review`
and `/actsmith` comments on its own pull request, through the real CLI, the real Docker sandbox,
replay models, the local GitHub REST server and a bare `origin`. Each round starts from the pull
request actsmith opened for issue 5 (round 0: a labeled issue)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ci_helpers import (
    CALLED,
    HELLO,
    REPOSITORY,
    TOKEN,
    Actions,
    Ran,
    assert_started_nothing,
    push_pull_head,
    zipped,
)
from conftest import git
from github_stub import GitHubStub

BRANCH = "actsmith/issue-5"
PULL = 101  # the pull request round 0 opens
PULLS = rf"/repos/{REPOSITORY}/pulls"
HUNK = "@@ -1,2 +1,2 @@\n def greet():\n-    return 'hi'\n+    return 'hello'"
DOCSTRING = (
    "<execute>\nreplace('app.py', 'def greet():\\n', 'def greet():\\n    \"\"\"Say hello.\"\"\"\\n')\n"
    "finish('documented greet()')\n</execute>"
)
THREE_THINGS = (
    "<execute>\nreplace('app.py', 'def greet():\\n', 'def greet():\\n    \"\"\"Say hello.\"\"\"\\n')\n"
    "create('farewell.py', 'def farewell():\\n    return \"bye\"\\n')\n"
    "create('tests/test_farewell.py', 'from farewell import farewell\\n\\n\\ndef test_farewell():\\n"
    '    assert farewell() == "bye"\\n\')\n'
    "finish('documented greet(), added farewell() and its test')\n</execute>"
)


@pytest.fixture
def stub():
    server = GitHubStub(REPOSITORY, TOKEN).start()
    server.add_collaborator("monalisa", 583231, "write")  # who labels, comments and reviews
    yield server
    server.stop()


@pytest.fixture
def actions(tmp_path, stub):
    return Actions(tmp_path, stub)


def open_pull_for_issue(actions: Actions, stub: GitHubStub) -> Ran:
    """Round 0: issue 5 labeled, its branch pushed and pull request #101 opened (with `Fixes #5`)."""
    stub.add_issue(5, "Greet with hello", "greet() says 'hi'; it should say 'hello'.")
    first = actions.run("issues", actions.event("issues_labeled"), [HELLO])
    assert first.code == 0, first.stdout + first.stderr
    assert stub.pulls[PULL]["head"]["ref"] == BRANCH and "Fixes #5" in stub.pulls[PULL]["body"]
    actions.pull_head(PULL, BRANCH)
    return first


def review_comment_event(actions: Actions, stub: GitHubStub, comment: dict) -> dict:
    payload = actions.event("pull_request_review_comment")
    payload["comment"], payload["pull_request"] = comment, stub.pulls[PULL]
    return payload


def review_event(actions: Actions, stub: GitHubStub, review: dict) -> dict:
    payload = actions.event("pull_request_review")
    payload["review"] = review | {"state": review["state"].lower()}  # webhooks say it in lower case
    payload["pull_request"] = stub.pulls[PULL]
    return payload


def bot_replies(stub: GitHubStub) -> dict[int, list[str]]:
    """actsmith's review comment replies: each one's bodies, in order."""
    repo = stub.repo()
    return {
        number: repo.review_comment_bodies[number]
        for number, comment in repo.review_comments.items()
        if comment["user"]["login"] == "github-actions[bot]"
    }


def ask_for_a_docstring(actions: Actions, stub: GitHubStub) -> tuple[dict, dict]:
    """A thread on app.py: someone's question, then monalisa's /actsmith reply to it."""
    question = stub.add_review_comment(PULL, "hubot", "Should greet() be documented?", line=2, diff_hunk=HUNK)
    asked = stub.add_review_comment(
        PULL,
        "monalisa",
        "/actsmith add a docstring to greet()",
        line=2,
        diff_hunk=HUNK,
        in_reply_to=question["id"],
    )
    return question, asked


def assert_fast_forward_with_a_docstring(actions: Actions, before: str) -> str:
    """The same branch, one commit on top of what it had, and no other branch made."""
    branch = f"refs/heads/{BRANCH}"
    assert actions.parent(branch) == before
    app = actions.origin_file(branch, "app.py")
    assert '"""Say hello."""' in app and "return 'hello'" in app
    assert set(actions.origin_refs()) == {"refs/heads/main", branch, f"refs/pull/{PULL}/head"}
    return git(actions.origin, "rev-parse", branch).strip()


@pytest.mark.docker
def test_a_review_comment_continues_the_branch_and_is_answered_in_its_thread(actions, stub, sandbox_image):
    open_pull_for_issue(actions, stub)
    before = actions.pull_head(PULL, BRANCH)
    question, asked = ask_for_a_docstring(actions, stub)
    ran = actions.run("pull_request_review_comment", review_comment_event(actions, stub, asked), [DOCSTRING])
    assert ran.code == 0, ran.stdout + ran.stderr
    tip = assert_fast_forward_with_a_docstring(actions, before)
    # One reply, in the thread (to its first comment: GitHub takes no reply to a reply), posted as
    # "working" and edited into the outcome; no issue comment, no pull request opened.
    (posted,) = stub.calls("POST", rf"{PULLS}/{PULL}/comments/{question['id']}/replies")
    assert "working" in posted.body["body"]
    ((working, final),) = bot_replies(stub).values()
    assert working == posted.body["body"]
    assert "✅ **actsmith: finished, the tests pass**" in final
    assert "documented greet()" in final and f"`{BRANCH}` at `{tip[:12]}`" in final
    assert "1 passed (before the run: 1 passed)" in final and "app.py | 1 +" in final and "$0.0000" in final
    assert "went on with the conversation of the previous one" in final
    assert len(stub.comments) == 1 and len(stub.calls("POST", PULLS)) == 1  # round 0's only
    assert ran.outputs["pr-url"] == f"https://github.com/{REPOSITORY}/pull/{PULL}"
    # The conversation went on: round 0's task and steps, then the comment with its thread and hunk.
    prompts = ran.prompts()
    assert (
        "Resolve GitHub issue #5 of octo-org/hello-world" in prompts and "greet() now says hello" in prompts
    )
    assert "resumed in a new sandbox" in prompts
    assert (
        "add a docstring to greet()" in prompts and "@hubot wrote: Should greet() be documented?" in prompts
    )
    assert "app.py, line 2" in prompts and "-    return 'hi'" in prompts
    # Where the next round finds this one.
    message = git(actions.origin, "log", "-1", "--format=%B", BRANCH)
    assert "Actsmith-Artifact: actsmith-4202-1" in message and "Actsmith-Run-Id: " in message


@pytest.mark.docker
def test_on_a_fresh_runner_the_round_goes_on_from_the_earlier_runs_artifact(actions, stub, sandbox_image):
    first = open_pull_for_issue(actions, stub)
    run_dir = Path(first.outputs["run-dir"])
    stub.add_artifact(4201, "actsmith-4201-1", zipped(run_dir))  # what action.yml uploaded
    shutil.rmtree(actions.checkout / ".actsmith")  # a hosted runner keeps nothing
    before = actions.pull_head(PULL, BRANCH)
    _, asked = ask_for_a_docstring(actions, stub)
    ran = actions.run("pull_request_review_comment", review_comment_event(actions, stub, asked), [DOCSTRING])
    assert ran.code == 0, ran.stdout + ran.stderr
    assert_fast_forward_with_a_docstring(actions, before)
    assert stub.calls("GET", rf"/repos/{REPOSITORY}/actions/runs/4201/artifacts")
    assert "Resolve GitHub issue #5" in ran.prompts() and "resumed in a new sandbox" in ran.prompts()
    assert "from the artifact `actsmith-4201-1`" in next(iter(bot_replies(stub).values()))[-1]


@pytest.mark.docker
def test_without_the_earlier_conversation_a_round_starts_fresh_with_the_diff_so_far(
    actions, stub, sandbox_image
):
    open_pull_for_issue(actions, stub)
    shutil.rmtree(actions.checkout / ".actsmith")  # and no artifact: it expired
    before = actions.pull_head(PULL, BRANCH)
    _, asked = ask_for_a_docstring(actions, stub)
    ran = actions.run("pull_request_review_comment", review_comment_event(actions, stub, asked), [DOCSTRING])
    assert ran.code == 0, ran.stdout + ran.stderr
    assert_fast_forward_with_a_docstring(actions, before)
    prompts = ran.prompts()
    assert "resumed" not in prompts
    # The pull request, the issue it resolves (read from GitHub) and its diff so far.
    assert "It resolves issue #5: Greet with hello" in prompts
    assert "Its changes so far" in prompts and "+    return 'hello'" in prompts
    assert "this round started afresh" in next(iter(bot_replies(stub).values()))[-1]


@pytest.mark.docker
def test_a_review_with_three_comments_is_one_round_and_one_reply(actions, stub, sandbox_image):
    open_pull_for_issue(actions, stub)
    before = actions.pull_head(PULL, BRANCH)
    review = stub.add_review(
        PULL,
        "monalisa",
        "CHANGES_REQUESTED",
        "/actsmith please address these",
        comments=[
            {"body": "Document greet().", "path": "app.py", "line": 1, "diff_hunk": HUNK},
            {"body": "/actsmith add farewell() beside it", "path": "app.py", "line": 2, "diff_hunk": HUNK},
            {"body": "farewell() needs a test.", "path": "tests/test_app.py", "line": 1},
        ],
    )
    ran = actions.run("pull_request_review", review_event(actions, stub, review), [THREE_THINGS])
    assert ran.code == 0, ran.stdout + ran.stderr
    # One round: one session, one request to the model's conversation, one commit.
    assert len([e for e in ran.trajectory if e["event"] == "task"]) == 1
    prompts = ran.prompts()
    for said in (
        "Document greet().",
        "add farewell() beside it",
        "farewell() needs a test.",
        "Comment 3: tests/test_app.py",
    ):
        assert said in prompts
    branch = f"refs/heads/{BRANCH}"
    assert actions.parent(branch) == before
    assert "def farewell" in actions.origin_file(branch, "farewell.py")
    # One reply on the review: a comment on the pull request, "working" then the outcome.
    assert len(stub.calls("POST", rf"/repos/{REPOSITORY}/issues/{PULL}/comments")) == 1
    working, final = stub.comment_bodies[max(stub.comments)]
    assert "working" in working and "✅ **actsmith: finished, the tests pass**" in final
    assert "added farewell() and its test" in final and "3 files" in final
    assert bot_replies(stub) == {}  # nothing in the threads
    # GitHub also sends the review's comment that starts with /actsmith as an event of its own:
    # the review's round answers it, so it starts nothing.
    requests = len(stub.requests)
    (second,) = [c for c in stub.repo().review_comments.values() if c["body"].startswith("/actsmith")]
    again = actions.run("pull_request_review_comment", review_comment_event(actions, stub, second), CALLED)
    assert again.code == 0 and again.outputs["conclusion"] == "not_triggered"
    assert "belongs to a review that asks actsmith itself" in again.summary
    assert [(r.method, r.path) for r in stub.requests[requests:]] == [
        ("GET", f"/repos/{REPOSITORY}/collaborators/monalisa/permission"),
        ("GET", f"/repos/{REPOSITORY}/pulls/{PULL}/reviews/{review['id']}"),
    ]


@pytest.mark.docker
def test_a_comment_on_actsmiths_own_pull_request_is_a_round_on_its_branch(actions, stub, sandbox_image):
    open_pull_for_issue(actions, stub)
    before = actions.pull_head(PULL, BRANCH)
    payload = actions.event("issue_comment_pull_request")
    payload["issue"] |= {"number": PULL, "title": stub.pulls[PULL]["title"], "body": stub.pulls[PULL]["body"]}
    payload["comment"]["body"] = "/actsmith add a docstring to greet()"
    ran = actions.run("issue_comment", payload, [DOCSTRING])
    assert ran.code == 0, ran.stdout + ran.stderr
    assert_fast_forward_with_a_docstring(actions, before)
    assert "resumed in a new sandbox" in ran.prompts() and "add a docstring to greet()" in ran.prompts()


@pytest.mark.docker
def test_a_review_comment_on_a_forks_pull_request_is_answered_with_a_patch_and_never_resumes(
    actions, stub, sandbox_image
):
    # A conversation of ours in the runner's run folder, and a fork commit whose trailers name it:
    # a fork's commits could claim any run, so its rounds always start fresh.
    planted = actions.checkout / ".actsmith" / "runs" / "20240501-ours" / "conversation.json"
    planted.parent.mkdir(parents=True)
    conversation = [{"role": "system", "kind": "system", "content": "OUR PRIVATE CONVERSATION"}]
    planted.write_text(json.dumps({"conversation": conversation, "last_step_number": 1}))
    claims = "add farewell\n\nActsmith-Run-Id: 20240501-ours\nActsmith-Artifact: actsmith-4100-1"
    head = push_pull_head(actions, "patch-1", also_as_branch=False, message=claims)
    stub.add_pull(7, "patch-1", "someone/hello-world", head, title="Add a farewell", body="Adds farewell().")
    comment = stub.add_review_comment(
        7, "monalisa", "/actsmith say hello", path="app.py", line=2, diff_hunk=HUNK
    )
    payload = actions.event("pull_request_review_comment")
    payload["comment"], payload["pull_request"] = comment, stub.pulls[7]
    refs = actions.origin_refs()
    ran = actions.run("pull_request_review_comment", payload, [HELLO])
    assert ran.code == 0, ran.stdout + ran.stderr
    assert actions.origin_refs() == refs  # nothing pushed anywhere
    prompts = ran.prompts()
    assert "OUR PRIVATE CONVERSATION" not in prompts and "resumed" not in prompts
    assert "Its changes so far" in prompts and "+def farewell():" in prompts
    ((_, final),) = bot_replies(stub).values()
    assert "comes from a fork, so nothing was pushed" in final and "```diff" in final
    assert "-    return 'hi'\n+    return 'hello'" in final
    assert not stub.calls("GET", rf"/repos/{REPOSITORY}/actions/runs/\d+/artifacts")


def test_a_read_only_reviewer_starts_nothing(actions, stub):
    stub.add_pull(PULL, BRANCH, REPOSITORY, "6dcb09b5b57875f334f61aebed695e2e4193db5e")
    stub.add_collaborator("reader", 777, "read")
    comment = stub.add_review_comment(PULL, "reader", "/actsmith delete the tests", diff_hunk=HUNK)
    ran = actions.run("pull_request_review_comment", review_comment_event(actions, stub, comment), CALLED)
    assert_started_nothing(actions, stub, ran, "reader")
    assert "@reader (read access) may not start actsmith" in ran.summary
    assert bot_replies(stub) == {}


def test_a_review_by_someone_without_write_access_starts_nothing(actions, stub):
    stub.add_pull(PULL, BRANCH, REPOSITORY, "6dcb09b5b57875f334f61aebed695e2e4193db5e")
    stub.add_collaborator("triager", 778, "triage")
    review = stub.add_review(
        PULL, "triager", "COMMENTED", "/actsmith rewrite it all", comments=[{"body": "this"}]
    )
    ran = actions.run("pull_request_review", review_event(actions, stub, review), CALLED)
    assert_started_nothing(actions, stub, ran, "triager")
    assert "@triager (triage access) may not start actsmith" in ran.summary
