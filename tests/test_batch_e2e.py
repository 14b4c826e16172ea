"""`actsmith batch` end to end: the real CLI over real git repositories, real Docker sandboxes, replay
models and the local OpenAI-compatible server. What a user would check: statuses, branches, patches,
exit codes, their own checkouts untouched, resume after a crash, the cost cap, a 429 storm."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from batch_helpers import (
    PASSING,
    THREE_STEPS,
    act,
    batch,
    journal,
    results,
    slow_batch,
    start_batch,
    stub_batch,
    tree_state,
    write_spec,
)
from conftest import git, make_repo, wait_until, write_replay

pytestmark = pytest.mark.docker

# ------------------------------------------------------------------------- a mixed batch, 3 repositories


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, sandbox_image):
    """One batch over three repositories (and a clone of one through a URL): a success, no change,
    failing tests, a step limit and a model that runs out of replies, two at a time."""
    root = tmp_path_factory.mktemp("mixed")
    billing = make_repo(root / "billing", PASSING)
    ledger = make_repo(root / "ledger", {**PASSING, "README.md": "# ledger\n"})
    auth = make_repo(root / "auth", PASSING)
    origin = root / "auth-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(auth), str(origin)], check=True)
    (billing / "calc.py").write_text("def add(a, b):\n    return a + b  # my uncommitted note\n")
    (billing / "scratch.txt").write_text("untracked work of mine\n")
    replays = root / "replays"
    replays.mkdir()
    replay = {
        "fix": [act("replace('calc.py', 'return a + b', 'return b + a')"), act("finish('swapped')")],
        "noop": [act("finish('nothing to change')")],
        "break": [act("replace('calc.py', 'return a + b', 'return a - b')"), act("finish('done')")],
        "spin": [act("print('thinking')")] * 5,
        "short": [act("print('one')")],
        "url": [act("create('NOTES.md', 'cloned\\n')"), act("finish('noted')")],
    }
    for name, replies in replay.items():
        write_replay(replays / f"{name}.yaml", replies)
    spec = write_spec(
        root / "spec.yaml",
        {
            "name": "mixed",
            "max_steps": 6,
            "tasks": [
                {
                    "id": "billing-fix",
                    "repo": "billing",
                    "task": "swap the operands",
                    "model": "replay:replays/fix.yaml",
                },
                {
                    "id": "ledger-noop",
                    "repo": "ledger",
                    "task": "tidy up",
                    "model": "replay:replays/noop.yaml",
                },
                {
                    "id": "auth-break",
                    "repo": "auth",
                    "task": "subtract instead",
                    "model": "replay:replays/break.yaml",
                    "max_test_rounds": 0,
                },
                {
                    "id": "billing-spin",
                    "repo": "billing",
                    "task": "think hard",
                    "model": "replay:replays/spin.yaml",
                    "max_steps": 2,
                },
                {
                    "id": "ledger-short",
                    "repo": "ledger",
                    "task": "go on",
                    "model": "replay:replays/short.yaml",
                },
                {
                    "id": "auth-url",
                    "repo": origin.as_uri(),
                    "task": "add notes",
                    "model": "replay:replays/url.yaml",
                },
            ],
        },
    )
    checkouts = {"billing": billing, "ledger": ledger, "auth": auth}
    before = {name: tree_state(repo) for name, repo in checkouts.items()}
    run = batch(["run", str(spec), "-j", "2"], root)
    return {
        "root": root,
        "run": run,
        "out": root / ".actsmith" / "batches" / "mixed",
        "checkouts": checkouts,
        "before": before,
        "origin": origin,
    }


def test_a_mixed_batch_gives_each_task_its_status_branch_and_patch(mixed):
    run, out, checkouts = mixed["run"], mixed["out"], mixed["checkouts"]
    assert run.code == 1, run.stdout + run.stderr  # some tasks did not succeed
    got = results(out)
    assert {task: result["status"] for task, result in got.items()} == {
        "billing-fix": "succeeded",
        "ledger-noop": "no_change",
        "auth-break": "tests_failed",
        "billing-spin": "limit_reached",
        "ledger-short": "agent_error",
        "auth-url": "succeeded",
    }
    for task, result in got.items():
        for key in ("id", "status", "exit_code", "steps", "cost", "branch", "files_changed"):
            assert key in result, (task, key)
        assert result["branch"] == f"actsmith/mixed/{task}"
        assert (out / "tasks" / task / "trajectory.jsonl").stat().st_size > 0
    # The branch holds the work, from the commit the user had; the patch says the same.
    billing = checkouts["billing"]
    assert got["billing-fix"]["files_changed"] == ["calc.py"]
    assert "return b + a" in git(billing, "show", "actsmith/mixed/billing-fix:calc.py")
    patch = (out / "tasks" / "billing-fix" / "patch.diff").read_text()
    assert "-    return a + b\n+    return b + a\n" in patch
    assert (
        git(billing, "merge-base", "actsmith/mixed/billing-fix", "main").strip()
        == mixed["before"]["billing"]["commit"]
    )
    assert (out / "tasks" / "ledger-noop" / "patch.diff").read_text() == ""
    assert (
        git(checkouts["ledger"], "rev-parse", "actsmith/mixed/ledger-noop").strip()
        == mixed["before"]["ledger"]["commit"]
    )
    assert "return a - b" in (out / "tasks" / "auth-break" / "patch.diff").read_text()
    assert got["auth-break"]["tests_state"] == "failed"
    assert "step limit" in got["billing-spin"]["message"]
    assert "no reply left" in got["ledger-short"]["message"]
    # A URL is cloned into the batch folder; its branch lives there, the origin is not written to.
    clone = Path(got["auth-url"]["repo"])
    assert clone.parent == out / "repos"
    assert git(clone, "show", "actsmith/mixed/auth-url:NOTES.md") == "cloned\n"
    assert "actsmith" not in git(mixed["origin"], "branch", "--list")
    assert "ledger-short" in (out / "report.md").read_text()


def test_the_users_checkouts_are_byte_identical_afterwards(mixed):
    for name, repo in mixed["checkouts"].items():
        assert tree_state(repo) == mixed["before"][name], name
        assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1  # none left over


def test_status_prints_the_table_of_the_batch(mixed):
    run = batch(["status", str(mixed["out"])], mixed["root"])
    assert run.code == 0, run.stderr
    for task, status in (
        ("billing-fix", "succeeded"),
        ("auth-break", "tests_failed"),
        ("ledger-noop", "no_change"),
    ):
        line = next(line for line in run.stdout.splitlines() if task in line)
        assert status in line and f"actsmith/mixed/{task}" in line


def test_a_rerun_skips_what_finished_and_retry_failed_runs_the_failures_again(mixed):
    out, root = mixed["out"], mixed["root"]
    trajectories = {p.parent.name: p.read_bytes() for p in (out / "tasks").glob("*/trajectory.jsonl")}
    again = batch(["run", str(root / "spec.yaml")], root)
    assert again.code == 1
    assert {p.parent.name: p.read_bytes() for p in (out / "tasks").glob("*/trajectory.jsonl")} == trajectories
    started = [e["id"] for e in journal(out) if e["event"] == "started"]
    assert sorted(started) == sorted(trajectories)  # nothing ran twice
    # --retry-failed: only the failures run again, each from the branch's base: the tests it broke
    # are found broken again, not taken as the new baseline; the first attempt's commit is kept.
    first_break = results(out)["auth-break"]["commit"]
    retry = batch(["run", str(root / "spec.yaml"), "--retry-failed"], root)
    assert retry.code == 1
    started = [e["id"] for e in journal(out) if e["event"] == "started"]
    assert sorted(started) == sorted([*trajectories, "auth-break", "billing-spin", "ledger-short"])
    got = results(out)
    assert got["billing-spin"]["attempt"] == 2 and got["billing-fix"]["attempt"] == 1
    assert got["auth-break"]["status"] == "tests_failed" and got["auth-break"]["attempt"] == 2
    auth = mixed["checkouts"]["auth"]
    assert git(auth, "rev-parse", "refs/actsmith/attempts/mixed/auth-break/1").strip() == first_break


class Page(HTMLParser):
    """What a browser shows of report.html: the table's rows, the text inside each task's diff and
    steps, and the links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.details: dict[str, str] = {}  # "<task>/<diff|steps>" -> its text
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._section = ""
        self._details: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "section":
            self._section = attrs.get("id", "").removeprefix("task-")
        elif tag == "details" and attrs.get("class") in ("diff", "steps"):
            self._details.append(f"{self._section}/{attrs['class']}")
        self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "details" and self._stack.count("details") == 1 and self._details:
            self._details.pop()
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for key in self._details:
            self.details[key] = self.details.get(key, "") + data


