"""The parts of `actsmith ci` that need no sandbox: who may trigger a run, how a session's status
reads as a conclusion, a fork's patch cut to fit a comment, and pushes over real HTTP that carry the
token actsmith was given (not the one a checkout left in .git/config) and never leak it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import git, limits, make_repo
from github_stub import GitHttpServer
from openai_stub import Reply

from agent_cli.ci.actions_env import ActionsEnv
from agent_cli.ci.github_api import COMMENT_LIMIT
from agent_cli.ci.origin import Origin, PushError
from agent_cli.ci.report import Report
from agent_cli.ci.trigger import Skipped, Trigger, parse_allow, read_trigger
from agent_cli.errors import UsageError
from agent_cli.events import Ended
from agent_cli.model import Usage, import_litellm
from agent_cli.outcome import Category, Status
from agent_cli.sandbox.local import LocalSandbox
from agent_cli.session import Session
from agent_cli.settings import Settings
from agent_cli.trajectory import Redactor
from agent_cli.workspace import Workspace

FIXTURES = Path(__file__).parent / "fixtures" / "github"
TOKEN = "ghs_theTokenActsmithWasGiven0123456789"
MODEL_KEY = "sk-theModelKeyTheActionWasGiven0123456789"
STALE = "ghs_theTokenTheCheckoutLeftBehind012345"


def event(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def trigger_of(name: str, payload: dict, *, label: str = "actsmith", allow: str = "") -> Trigger | Skipped:
    event_name = {"issues_labeled": "issues", "workflow_dispatch": "workflow_dispatch"}.get(
        name, "issue_comment"
    )
    return read_trigger(event_name, payload, label=label, allow=parse_allow([allow]))


# ------------------------------------------------------------------------------------------ triggers


def test_each_documented_event_makes_its_trigger():
    labeled = trigger_of("issues_labeled", event("issues_labeled"))
    assert labeled == Trigger(
        "issue", 5, "Greet with hello", "greet() says 'hi'; it should say 'hello'.", "", "monalisa"
    )
    comment = trigger_of("issue_comment_issue", event("issue_comment_issue"))
    assert isinstance(comment, Trigger)
    assert (comment.kind, comment.number, comment.request) == ("issue", 5, "also add a docstring")
    on_pull = trigger_of("issue_comment_pull_request", event("issue_comment_pull_request"))
    assert isinstance(on_pull, Trigger) and (on_pull.kind, on_pull.number) == ("pull_request", 7)
    dispatch = trigger_of("workflow_dispatch", event("workflow_dispatch"))
    assert isinstance(dispatch, Trigger) and dispatch.request == "Make greet() say hello"


def test_events_that_must_not_start_a_run_do_not():
    assert isinstance(trigger_of("issues_labeled", event("issues_labeled"), label="bot"), Skipped)
    edited = event("issue_comment_issue") | {"action": "edited"}
    assert isinstance(trigger_of("issue_comment_issue", edited), Skipped)
    not_a_command = event("issue_comment_issue")
    not_a_command["comment"]["body"] = "/actsmithing is fun"
    assert isinstance(trigger_of("issue_comment_issue", not_a_command), Skipped)
    skipped = read_trigger("push", {}, label="actsmith", allow=frozenset())
    assert isinstance(skipped, Skipped) and "`push`" in skipped.reason


@pytest.mark.parametrize("association", ["NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER"])
def test_only_trusted_commenters_or_allowed_logins_start_a_run(association):
    payload = event("issue_comment_issue")
    payload["comment"]["author_association"] = association
    payload["comment"]["user"]["login"] = "Stranger"
    refused = trigger_of("issue_comment_issue", payload)
    assert (
        isinstance(refused, Skipped) and f"@Stranger ({association}) may not start actsmith" in refused.reason
    )
    allowed = trigger_of("issue_comment_issue", payload, allow="@someone, stranger")
    assert isinstance(allowed, Trigger) and allowed.actor == "Stranger"


def test_a_dispatch_without_a_task_is_a_usage_error():
    with pytest.raises(UsageError, match="input `task`"):
        trigger_of("workflow_dispatch", {"inputs": {"task": "  "}})


# -------------------------------------------------------------------------------------------- reports


def ended(status: str, files: list[str] | None = None) -> Ended:
    return Ended(
        run_id="r",
        status=Status(status),
        category=Status(status).category(bool(files)),
        exit_code=Status(status).exit_code,
        message=f"the run ended: {status}",
        summary="did things",
        steps=2,
        usage=Usage(10, 5, 0.0123),
        wall_s=1.0,
        files_changed=files or [],
        diff_stat="",
        tests=None,
        trajectory=None,
        undo=None,
    )


def report(status: str | None, error: str | None = None) -> Report:
    env = ActionsEnv.from_environ(
        {
            "GITHUB_EVENT_NAME": "issues",
            "GITHUB_EVENT_PATH": "/e.json",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_RUN_ID": "9",
        }
    )
    trigger = Trigger("issue", 5, "t", "b", "", "me")
    return Report(trigger, env, ended=ended(status, files=["a.py"]) if status else None, error=error)


@pytest.mark.parametrize(
    ("status", "conclusion"),
    [
        ("finished", "success"),
        ("finished_untested", "untested"),
        ("tests_failed", "tests_failed"),
        ("limit", "limit_reached"),
        ("no_action", "limit_reached"),
        ("stuck", "limit_reached"),
        ("model_stopped", "failed"),
        ("model_error", "failed"),
        ("error", "failed"),
        ("interrupted", "failed"),
    ],
)
def test_a_session_status_reads_as_its_categorys_conclusion_and_only_finished_as_success(status, conclusion):
    made = report(status)
    assert made.conclusion == conclusion
    assert made.outputs()["conclusion"] == conclusion and made.outputs()["cost-usd"] == "0.0123"
    assert ("✅" in made.comment()) == (conclusion == "success")
    assert f"(`{made.ended.category}`: status `{status}`" in made.comment()


def test_every_category_has_a_conclusion_and_only_a_good_one_reads_as_success():
    for category in Category:
        made = report("finished")
        made.ended = replace(made.ended, category=category)
        assert (made.conclusion == "success") == category.good
        assert made.conclusion in ("success", "untested", "tests_failed", "limit_reached", "failed")


def test_a_failure_after_a_finished_session_is_no_success():
    made = report("finished", error="GitHub API: opening a pull request failed: 502 Server Error")
    assert made.conclusion == "failed"
    assert "❌ **actsmith: failed**" in made.comment() and "502 Server Error" in made.comment()


def test_a_forks_patch_is_cut_on_a_line_to_fit_a_comment_and_cannot_break_out_of_its_fence(tmp_path):
    made = report("finished")
    made.patch_file = tmp_path / "changes.patch"
    patch = "".join(f"+line {i} with ```` backticks {'y' * 60}\n" for i in range(4000))
    text = made.comment(patch)
    assert len(text) <= COMMENT_LIMIT
    assert "`````diff\n" in text  # a fence longer than the patch's own backtick runs
    shown = text.split("`````diff\n", 1)[1].split("\n`````", 1)[0]
    assert patch.startswith(shown + "\n") and shown.endswith("y" * 60)
    cut = 4000 - len(shown.splitlines())
    assert f"The patch was cut to fit in a comment: {cut} more lines" in text and cut > 0


def test_outputs_cannot_be_forged_by_a_value_with_newlines(tmp_path):
    outputs = tmp_path / "out"
    env = ActionsEnv.from_environ(
        {
            "GITHUB_EVENT_NAME": "x",
            "GITHUB_EVENT_PATH": "/e",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_OUTPUT": str(outputs),
        }
    )
    env.write_outputs({"branch": "a\nconclusion=success"})
    assert outputs.read_text() == "branch=a conclusion=success\n"


def test_outside_a_job_ci_says_what_is_missing():
    with pytest.raises(UsageError, match="GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY not set"):
        ActionsEnv.from_environ({})


# ------------------------------------------------------------------------------- origin over HTTP


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "o.git")], check=True)
    server = GitHttpServer(root, TOKEN).start()
    yield server
    server.stop()


def checkout_of(tmp_path: Path, served: GitHttpServer) -> Path:
    """A checkout whose .git/config holds another token's header for the server, as
    actions/checkout leaves one."""
    repo = make_repo(tmp_path / "checkout", {"a.txt": "a\n"})
    git(repo, "remote", "add", "origin", f"{served.url}/o.git")
    stale = base64.b64encode(f"x-access-token:{STALE}".encode()).decode()
    git(repo, "config", f"http.{served.url}/.extraheader", f"AUTHORIZATION: basic {stale}")
    return repo


def test_pushes_and_fetches_carry_the_given_token_over_the_checkouts_own(tmp_path, served):
    repo = checkout_of(tmp_path, served)
    refused = subprocess.run(["git", "-C", str(repo), "push", "-q", "origin", "main"], capture_output=True)
    assert refused.returncode != 0  # git alone sends the checkout's header
    before = len(served.authorizations)
    origin = Origin.of(Workspace.open(repo), TOKEN, Redactor({}))
    assert origin.fetch("refs/heads/actsmith/x") is None  # nothing there yet
    origin.push("main", "actsmith/x")
    head = git(repo, "rev-parse", "main").strip()
    assert git(tmp_path / "served" / "o.git", "rev-parse", "actsmith/x").strip() == head
    assert origin.fetch("refs/heads/actsmith/x") == head
    # ls-remote, fetch and push each sent the given token alone (git first asks without any).
    ours = served.authorizations[before:]
    assert [served.expected] in ours and all(given in ([], [served.expected]) for given in ours)


def test_a_refused_push_is_one_line_that_names_the_local_branch_and_hides_the_token(tmp_path, served):
    repo = checkout_of(tmp_path, served)
    wrong = "ghs_aTokenTheServerDoesNotKnow0123456789"
    redactor = Redactor({})
    redactor.add(wrong, "GITHUB_TOKEN")
    git(
        repo,
        "remote",
        "set-url",
        "origin",
        f"http://x-access-token:{wrong}@{served.url.removeprefix('http://')}/o.git",
    )
    with pytest.raises(PushError) as caught:
        Origin.of(Workspace.open(repo), wrong, redactor).push("main", "actsmith/x")
    message = str(caught.value)
    assert "\n" not in message and wrong not in message
    assert (
        message.startswith("pushing actsmith/x to origin failed")
        and "the work is on the local branch main" in message
    )


def test_the_actions_key_and_the_bots_identity_are_passed_to_the_session_not_put_in_the_environment(
    tmp_path, stub_server
):
    """CI lends the session a model key and a git identity; the session uses them for its model
    calls and its commit, and the process's environment stays as it was (sessions share it)."""
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    stub_server.script(Reply("<execute>\ncreate('b.py', 'y = 2\\n')\nfinish('made b')\n</execute>"))
    settings = Settings(
        model="openai/gpt-4o", api_base=stub_server.api_base, worktree=True, map_tokens=0, tests=False
    )
    identity = {"GIT_AUTHOR_NAME": "lent bot", "GIT_AUTHOR_EMAIL": "bot@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "lent bot", "GIT_COMMITTER_EMAIL": "bot@example.invalid"}
    import_litellm()  # which configures itself through the environment once, for every session
    before = dict(os.environ)
    session = Session(
        settings,
        Workspace.open(repo),
        label="make b",
        sandbox_factory=lambda request: LocalSandbox(request.root, limits()),
        api_key=MODEL_KEY,
        identity=identity,
    )
    with session:
        session.run("make b")
    assert dict(os.environ) == before
    assert session.outcome is not None and session.outcome.category == "succeeded"
    assert stub_server.headers[0]["authorization"] == f"Bearer {MODEL_KEY}"
    by = git(repo, "log", "-1", "--format=%an <%ae>, %cn <%ce>", session.outcome.branch or "").strip()
    assert by == "lent bot <bot@example.invalid>, lent bot <bot@example.invalid>"
    assert git(repo, "log", "-1", "--format=%an", "main").strip() == "test"  # the user's own identity
