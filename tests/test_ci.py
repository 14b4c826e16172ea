"""The parts of `actsmith ci` that need no sandbox: who may trigger a run, how a session's status
reads as a conclusion, a fork's patch cut to fit a comment, what the commit loses before it leaves
(workflow changes, other issues' closing keywords), workflow commands stopped in the job's log, and
pushes over real HTTP that carry the token actsmith was given (not the one a checkout left in
.git/config) and never leak it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import git, limits, make_repo
from github_stub import GitHttpServer
from openai_stub import Reply

from agent_cli.ci.actions_env import ActionsEnv, workflow_commands_stopped
from agent_cli.ci.defang import Defanger
from agent_cli.ci.github_api import COMMENT_LIMIT
from agent_cli.ci.guard import Guarded, guard_commit
from agent_cli.ci.origin import Origin, PushError
from agent_cli.ci.report import Report
from agent_cli.ci.trigger import Access, Allowed, Skipped, Trigger, admit, parse_allow, read_trigger
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


def trigger_of(name: str, payload: dict, *, label: str = "actsmith") -> Trigger | Skipped:
    event_name = {"issues_labeled": "issues", "workflow_dispatch": "workflow_dispatch"}.get(
        name, "issue_comment"
    )
    return read_trigger(event_name, payload, label=label)


def access(role: str, user_id: int | None = 583231) -> Access:
    """GitHub's answer for someone with `role`, as it reports the legacy permission beside it."""
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    return Access(legacy, role, user_id)


# ------------------------------------------------------------------------------------------ triggers


