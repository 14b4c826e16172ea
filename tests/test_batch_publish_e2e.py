"""A batch ends as pull requests: `actsmith batch publish` and `actsmith batch status` end to end,
through the real CLI after a real batch (Docker sandboxes, replay models), against the local GitHub
REST server with three repositories and bare `origin` repositories (one served over HTTP as GitHub
serves git, its pull requests' repository taken from that remote)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from batch_helpers import PASSING, act, batch, journal, results, write_spec
from conftest import clean_env, git, make_repo, run_cli, write_replay
from github_stub import GitHttpServer, GitHubStub

pytestmark = pytest.mark.docker

TOKEN = "ghp_batchTokenThatMustStayOnTheHost0123456789"
OWNER = "octo-org"
NAME = "pub"
LEAKED = "ghp_" + "Q7" * 18  # a token the model found and wrote in its summary


def bare_origin(repo: Path, origin: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    git(origin, "config", "receive.denyNonFastForwards", "true")  # a force push would be refused
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")


@pytest.fixture(scope="module")
def world(tmp_path_factory, sandbox_image):
    """Four repositories and six tasks run as one batch: two succeed (billing, ledger), one
    succeeds in a repository whose origin is a GitHub remote (web, over HTTP), one has nothing to
    change, one breaks the tests, one succeeds where the origin is no GitHub remote (auth); one
    finishes untested (notes: no tests at all)."""
    root = tmp_path_factory.mktemp("publish")
    stub = GitHubStub(f"{OWNER}/billing", TOKEN).start()
    for name in ("ledger", "web", "notes"):
        stub.add_repository(f"{OWNER}/{name}")
    served = root / "served"
    (served / OWNER).mkdir(parents=True)
    git_server = GitHttpServer(served, TOKEN).start()
    repos = {name: make_repo(root / name, PASSING) for name in ("billing", "ledger", "auth", "web")}
    repos["notes"] = make_repo(root / "notes", {"README.md": "# notes\n"})
    for name in ("billing", "ledger", "auth", "notes"):
        bare_origin(repos[name], root / f"{name}-origin.git")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(served / OWNER / "web.git")], check=True)
    git(repos["web"], "remote", "add", "origin", f"{git_server.url}/{OWNER}/web.git")
    git(served / OWNER / "web.git", "fetch", "-q", str(repos["web"]), "main:main")
    replays = {
        "fix": [
            act("replace('calc.py', 'return a + b', 'return b + a')"),
            act(f"finish('swapped, see {LEAKED}')"),
        ],
        "noop": [act("finish('nothing to change')")],
        "break": [act("replace('calc.py', 'return a + b', 'return a - b')"), act("finish('done')")],
        "notes": [act("create('NOTES.md', 'noted\\n')"), act("finish('noted')")],
    }
    for name, replies in replays.items():
        write_replay(root / f"{name}.yaml", replies)
    tasks = [
        ("billing-fix", "billing", "fix", {"github": f"{OWNER}/billing"}),
        ("ledger-fix", "ledger", "fix", {"github": f"{OWNER}/ledger"}),
        ("ledger-noop", "ledger", "noop", {"github": f"{OWNER}/ledger"}),
        ("billing-break", "billing", "break", {"github": f"{OWNER}/billing", "max_test_rounds": 0}),
        ("auth-fix", "auth", "fix", {}),
        ("web-fix", "web", "fix", {}),
        ("notes-add", "notes", "notes", {"github": f"{OWNER}/notes"}),
    ]
    spec = write_spec(
        root / "spec.yaml",
        {
            "name": NAME,
            "tasks": [
                {
                    "id": task,
                    "repo": repo,
                    "task": f"Swap the operands in {repo}\n\nKeep the tests green.",
                    "model": f"replay:{script}.yaml",
                    **extra,
                }
                for task, repo, script, extra in tasks
            ],
        },
    )
    ran = batch(["run", str(spec), "-j", "2"], root)
    assert ran.code == 1, ran.stdout + ran.stderr  # not every task succeeded
    out = root / ".actsmith" / "batches" / NAME
    env = {"GITHUB_API_URL": stub.url, "GITHUB_SERVER_URL": git_server.url}
    no_token = run_cli(["batch", "publish", str(out)], root, env=clean_env(**env))
    first = run_cli(["batch", "publish", str(out)], root, env=clean_env(GITHUB_TOKEN=TOKEN, **env))
    yield {
        "root": root,
        "out": out,
        "stub": stub,
        "git_server": git_server,
        "repos": repos,
        "env": env,
        "no_token": no_token,
        "first": first,
        "requests_after_first": len(stub.requests),
    }
    stub.stop()
    git_server.stop()


def publish(world, *args: str):
    return run_cli(
        ["batch", "publish", str(world["out"]), *args],
        world["root"],
        env=clean_env(GH_TOKEN=TOKEN, **world["env"]),
    )


def status(world, *args: str):
    return run_cli(
        ["batch", "status", str(world["out"]), *args],
        world["root"],
        env=clean_env(GITHUB_TOKEN=TOKEN, **world["env"]),
    )


def created(stub: GitHubStub, repository: str) -> list:
    return stub.calls("POST", rf"/repos/{OWNER}/{repository}/pulls")


def assert_no_token_anywhere(world, *outputs) -> None:
    """The token in no output, no file of the batch folder, no request body (it may only travel in
    the Authorization headers to GitHub's API and git server); what the model found, in nothing sent."""
    said = [text for ran in outputs for text in (ran.stdout, ran.stderr)]
    sent = [json.dumps(request.body) for request in world["stub"].requests]
    sent += [json.dumps(request.query) + request.path for request in world["stub"].requests]
    files = [path.read_text(errors="replace") for path in world["out"].rglob("*") if path.is_file()]
    for text in said + sent + files:
        assert TOKEN not in text
    for text in said + sent:
        assert LEAKED not in text


def test_publish_opens_one_pull_request_per_succeeded_task_and_none_for_the_others(world):
    stub, out, first = world["stub"], world["out"], world["first"]
    # Without a token: one line, exit 2, nothing asked.
    assert world["no_token"].code == 2
    assert world["no_token"].stderr.strip().startswith("error: GITHUB_TOKEN (or GH_TOKEN) is not set")
    assert first.code == 0, first.stdout + first.stderr  # a task with nowhere to go is skipped, not failed
    lines = dict(line.split(": ", 1) for line in first.stdout.splitlines())
    assert lines["billing-fix"] == f"opened https://github.com/{OWNER}/billing/pull/101 (draft)"
    assert lines["ledger-fix"] == f"opened https://github.com/{OWNER}/ledger/pull/101 (draft)"
    assert (
        lines["web-fix"] == f"opened https://github.com/{OWNER}/web/pull/101 (draft)"
    )  # from its origin's URL
    assert lines["ledger-noop"] == "no_change, not published"
    assert lines["billing-break"] == "tests_failed, not published"
    assert lines["notes-add"] == "untested, not published"
    assert lines["auth-fix"].startswith("skipped: ") and "is not on GitHub" in lines["auth-fix"]
    assert "github: OWNER/NAME" in lines["auth-fix"]
    # One pull request per repository that had a succeeded task, from its pushed branch.
    assert [len(created(stub, name)) for name in ("billing", "ledger", "web", "notes")] == [1, 1, 1, 0]
    (pull,) = created(stub, "billing")
    assert pull.body["head"] == f"actsmith/{NAME}/billing-fix" and pull.body["base"] == "main"
    assert pull.body["draft"] is True and pull.body["title"] == f"{NAME}: Swap the operands in billing"
    body = pull.body["body"]
    assert "Swap the operands in billing\n\nKeep the tests green." in body  # the task, whole
    assert "> swapped, see \\[REDACTED\\]" in body and LEAKED not in body  # the summary, redacted
    assert "| tests | passed: 1 passed (before the run: 1 passed)" in body
    assert "calc.py | 2 +-" in body and "$0.0000" in body
    root = world["root"]
    for name, origin in (
        ("billing", root / "billing-origin.git"),
        ("web", root / "served" / OWNER / "web.git"),
    ):
        pushed = git(origin, "rev-parse", f"refs/heads/actsmith/{NAME}/{name}-fix").strip()
        assert pushed == git(world["repos"][name], "rev-parse", f"actsmith/{NAME}/{name}-fix").strip()
    assert f"actsmith/{NAME}/auth-fix" not in git(root / "auth-origin.git", "branch", "--list")
    # The token went to the git server the web remote is on, as a header.
    assert [world["git_server"].expected] in world["git_server"].authorizations
    # Each published task's pull request is in its result.json and the journal.
    got = results(out)
    assert got["billing-fix"]["pr_url"] == f"https://github.com/{OWNER}/billing/pull/101"
    assert got["billing-fix"]["pr_number"] == 101 and got["ledger-noop"]["pr_number"] is None
    published = {entry["id"]: entry for entry in journal(out) if entry["event"] == "published"}
    assert set(published) == {"billing-fix", "ledger-fix", "web-fix"}
    assert published["ledger-fix"]["pr_url"] == f"https://github.com/{OWNER}/ledger/pull/101"
    assert_no_token_anywhere(world, world["no_token"], first)


def test_a_second_publish_opens_nothing_new_and_untested_is_published_when_asked(world):
    stub = world["stub"]
    before = len(stub.calls("POST", rf"/repos/{OWNER}/[^/]+/pulls"))
    again = publish(world)
    assert again.code == 0, again.stdout + again.stderr
    assert len(stub.calls("POST", rf"/repos/{OWNER}/[^/]+/pulls")) == before  # nothing new
    lines = dict(line.split(": ", 1) for line in again.stdout.splitlines())
    assert lines["billing-fix"] == f"updated https://github.com/{OWNER}/billing/pull/101"
    assert stub.calls("PATCH", rf"/repos/{OWNER}/billing/pulls/101")
    asked = publish(world, "--include", "untested", "--only", "notes-add", "--ready")
    assert asked.code == 0, asked.stdout + asked.stderr
    assert asked.stdout.strip() == f"notes-add: opened https://github.com/{OWNER}/notes/pull/101 (open)"
    (pull,) = created(stub, "notes")
    assert pull.body["draft"] is False and "| tests | " in pull.body["body"]
    bad = publish(world, "--only", "nope")
    assert bad.code == 2 and "--only nope: no such task" in bad.stderr
    assert_no_token_anywhere(world, again, asked, bad)


def test_status_shows_each_pull_requests_state_checks_and_review(world):
    stub, root, repos = world["stub"], world["root"], world["repos"]
    # What happened on GitHub since: billing's merged; ledger's CI fails one check and it is approved.
    for name in ("billing", "ledger", "web"):  # GitHub knows each pull request's head commit
        tip = git(repos[name], "rev-parse", f"actsmith/{NAME}/{name}-fix").strip()
        stub.repo(f"{OWNER}/{name}").pulls[101]["head"]["sha"] = tip
    stub.merge(101, f"{OWNER}/billing")
    ledger_tip = stub.repo(f"{OWNER}/ledger").pulls[101]["head"]["sha"]
    stub.add_check_run(ledger_tip, "tests", "completed", "failure", f"{OWNER}/ledger")
    stub.add_check_run(ledger_tip, "lint", "completed", "success", f"{OWNER}/ledger")
    stub.add_status(ledger_tip, "ci/legacy", "pending", f"{OWNER}/ledger")
    stub.add_review(101, "hubot", "CHANGES_REQUESTED", "", repository=f"{OWNER}/ledger")
    stub.add_review(101, "hubot", "APPROVED", "", repository=f"{OWNER}/ledger")
    # The web repository's API is rate limited: one line for it, the rest go on.
    stub.fail("GET", rf"/repos/{OWNER}/web/pulls/\d+", 403, "API rate limit exceeded for installation ID 1.")
    shown = status(world, "--json")
    assert shown.code == 0, shown.stdout + shown.stderr
    tasks = {task["id"]: task for task in json.loads(shown.stdout)["tasks"]}
    assert tasks["billing-fix"] | {"checks": None} == tasks["billing-fix"] | {
        "pr_number": 101,
        "pr_url": f"https://github.com/{OWNER}/billing/pull/101",
        "pr_state": "merged",
        "checks": None,
        "review": "none",
        "error": None,
    }
    assert tasks["ledger-fix"]["pr_state"] in ("draft", "open")
    assert tasks["ledger-fix"]["checks"] == "failing (1/3 passed)"
    assert tasks["ledger-fix"]["review"] == "approved"
    assert tasks["ledger-noop"]["pr_number"] is None and tasks["ledger-noop"]["status"] == "no_change"
    assert "rate limit" in tasks["web-fix"]["error"] and tasks["web-fix"]["pr_number"] == 101
    (line,) = [line for line in shown.stderr.splitlines() if line.startswith("web-fix: ")]
    assert "403 API rate limit exceeded" in line and "rate limited" in line
    # The table and the report carry the same columns.
    table = status(world)
    assert table.code == 0
    (header,) = [line for line in table.stdout.splitlines() if line.startswith("┃ task ")]
    assert [cell.strip() for cell in header.strip("┃").split("┃")][-4:] == ["pr", "state", "checks", "review"]
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") > 8}
    assert "#101" in rows["billing-fix"] and "merged" in rows["billing-fix"]
    assert "failing (1/3 passed)" in rows["ledger-fix"] and "approved" in rows["ledger-fix"]
    report = (world["out"] / "report.md").read_text()
    assert "| pr | state | checks | review |" in report
    assert (
        f"[#101](https://github.com/{OWNER}/ledger/pull/101) |" in report and "failing (1/3 passed)" in report
    )
    assert_no_token_anywhere(world, shown, table)
    assert root.exists()
