"""The parts of `batch publish` and `batch status` that need no sandbox: which remotes are GitHub's,
the spec's `github:`, how checks and reviews are counted, and a pull request's body (the model's
words redacted and defanged, the task's as written)."""

from __future__ import annotations

import pytest
from batch_helpers import write_spec
from conftest import git, make_repo

from agent_cli.batch.publish import GitHubAccess, github_repository, pull_body
from agent_cli.batch.results import TaskResult
from agent_cli.batch.spec import load_spec
from agent_cli.ci.github_api import count_checks, decision_of
from agent_cli.errors import UsageError
from agent_cli.trajectory import Redactor

HOSTS = frozenset({"github.com", "github.example.com"})


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/billing.git", "acme/billing"),
        ("https://x-access-token@github.com/acme/billing", "acme/billing"),
        ("git@github.com:acme/billing.git", "acme/billing"),
        ("ssh://git@github.com:22/acme/billing.git", "acme/billing"),
        ("https://github.example.com/acme/billing/", "acme/billing"),
        ("https://gitlab.com/acme/billing.git", None),
        ("/srv/git/billing.git", None),
        ("https://github.com/acme/billing/extra.git", None),
        ("https://github.com.evil.example/acme/billing.git", None),
    ],
)
def test_a_github_remote_names_its_repository_and_no_other_does(url, repository):
    assert github_repository(url, HOSTS) == repository


def test_the_token_and_gitHubs_address_come_from_the_environment():
    access = GitHubAccess.from_environ(
        {"GH_TOKEN": "t0ken-value", "GITHUB_SERVER_URL": "https://github.example.com/"}
    )
    assert access.token == "t0ken-value" and access.api_url == "https://api.github.com"
    assert access.hosts == frozenset({"github.com", "github.example.com"})
    assert GitHubAccess.from_environ({"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}).token == "a"
    assert GitHubAccess.from_environ({}).token is None


def test_a_tasks_github_is_checked_with_the_spec(tmp_path):
    make_repo(tmp_path / "billing", {"a.txt": "a\n"})
    task = {"id": "b", "repo": "billing", "task": "t", "model": "openai/gpt-4o"}
    spec = load_spec(
        write_spec(tmp_path / "ok.yaml", {"name": "n", "tasks": [task | {"github": "acme/billing"}]})
    )
    assert spec.tasks[0].github == "acme/billing"
    with pytest.raises(UsageError, match=r"tasks\[0\]\.github: 'acme' is not a GitHub repository OWNER/NAME"):
        load_spec(write_spec(tmp_path / "bad.yaml", {"name": "n", "tasks": [task | {"github": "acme"}]}))


def test_checks_count_check_runs_and_commit_statuses_together():
    runs = [
        {"name": "tests", "status": "completed", "conclusion": "failure"},
        {"name": "lint", "status": "completed", "conclusion": "success"},
        {"name": "docs", "status": "completed", "conclusion": "skipped"},
        {"name": "slow", "status": "in_progress", "conclusion": None},
    ]
    statuses = [{"context": "ci/legacy", "state": "error"}, {"context": "cla", "state": "success"}]
    checks = count_checks(runs, statuses)
    assert (checks.passed, checks.failed, checks.pending) == (3, 2, 1)
    assert checks.summary == "failing (3/6 passed)"
    assert count_checks(runs[1:3], []).summary == "passing (2/2 passed)"
    assert count_checks(runs[3:], []).summary == "pending (0/1 passed)"
    assert count_checks([], []).summary == "none"


def test_the_review_decision_is_each_reviewers_latest_verdict():
    assert decision_of([]) == "none"
    assert decision_of([("a", "COMMENTED")]) == "none"
    assert decision_of([("a", "CHANGES_REQUESTED"), ("a", "APPROVED")]) == "approved"
    assert decision_of([("a", "APPROVED"), ("b", "CHANGES_REQUESTED")]) == "changes_requested"
    assert decision_of([("a", "CHANGES_REQUESTED"), ("a", "COMMENTED")]) == "changes_requested"
    assert decision_of([("a", "APPROVED"), ("a", "DISMISSED")]) == "none"


def test_a_pull_requests_body_shows_the_task_as_written_and_the_models_words_inert(tmp_path):
    repo = make_repo(tmp_path / "repo", {"calc.py": "a\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "calc.py").write_text("b\n")
    git(repo, "commit", "-qam", "change")
    tip = git(repo, "rev-parse", "HEAD").strip()
    leaked = "ghp_" + "Z1" * 18
    result = TaskResult(
        id="billing",
        status="succeeded",
        exit_code=0,
        steps=3,
        cost=0.0123,
        branch="actsmith/n/billing",
        files_changed=["calc.py"],
        repo=str(repo),
        task="Drop six.\n\nFixes #12 in the tracker.",
        summary=f"done ![x](http://evil.example/?d=1) @someone closes #99 {leaked}",
        tests="2 passed (before the run: 2 passed) | none failing",
        tests_state="passed",
        base=base,
    )
    body = pull_body("drop-six", result, tip, "acme/billing", Redactor({}))
    assert "**actsmith batch `drop-six`, task `billing`**: succeeded" in body
    assert "### Task\n\nDrop six.\n\nFixes #12 in the tracker." in body  # the user's words, whole
    assert leaked not in body and "REDACTED" in body
    assert "![x]" not in body and "(image `http://evil.example/?d=1`)" in body
    assert "@someone" not in body and "closes `#99`" in body
    assert "| tests | passed: 2 passed (before the run: 2 passed) \\| none failing |" in body
    assert "| cost | $0.0123, 3 steps |" in body and f"at `{tip[:12]}`" in body
    assert "calc.py | 2 +-" in body