def test_each_documented_event_makes_its_trigger():
    labeled = trigger_of("issues_labeled", event("issues_labeled"))
    assert labeled == Trigger(
        "issue", 5, "Greet with hello", "greet() says 'hi'; it should say 'hello'.", "", "monalisa", 583231
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
    skipped = read_trigger("push", {}, label="actsmith")
    assert isinstance(skipped, Skipped) and "`push`" in skipped.reason


@pytest.mark.parametrize(
    ("role", "starts"),
    [
        ("admin", True),
        ("maintain", True),
        ("write", True),
        ("triage", False),
        ("read", False),
        ("none", False),
    ],
)
def test_only_write_access_starts_a_run_whatever_the_association_says(role, starts):
    payload = event("issue_comment_issue")
    assert payload["comment"]["author_association"] == "MEMBER"
    asked: list[str] = []

    def access_of(login: str) -> Access:
        asked.append(login)
        return access(role)

    result = admit(trigger_of("issue_comment_issue", payload), frozenset(), access_of)
    assert asked == ["monalisa"]
    assert isinstance(result, Trigger) == starts
    if not starts:
        assert isinstance(result, Skipped)
        assert f"@monalisa ({role} access) may not start actsmith" in result.reason


def test_a_custom_role_counts_by_the_permission_it_is_based_on():
    trigger = trigger_of("issue_comment_issue", event("issue_comment_issue"))
    assert isinstance(
        admit(trigger, frozenset(), lambda _: Access("write", "release-manager", 583231)), Trigger
    )
    refused = admit(trigger, frozenset(), lambda _: Access("read", "auditor", 583231))
    assert isinstance(refused, Skipped) and "(auditor access)" in refused.reason


def test_the_label_is_checked_for_who_added_it_not_who_opened_the_issue():
    payload = event("issues_labeled")
    payload["sender"] = {"login": "template-bot[bot]", "id": 41, "type": "Bot"}
    trigger = trigger_of("issues_labeled", payload)
    assert isinstance(trigger, Trigger) and (trigger.actor, trigger.actor_id) == ("template-bot[bot]", 41)
    asked: list[str] = []
    refused = admit(trigger, frozenset(), lambda login: asked.append(login) or access("none", 41))
    assert asked == ["template-bot[bot]"] and isinstance(refused, Skipped)


def test_a_login_now_held_by_another_account_is_refused():
    trigger = trigger_of("issue_comment_issue", event("issue_comment_issue"))
    refused = admit(trigger, frozenset(), lambda _: access("admin", user_id=999))
    assert isinstance(refused, Skipped) and "another account" in refused.reason


def test_a_dispatch_needs_no_check_github_asked_for_write_access_already():
    trigger = trigger_of("workflow_dispatch", event("workflow_dispatch"))
    assert isinstance(trigger, Trigger)
    assert admit(trigger, frozenset(), lambda _: pytest.fail("asked GitHub")) == trigger


@pytest.mark.parametrize(
    ("entry", "login", "user_id", "admitted"),
    [
        ("stranger", "Stranger", 7, True),  # a login alone: whoever holds it
        ("@Stranger", "stranger", None, True),
        ("stranger:7", "stranger", 7, True),
        ("stranger:7", "stranger", 8, False),  # the login renamed away and taken by someone else
        ("stranger:7", "renamed", 7, False),
        ("7", "renamed", 7, True),  # an id alone follows the account through renames
        ("7", "stranger", 8, False),
        ("someone", "stranger", 7, False),
    ],
)
def test_an_allow_entry_matches_by_login_and_by_id_when_it_has_one(entry, login, user_id, admitted):
    payload = event("issue_comment_issue")
    payload["comment"]["user"] = {"login": login, "id": user_id}
    trigger = trigger_of("issue_comment_issue", payload)
    assert isinstance(trigger, Trigger)
    result = admit(trigger, parse_allow([f"other:1, {entry}"]), lambda _: Access("read", "read", user_id))
    assert isinstance(result, Trigger) == admitted


def test_allow_entries_are_parsed_and_a_bad_one_is_a_usage_error():
    assert parse_allow(["@A, b:12", "34 ", ""]) == {Allowed("a", None), Allowed("b", 12), Allowed(None, 34)}
    for bad in ("b:x", "a b:", "-dash", "x:1:2"):
        with pytest.raises(UsageError, match="is not `login`, `login:id` or a numeric user id"):
            parse_allow([bad])


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


def test_what_the_model_wrote_reaches_the_report_redacted_and_defanged():
    made = report("finished")
    made.redactor.add("hunter2-but-longer", "NETWORK")
    assert made.ended is not None
    made.ended = replace(
        made.ended,
        summary="Done. ![x](http://evil.example/?d=1) ghp_"
        + "a" * 36
        + " hunter2-but-longer\n@someone Closes #99",
        diff_stat=" ```evil.py | 1 +",
    )
    for text in (made.comment(), made.pull_body()):
        assert "ghp_" not in text and "hunter2" not in text and "[REDACTED" in text
        assert "](http://evil" not in text and "@someone" not in text and "Closes #99" not in text
        stat = text.split("<summary>Diff stat</summary>\n\n", 1)[1]
        assert stat.startswith("````\n ```evil.py | 1 +\n````")  # the name cannot close the fence
    assert made.pull_body().rstrip().endswith("Fixes #5")


def test_the_hosts_proxy_credentials_are_redacted_from_the_report(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:proxy-Passw0rd-42@proxy.internal:3128")
    made = report("finished")
    assert made.ended is not None
    made.ended = replace(made.ended, summary="pip said: 407 for proxy-Passw0rd-42")
    assert "proxy-Passw0rd-42" not in made.comment() and "REDACTED:network credentials" in made.comment()


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


def test_workflow_commands_are_stopped_around_the_run_with_a_token_it_cannot_guess(capsys):
    with workflow_commands_stopped({"GITHUB_ACTIONS": "true"}):
        print("::set-output name=conclusion::success")
    with workflow_commands_stopped({"GITHUB_ACTIONS": "true"}):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "::set-output name=conclusion::success"
    first, second = lines[0].removeprefix("::stop-commands::"), lines[3].removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    assert lines[2] == f"::{first}::" and lines[4] == f"::{second}::"
    with workflow_commands_stopped({}):  # outside Actions nothing reads them
        print("plain")
    assert capsys.readouterr().out == "plain\n"


# ---------------------------------------------------------------------- the commit that leaves the runner


def run_commit(tmp_path: Path, changes: dict[str, str | None], message: str) -> tuple[Path, str, str]:
    """A checkout with a workflow, and one commit on branch `work` as a session makes it."""
    repo = make_repo(
        tmp_path / "guarded",
        {"app.py": "a\n", ".github/workflows/ci.yml": "on: push\n", ".github/CODEOWNERS": "* @o\n"},
    )
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "work")
    for path, content in changes.items():
        if content is None:
            git(repo, "rm", "-q", "-r", path)
        else:
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(content)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=actsmith run", "commit", "-q", "-m", message)
    return repo, base, git(repo, "rev-parse", "HEAD").strip()


def files_at(repo: Path, ref: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", ref).split()
    return {name: git(repo, "show", f"{ref}:{name}") for name in names}


def test_workflow_changes_are_taken_out_of_the_commit_and_named(tmp_path):
    repo, base, commit = run_commit(
        tmp_path,
        {
            "app.py": "b\n",
            ".github/workflows/ci.yml": "on: push\njobs: {steal: {}}\n",
            ".github/workflows/new.yml": "on: push\n",
            ".github/CODEOWNERS": "* @model\n",
        },
        "greet\n\nFixes #5\nCloses #99\n",
    )
    guarded = guard_commit(repo, "work", commit, Defanger("o/r", 5), allow_workflows=False)
    assert guarded.reverted == [".github/workflows/ci.yml", ".github/workflows/new.yml"]
    assert guarded.commit == git(repo, "rev-parse", "work").strip() != commit
    assert git(repo, "rev-parse", f"{guarded.commit}^").strip() == base  # rewritten, not reverted on top
    files = files_at(repo, "work")
    assert files[".github/workflows/ci.yml"] == "on: push\n" and ".github/workflows/new.yml" not in files
    assert files["app.py"] == "b\n" and files[".github/CODEOWNERS"] == "* @model\n"
    message = git(repo, "log", "-1", "--format=%B%n%an", "work")
    assert "Fixes #5" in message and "Closes #99" not in message and "Closes #\u200d99" in message
    assert message.rstrip().endswith("actsmith run")  # the author is kept


def test_a_github_folder_made_a_link_is_restored_too(tmp_path):
    repo, _, commit = run_commit(tmp_path, {".github": None}, "tidy")
    (repo / ".github").symlink_to("elsewhere")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--amend", "-m", "tidy")
    commit = git(repo, "rev-parse", "HEAD").strip()
    guarded = guard_commit(repo, "work", commit, Defanger("o/r", 5), allow_workflows=False)
    assert ".github" in guarded.reverted and ".github/workflows/ci.yml" in guarded.reverted
    assert guarded.commit is None  # nothing else changed: nothing to deliver, the branch is back
    assert git(repo, "rev-parse", "work") == git(repo, "rev-parse", "main")


def test_workflow_changes_stay_when_the_workflow_allows_them(tmp_path):
    repo, _, commit = run_commit(tmp_path, {".github/workflows/ci.yml": "on: pull_request\n"}, "ci")
    guarded = guard_commit(repo, "work", commit, Defanger("o/r", 5), allow_workflows=True)
    assert guarded == Guarded(commit, [])


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
