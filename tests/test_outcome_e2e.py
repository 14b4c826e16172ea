"""One run, told the same way by every front end (issue 18): a replay whose finish() the test gate
refuses with a regression `max_test_rounds` times, then the replay runs out. Driven through
`actsmith run --json`, `actsmith batch run` and `actsmith ci` (a local GitHub, a bare origin), each
must say the same category and the same last measured test outcome, counts included. Real CLI, git,
Docker and pytest in the sandbox."""

from __future__ import annotations

import json
import re

import pytest
from batch_helpers import batch, results, write_spec
from ci_helpers import APP, REPOSITORY, TEST_APP, TOKEN, Actions
from conftest import clean_env, git, make_repo, run_cli, write_replay
from github_stub import GitHubStub

from agent_cli.trajectory import read_trajectory

pytestmark = pytest.mark.docker

MORE_TESTS = "def test_still_true():\n    assert True\n"
FILES = {"app.py": APP, "tests/test_app.py": TEST_APP, "tests/test_more.py": MORE_TESTS}
BREAK = (
    "<execute>\nreplace('app.py', \"return 'hi'\", \"return 'bye'\")\nfinish('greet() says bye')\n</execute>"
)
AGAIN = "<execute>\nfinish('greet() says bye, as asked')\n</execute>"
REFUSALS = 2  # --max-test-rounds: both finish() calls are sent back, then the replay has no reply left


def the_end(events: list[dict]) -> dict:
    (end,) = [event for event in events if event["event"] == "end"]
    return end


@pytest.fixture(scope="module")
def told(tmp_path_factory, sandbox_image) -> dict[str, dict]:
    """The same run through the three front ends: what each wrote."""
    root = tmp_path_factory.mktemp("refused")
    replay = write_replay(root / "replay.yaml", [BREAK, AGAIN])
    rounds = ["--max-test-rounds", str(REFUSALS)]

    repo = make_repo(root / "run", FILES)
    ran = run_cli(["run", "make greet() say bye", "--json", "--model", f"replay:{replay}", *rounds], repo)
    run_events = [json.loads(line) for line in ran.stdout.splitlines()]

    make_repo(root / "batch", FILES)
    spec = write_spec(
        root / "spec.yaml",
        {
            "name": "refused",
            "max_test_rounds": REFUSALS,
            "tasks": [
                {
                    "id": "greet",
                    "repo": "batch",
                    "task": "make greet() say bye",
                    "model": "replay:replay.yaml",
                }
            ],
        },
    )
    batched = batch(["run", str(spec)], root)
    out = root / ".actsmith" / "batches" / "refused"

    stub = GitHubStub(REPOSITORY, TOKEN).start()
    stub.add_collaborator("monalisa", 583231, "write")  # who labels the issue in the fixture
    try:
        actions = Actions(root / "ci", stub)
        (actions.checkout / "tests" / "test_more.py").write_text(MORE_TESTS)
        git(actions.checkout, "add", "-A")
        git(actions.checkout, "commit", "-q", "-m", "one more test")
        ci = actions.run("issues", actions.event("issues_labeled"), [BREAK, AGAIN], *rounds)
        comment = next(iter(stub.comment_bodies.values()))[-1]
    finally:
        stub.stop()
    return {
        "run": {"code": ran.code, "stderr": ran.stderr, "end": the_end(run_events)},
        "batch": {
            "code": batched.code,
            "stderr": batched.stderr,
            "result": results(out)["greet"],
            "end": the_end(read_trajectory(out / "tasks" / "greet" / "trajectory.jsonl")),
            "report.md": (out / "report.md").read_text(),
            "report.html": (out / "report.html").read_text(),
        },
        "ci": {
            "code": ci.code,
            "stderr": ci.stderr,
            "end": the_end(ci.trajectory),
            "outputs": ci.outputs,
            "comment": comment,
            "summary": ci.summary,
        },
    }


