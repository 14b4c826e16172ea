"""`actsmith batch --backend ray` against a real Ray cluster of two nodes on this machine, started by
this module (a head and a second node, each offering one `sandbox`, small, no dashboard) and stopped
by the process groups it started. Both nodes share this disk, but the backend never relies on it:
repositories travel as bundles, results come back through Ray."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from batch_helpers import (
    THREE_STEPS,
    act,
    batch,
    comparable,
    mixed_batch,
    results,
    slow_batch,
    start_batch,
    stub_batch,
    tree_state,
)
from conftest import clean_env, wait_until

pytestmark = pytest.mark.docker
if os.environ.get("CI"):
    import ray  # CI installs actsmith[ray] (scripts/setup.sh): a missing Ray fails there, never skips
else:
    ray = pytest.importorskip("ray", reason="the Ray backend's tests need actsmith[ray]")

NODE = ["--num-cpus", "1", "--resources", '{"sandbox": 1}', "--object-store-memory", "80000000"]
NODE += ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]


def _ours(marker: str) -> list[int]:
    """Processes of this test's cluster: they inherit the marker from its environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _started(log: Path) -> bool:
    return "Ray runtime started" in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sandbox_image):
    """A head and a second node; yields the address and the environment a driver needs to join."""
    folder = tmp_path_factory.mktemp("ray")
    marker = f"actsmith-test-cluster-{secrets.token_hex(6)}"
    env = clean_env(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop at once when terminated
        ACTSMITH_TEST_CLUSTER=marker,
        TMPDIR=str(folder),  # the workers' folders (and their sandboxes' mounts) are this test's
    )
    with tempfile.TemporaryDirectory(prefix="ar-", dir="/tmp") as short:  # Ray's socket paths are short
        ray_bin = str(Path(sys.executable).parent / "ray")
        port = str(_free_port())
        processes = []
        try:
            head_log = folder / "head.log"
            processes.append(
                subprocess.Popen(
                    [
                        ray_bin,
                        "start",
                        "--head",
                        "--port",
                        port,
                        "--include-dashboard",
                        "false",
                        "--temp-dir",
                        short,
                        *NODE,
                    ],
                    env=env,
                    stdout=head_log.open("w"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            wait_until(lambda: _started(head_log), timeout=90, what="the Ray head")
            node_log = folder / "node.log"
            processes.append(
                subprocess.Popen(
                    [ray_bin, "start", "--address", f"127.0.0.1:{port}", *NODE],
                    env=env,
                    stdout=node_log.open("w"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            wait_until(lambda: _started(node_log), timeout=90, what="the second Ray node")
            yield {"address": f"127.0.0.1:{port}", "env": env, "tmp": folder}
        finally:
            for process in reversed(processes):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while _ours(marker) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in _ours(marker):  # what did not stop when asked
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for process in processes:
                process.wait(timeout=30)
    assert not _ours(marker), "Ray processes of the test cluster are still running"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_ray(cluster, args: list[str], cwd: Path, **env: str):
    return batch(
        [*args, "--backend", "ray", "--ray-address", cluster["address"]], cwd, **cluster["env"], **env
    )


def test_the_ray_backend_spreads_tasks_over_both_nodes_with_the_local_backends_results(cluster, tmp_path):
    local_spec, _ = mixed_batch(tmp_path / "local", "compare")
    ray_spec, checkouts = mixed_batch(tmp_path / "ray", "compare")
    before = {name: tree_state(repo) for name, repo in checkouts.items()}
    local = batch(["run", str(local_spec), "-j", "2"], tmp_path)
    remote = on_ray(cluster, ["run", str(ray_spec)], tmp_path)
    assert (local.code, remote.code) == (1, 1), remote.stdout + remote.stderr
    local_out = tmp_path / "local" / ".actsmith" / "batches" / "compare"
    ray_out = tmp_path / "ray" / ".actsmith" / "batches" / "compare"
    local_results, ray_results = results(local_out), results(ray_out)
    assert {task: comparable(r) for task, r in ray_results.items()} == {
        task: comparable(r) for task, r in local_results.items()
    }
    assert {r["status"] for r in ray_results.values()} == {
        "succeeded",
        "no_change",
        "tests_failed",
        "limit_reached",
    }
    for task in ray_results:
        assert (ray_out / "tasks" / task / "patch.diff").read_text() == (
            local_out / "tasks" / task / "patch.diff"
        ).read_text()
        assert '"event": "model_call"' in (ray_out / "tasks" / task / "trajectory.jsonl").read_text()
    assert len({r["node"] for r in ray_results.values()}) == 2  # both nodes worked
    # The driver wrote the branches into the user's repositories; their checkouts did not move.
    assert "return b + a" in git_show(checkouts["billing"], "actsmith/compare/fix:calc.py")
    assert {name: tree_state(repo) for name, repo in checkouts.items()} == before


def git_show(repo: Path, what: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "show", what], capture_output=True, text=True, check=True
    ).stdout


def test_on_ray_the_cost_cap_and_the_rate_limiter_are_shared_by_workers_on_both_nodes(
    cluster, tmp_path, stub_server
):
    from openai_stub import Reply

    stub_server.script(*[Reply(THREE_STEPS, prompt_tokens=100_000)] * 12)
    spec = stub_batch(tmp_path, stub_server, "capped", 3, max_cost_total=1.0)
    run = on_ray(cluster, ["run", str(spec)], tmp_path)
    assert run.code == 3, run.stdout + run.stderr
    got = results(tmp_path / ".actsmith" / "batches" / "capped")
    assert len(stub_server.requests) == 3 and sum(r["cost"] for r in got.values()) <= 1.0
    assert all("max_cost_total" in r["message"] for r in got.values() if r["status"] != "succeeded")
    # A storm: the two workers (one per node) share one pause instead of each retrying to failure.
    stormy = tmp_path / "storm"
    stormy.mkdir()
    stub_server.script(*[Reply(act("finish('done')"))] * 2)
    stub_server.storm(6.0, retry_after="1")
    storm_spec = stub_batch(stormy, stub_server, "storm", 2)
    storm = on_ray(cluster, ["run", str(storm_spec)], stormy)
    assert storm.code == 0, storm.stdout + storm.stderr
    assert stub_server.storm_answers <= 2 * 2


def test_ctrl_c_on_the_driver_stops_the_ray_tasks_and_leaves_no_container(cluster, tmp_path, docker_client):
    out = tmp_path / "out"
    ray_address = ["--backend", "ray", "--ray-address", cluster["address"]]
    driver = start_batch(slow_batch(tmp_path, "stop"), out, *ray_address, **cluster["env"])

    def sandboxes() -> list:
        from agent_cli.sandbox.identity import LABEL

        mine = str(cluster["tmp"])
        return [
            c
            for c in docker_client.api.containers(all=True, filters={"label": LABEL})
            if any(str(m.get("Source", "")).startswith(mine) for m in c.get("Mounts") or [])
        ]

    wait_until(lambda: len(sandboxes()) == 2, timeout=120, what="a sandbox on each node")
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=180)
    assert driver.returncode == 130, stdout + stderr
    assert sandboxes() == []
    got = results(out)
    assert {r["status"] for r in got.values()} == {"not_started"} and all(
        r["interrupted"] for r in got.values()
    )