def test_report_html_shows_the_table_diffs_steps_and_trajectories_in_a_browser(mixed, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        # CI installs it (scripts/setup.sh): there a missing browser is a failure, never a skip.
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    report = mixed["out"] / "report.html"
    rendered = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert rendered.returncode == 0, rendered.stderr
    page = Page()
    page.feed(rendered.stdout)
    table = {row[0]: row for row in page.rows if row}
    assert table["billing-fix"][1:4] == [
        "succeeded",
        "1",
        "passed: 1 passed (step 2)",
    ]  # tests as last measured
    assert table["auth-break"][1] == "tests_failed" and table["ledger-noop"][1] == "no_change"
    assert table["billing-spin"][-1] == "actsmith/mixed/billing-spin"
    assert "+    return b + a" in page.details["billing-fix/diff"]
    steps = page.details["billing-fix/steps"]
    assert "Step 1" in steps and "replace('calc.py'" in steps and "finish('swapped')" in steps
    trajectories = [link for link in page.links if link.endswith("trajectory.jsonl")]
    assert len(trajectories) == 6
    assert all((report.parent / link).is_file() for link in trajectories)


# ------------------------------------------------------------------------------------------ bad specs


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        (
            [{"id": "one", "repo": "repo", "task": "x"}, {"id": "one", "repo": "repo", "task": "y"}],
            "tasks[1].id: duplicate task id 'one' (also tasks[0])",
        ),
        ([{"id": "one", "repo": "repo", "task": "x", "max_stepz": 3}], "tasks[0].max_stepz: unknown key"),
        (
            [{"id": "one", "repo": "repo", "task": "x", "max_steps": 0}],
            "tasks[0]: max_steps = 0 is out of range",
        ),
        ([{"id": "taken", "repo": "repo", "task": "x"}], "branch actsmith/bad/taken already exists"),
        ([{"id": "one", "repo": "nowhere", "task": "x"}], "tasks[0].repo:"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field_and_exit_2(tmp_path, repo, tasks, expected):
    git(repo, "branch", "actsmith/bad/taken")  # a branch of the user's that the batch did not make
    write_replay(tmp_path / "r.yaml", [act("finish('x')")])
    spec = write_spec(tmp_path / "spec.yaml", {"name": "bad", "model": "replay:r.yaml", "tasks": tasks})
    run = batch(["run", str(spec)], tmp_path, timeout=60)
    assert run.code == 2, run.stdout + run.stderr
    assert expected in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / ".actsmith" / "batches" / "bad" / "journal.jsonl").exists()  # nothing started
    assert "actsmith/bad/one" not in git(repo, "branch", "--list")


# --------------------------------------------------------------------------------- resume after a kill


def test_a_driver_killed_mid_batch_resumes_without_rerunning_finished_tasks(tmp_path, sandbox_image):
    repos = {name: make_repo(tmp_path / name, PASSING) for name in ("one", "two", "three")}
    replays = {name: tmp_path / f"{name}.yaml" for name in ("quick", "slow", "also")}
    write_replay(replays["quick"], [act("create('done.txt', 'x\\n')"), act("finish('quick')")])
    write_replay(replays["slow"], [act("import time\ntime.sleep(120)"), act("finish('slow')")])
    write_replay(replays["also"], [act("finish('nothing')")])
    spec = write_spec(
        tmp_path / "spec.yaml",
        {
            "name": "crash",
            "tests": False,
            "tasks": [
                {"id": "first", "repo": "one", "task": "quick one", "model": "replay:quick.yaml"},
                {"id": "second", "repo": "two", "task": "slow one", "model": "replay:slow.yaml"},
                {"id": "third", "repo": "three", "task": "last one", "model": "replay:also.yaml"},
            ],
        },
    )
    out = tmp_path / "out"
    driver = start_batch(spec, out, "-j", "1")
    slow_trajectory = out / "tasks" / "second" / "trajectory.jsonl"
    try:
        wait_until(
            lambda: slow_trajectory.exists() and '"event": "action"' in slow_trajectory.read_text(),
            timeout=120,
            what="the slow task's first action",
        )
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    first = (out / "tasks" / "first" / "trajectory.jsonl").read_bytes()
    assert results(out)["first"]["status"] == "succeeded"
    assert "second" not in results(out)  # killed before it ended: no result
    write_replay(replays["slow"], [act("finish('not slow this time')")])  # the second attempt is quick
    again = batch(["run", str(spec), "--out", str(out)], tmp_path)
    assert again.code == 0, again.stdout + again.stderr
    got = results(out)
    assert {task: result["status"] for task, result in got.items()} == {
        "first": "succeeded",
        "second": "no_change",
        "third": "no_change",
    }
    assert (out / "tasks" / "first" / "trajectory.jsonl").read_bytes() == first  # not run again
    started = [e["id"] for e in journal(out) if e["event"] == "started"]
    assert started.count("first") == 1 and started.count("second") == 2 and started.count("third") == 1
    assert got["second"]["attempt"] == 2
    assert git(repos["two"], "worktree", "list", "--porcelain").count("worktree ") == 1


# -------------------------------------------------------------------- the shared gate, over HTTP


def test_max_cost_total_stops_new_work_across_parallel_workers_with_exit_3(
    tmp_path, stub_server, sandbox_image
):
    from openai_stub import Reply

    # Each call costs about $0.25 (100,000 prompt tokens of gpt-4o); each task needs three calls.
    stub_server.script(*[Reply(THREE_STEPS, prompt_tokens=100_000)] * 12)
    spec = stub_batch(tmp_path, stub_server, "capped", 4, max_cost_total=1.0)
    run = batch(["run", str(spec), "-j", "3"], tmp_path)
    assert run.code == 3, run.stdout + run.stderr
    out = tmp_path / ".actsmith" / "batches" / "capped"
    got = results(out)
    assert sum(result["cost"] for result in got.values()) <= 1.0
    assert len(stub_server.requests) == 3  # a fourth call would have passed the cap, whichever task asked
    # Whichever workers got the three calls, the others were stopped by the batch's cap.
    stopped = [r for r in got.values() if r["status"] != "succeeded"]
    assert {r["status"] for r in stopped} <= {"limit_reached", "not_started"}
    assert len(stopped) >= 3 and all("max_cost_total" in r["message"] for r in stopped)
    assert sum(e["cost"] for e in journal(out) if e["event"] == "spent") == pytest.approx(
        sum(result["cost"] for result in got.values())
    )


def test_a_429_storm_is_absorbed_by_the_shared_limiter(tmp_path, stub_server, sandbox_image):
    from openai_stub import Reply

    stub_server.script(*[Reply(act("finish('done')"))] * 4)
    # For 6 s every request gets a 429 asking to retry after 1 s. Alone, each of the 4 workers would
    # retry every second and give up after its 4 retries; sharing the pause, they do not.
    stub_server.storm(6.0, retry_after="1")
    spec = stub_batch(tmp_path, stub_server, "storm", 4)
    run = batch(["run", str(spec), "-j", "4"], tmp_path)
    got = results(tmp_path / ".actsmith" / "batches" / "storm")
    assert run.code == 0, run.stdout + run.stderr + json.dumps(got, indent=1)
    assert {result["status"] for result in got.values()} == {"no_change"}
    assert stub_server.storm_answers <= 2 * 4  # one wave from the workers, then one probe per pause


def test_json_gives_the_batch_as_events(tmp_path, stub_server, sandbox_image):
    from openai_stub import Reply

    stub_server.script(*[Reply(act("finish('done')"))] * 2)
    spec = stub_batch(tmp_path, stub_server, "events", 2)
    run = batch(["run", str(spec), "--json"], tmp_path)
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "batch_start" and kinds[-1] == "batch_end"
    assert kinds.count("task_start") == 2 and kinds.count("task_end") == 2
    assert {e["id"] for e in events if e["event"] == "task_progress"} == {"task0", "task1"}
    assert events[-1]["exit_code"] == 0 and events[-1]["counts"] == {"no_change": 2}


def test_ctrl_c_stops_the_batch_with_130_and_no_container_left(tmp_path, sandbox_image, docker_client):
    out = tmp_path / "out"
    driver = start_batch(slow_batch(tmp_path, "stop"), out, "-j", "2")
    trajectories = [out / "tasks" / f"t{n}" / "trajectory.jsonl" for n in range(2)]
    wait_until(
        lambda: all(p.exists() and '"event": "action"' in p.read_text() for p in trajectories),
        timeout=120,
        what="two tasks running",
    )
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stdout + stderr
    got = results(out)
    assert {r["status"] for r in got.values()} == {"not_started"}
    assert all(r["interrupted"] for r in got.values())  # so a resume runs them all
    assert got["t0"]["steps"] == got["t1"]["steps"] == 1  # stopped mid-action
    assert got["t2"]["steps"] == 0 and "interrupted" in got["t2"]["message"]
    assert os.path.exists(out / "report.html")
    # The conftest fixture fails the test if any of this test's containers is left.