def test_run_batch_and_ci_tell_the_same_category_and_exit_code(told):
    run, batched, ci = told["run"], told["batch"], told["ci"]
    for front in (run, batched, ci):
        assert (front["end"]["status"], front["end"]["category"]) == ("model_stopped", "agent_error")
        assert front["end"]["exit_code"] == 3
    assert run["code"] == 3, run["stderr"]
    assert ci["code"] == 3, ci["stderr"]
    assert batched["code"] == 1, batched["stderr"]  # a task that did not succeed
    assert batched["result"]["status"] == "agent_error" and batched["result"]["exit_code"] == 3
    assert ci["outputs"]["conclusion"] == "failed"  # the agent's failure is no success
    assert "(`agent_error`: status `model_stopped`, exit 3)" in ci["comment"]


def test_run_batch_and_ci_tell_the_same_last_measured_tests_with_their_counts(told):
    tests = told["run"]["end"]["tests"]
    # The last measured run: the second refused finish(), after step 2, one regression.
    assert tests["state"] == "failed"  # never "unchecked": two runs gave results
    assert (tests["step"], tests["trigger"]) == (2, "finish")
    # A detected pytest runs what failed last time first: that run, still failing, is the last.
    assert tests["counts"] == {"failed": 1} and tests["baseline"] == {"passed": 2}
    assert (tests["regressions"], tests["new_failures"], tests["preexisting"]) == (1, 0, 0)
    assert "tests/test_app.py::test_greet" in tests["text"]
    assert "the last run (the 1 that failed before), at finish() after step 2" in tests["text"]
    # The same, word for word and figure for figure, in the batch's and the CI run's end events.
    assert told["batch"]["end"]["tests"] == tests
    assert told["ci"]["end"]["tests"] == tests
    # And in every report they write.
    result = told["batch"]["result"]
    assert (result["tests_state"], result["tests"], result["test_outcome"]) == (
        "failed",
        tests["text"],
        tests,
    )
    brief = "failed: 1 failed; 1 regression (step 2)"
    assert f"| greet | agent_error | 1 | {brief} |" in told["batch"]["report.md"]
    assert f"<td>{brief}</td>" in told["batch"]["report.html"]
    escaped = tests["text"].replace("|", "\\|")  # a Markdown table cell
    row = f"| tests | failed: {escaped} |"
    assert row in told["ci"]["comment"] and row in told["ci"]["summary"]
    for text in (told["batch"]["report.md"], told["batch"]["report.html"], told["ci"]["comment"]):
        assert "unchecked" not in text


def test_a_commit_of_a_run_with_no_test_command_does_not_say_it_did_not_finish(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", {"app.py": APP})
    replay = write_replay(tmp_path / "replay.yaml", [BREAK])
    ran = run_cli(["run", "make greet() say bye", "--commit", "--model", f"replay:{replay}"], repo)
    assert ran.code == 0, ran.stderr
    body = git(repo, "log", "-1", "--format=%B")
    assert "did not finish" not in body
    assert re.search(r"Tests: untested, no test command found", body), body
    assert "greet() says bye" in body and "- app.py: changed" in body


def test_a_worktree_run_stopped_by_its_model_says_so_in_its_commit(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "repo", FILES)
    replay = write_replay(tmp_path / "replay.yaml", [BREAK, AGAIN])
    args = [
        "run",
        "make greet() say bye",
        "--worktree",
        "--max-test-rounds",
        str(REFUSALS),
        "--model",
        f"replay:{replay}",
    ]
    ran = run_cli(args, repo, env=clean_env())
    assert ran.code == 3, ran.stderr
    body = git(repo, "log", "-1", "--format=%B", "actsmith/make-greet-say-bye")
    assert "The run did not finish (model_stopped):" in body
    assert "Tests: failed, not checked at the end (the run did not finish); the last run" in " ".join(
        body.split()
    )
