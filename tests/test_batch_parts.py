"""The batch's parts without Docker: the spec's rules, the status mapping, the shared gate's budget
and rate limiter (what every worker of a batch relies on), in milliseconds."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from agent_cli.batch.gate import MIN_PAUSE_S, BudgetSpent, SharedGate, TaskGate
from agent_cli.batch.results import batch_status
from agent_cli.batch.spec import load_spec
from agent_cli.cancel import Cancelled, CancelToken
from agent_cli.errors import UsageError
from agent_cli.outcome import Category

MODEL, PROVIDER = "openai/gpt-4o", "openai@default"


def spec_file(tmp_path, data):
    path = tmp_path / "batch" / "spec.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_matrix_names_tasks_after_their_repositories_and_paths_are_relative_to_the_spec(tmp_path):
    (tmp_path / "batch" / "replays").mkdir(parents=True)
    (tmp_path / "batch" / "replays" / "r.yaml").write_text("- x\n")
    spec = load_spec(
        spec_file(
            tmp_path,
            {
                "name": "drop-six",
                "model": "replay:replays/r.yaml",
                "max_cost_total": 40,
                "task": "Remove the six dependency",
                "repos": ["../billing", "https://example.org/team/auth.git"],
            },
        )
    )
    assert [(t.id, t.repo, t.is_url) for t in spec.tasks] == [
        ("billing", str(tmp_path / "billing"), False),
        ("auth", "https://example.org/team/auth.git", True),
    ]
    assert spec.tasks[0].settings["model"] == f"replay:{tmp_path / 'batch' / 'replays' / 'r.yaml'}"
    assert spec.branch("auth") == "actsmith/drop-six/auth"
    assert spec.default_out == tmp_path / "batch" / ".actsmith" / "batches" / "drop-six"
    assert spec.max_cost_total == 40.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "x", "task": "t", "repos": ["a/app", "b/app"]},
            "repos[1]: duplicate task id 'app' (also repos[0])",
        ),
        ({"name": "x", "trajectory": "t.jsonl", "task": "t", "repos": ["a"]}, "trajectory: set by the batch"),
        ({"name": "x y", "task": "t", "repos": ["a"]}, "name: 'x y' must be a word"),
        (
            {"name": "x", "max_cost_total": 0, "task": "t", "repos": ["a"]},
            "max_cost_total = 0 must be a number",
        ),
        ({"name": "x", "model": "replay:none.yaml", "task": "t", "repos": ["a"]}, "replay file"),
        (
            {"name": "x", "tasks": [{"id": "a/b", "repo": "r", "task": "t"}]},
            "tasks[0].id: 'a/b' cannot be a task id",
        ),
        ({"name": "x"}, "tasks: none given"),
    ],
)
def test_spec_errors_name_the_field(tmp_path, data, expected):
    with pytest.raises(UsageError) as error:
        load_spec(spec_file(tmp_path, data))
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_a_batch_status_is_the_sessions_category_and_an_interrupted_task_has_none_yet():
    assert {category: batch_status(category) for category in Category} == {
        Category.SUCCEEDED: "succeeded",
        Category.NO_CHANGE: "no_change",
        Category.UNTESTED: "untested",
        Category.TESTS_FAILED: "tests_failed",
        Category.LIMIT_REACHED: "limit_reached",
        Category.AGENT_ERROR: "agent_error",
        Category.INFRA_ERROR: "infra_error",
        Category.INTERRUPTED: "not_started",
    }


def test_a_models_first_call_goes_alone_then_calls_reserve_what_the_dearest_cost():
    gate = SharedGate(cap=1.0)
    first = gate.admit("a", MODEL, PROVIDER)
    assert first.wait_s == 0 and first.refused is None
    assert gate.admit("b", MODEL, PROVIDER).wait_s > 0  # its cost is not known yet
    gate.settle("a", MODEL, PROVIDER, 0.3)
    assert gate.admit("b", MODEL, PROVIDER).wait_s == 0  # reserves 0.3: committed 0.6
    assert gate.admit("c", MODEL, PROVIDER).wait_s == 0  # committed 0.9
    refused = gate.admit("d", MODEL, PROVIDER)
    assert refused.refused and "max_cost_total" in refused.refused
    assert not gate.can_start() and gate.capped() and gate.refused("d")
    gate.settle("b", MODEL, PROVIDER, 0.1)  # cheaper than reserved: room again
    gate.release("c")  # a task that ended holds nothing
    assert gate.can_start()
    assert gate.drain() == [("a", 0.3), ("b", 0.1)] and gate.drain() == []


def test_parallel_workers_never_pass_the_cap():
    gate = SharedGate(cap=1.0)
    gate.admit("seed", MODEL, PROVIDER)
    gate.settle("seed", MODEL, PROVIDER, 0.1)
    admitted = []

    def worker(name: str) -> None:
        for _ in range(20):
            if gate.admit(name, MODEL, PROVIDER).refused:
                return
            admitted.append(name)
            gate.settle(name, MODEL, PROVIDER, 0.1)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gate.spent <= 1.0 + 1e-9
    assert len(admitted) == 9  # the seed's call and nine more fill the cap exactly


def test_a_429_pauses_every_worker_and_a_storm_backs_off_with_one_probe_at_a_time():
    gate = SharedGate()
    sent = gate.admit("a", MODEL, PROVIDER).at
    gate.admit("b", MODEL, PROVIDER)
    gate.throttle("a", MODEL, PROVIDER, 0.0, sent)
    gate.throttle("b", MODEL, PROVIDER, 0.0, sent)  # in flight before the pause: no escalation
    provider = gate.providers[PROVIDER]
    assert provider.strikes == 1 and provider.spacing == MIN_PAUSE_S
    assert gate.admit("c", MODEL, PROVIDER).wait_s > 0.5  # a worker that never saw the 429 waits too
    provider.paused_until = provider.next_slot = time.monotonic()  # the pause is over
    probe = gate.admit("c", MODEL, PROVIDER)
    assert probe.wait_s == 0
    assert gate.admit("d", MODEL, PROVIDER).wait_s > 0.5  # one request per pause until one succeeds
    gate.throttle("c", MODEL, PROVIDER, 0.0, probe.at + 0.001)  # the probe failed too: twice the pause
    assert provider.strikes == 2 and provider.spacing == 2 * MIN_PAUSE_S
    provider.paused_until = provider.next_slot = time.monotonic()
    gate.settle("c", MODEL, PROVIDER, None)
    assert gate.admit("d", MODEL, PROVIDER).wait_s == 0 and gate.admit("e", MODEL, PROVIDER).wait_s == 0


def test_a_task_gate_raises_when_the_budget_refuses_and_stops_waiting_when_cancelled():
    shared = SharedGate(cap=0.5)
    shared.spent = 0.5
    refused = TaskGate(shared, "a", CancelToken())
    with pytest.raises(BudgetSpent):
        refused.admit(MODEL)
    assert refused.refused
    shared = SharedGate()
    shared.throttle("x", MODEL, "openai@default", 30.0, 0.0)
    cancel = CancelToken()
    waiting = TaskGate(shared, "b", cancel)
    threading.Timer(0.2, cancel.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        waiting.admit(MODEL)
    assert time.monotonic() - started < 30
