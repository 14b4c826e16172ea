"""Every bench runs, in --quick mode, as a user would run it: `python bench/X.py --quick` from the
repository root. A change that breaks a bench fails here; the figures themselves are not judged
(benchmarks print timings, tests never assert them), only that each bench printed them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"-?\d+(\.\d+)?"
RAY_FIGURES = ["ray_overhead_per_task_s", "ray_overhead_median_s"]
RAY_SKIPPED = "ray: skipped, Ray is not installed (pip install 'actsmith[ray]')"
HOSTILE_ATTACKS = [
    "endless loop",
    "time.sleep(60)",
    "blocks SIGINT",
    "fork bomb",
    "memory bomb",
    "os._exit(3)",
    "20 MB print",
    "read stdin",
]


def run_quick(bench: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, f"bench/{bench}", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, f"{bench} --quick exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout.splitlines()


def assert_figures(line: str, names: list[str]) -> None:
    """The bench's last line is exactly these `name=number` figures, in this order."""
    assert re.fullmatch(" ".join(f"{name}={NUMBER}" for name in names), line), line


@pytest.mark.parametrize(
    ("bench", "figures"),
    [
        ("cli_startup.py", ["help_p50_s", "python_p50_s", "ratio"]),
        ("context.py", ["peak_without", "peak_with", "condensations", "budget"]),
        (
            "ledger_step.py",
            ["focused_p50_ms", "spread_p50_ms", "spread_p95_ms", "idle_p50_ms", "git_status_p50_ms"],
        ),
        ("repomap.py", ["files", "ours_cold_s", "ours_warm_ms"]),
        (
            "ignored_files.py",
            [
                "snapshot_first_ms",
                "write_first_ms",
                "snapshot_p50_ms",
                "write_p50_ms",
                "finish_p50_ms",
                "git_status_p50_ms",
            ],
        ),
        (
            "caching.py",
            ["cached_share", "input_cost_cached", "input_cost_uncached", "saving"],
        ),
    ],
)
def test_a_bench_without_docker_runs_quick(bench, figures):
    assert_figures(run_quick(bench)[-1], figures)


@pytest.mark.docker
def test_the_sandbox_latency_bench_runs_quick_and_keeps_its_last_line():
    lines = run_quick("sandbox_latency.py")
    assert lines[-2].startswith("targets: action round trip < 5 ms")
    figures = ["action_p50_ms", "docker_exec_p50_ms", "cold_start_s", "restart_p50_ms", "step_p50_ms"]
    assert_figures(lines[-1], figures)


@pytest.mark.docker
def test_the_first_request_bench_runs_quick():
    assert_figures(run_quick("first_request.py")[-1], ["first_request_p50_s", "litellm_import_p50_s"])


@pytest.mark.docker
def test_the_hostile_actions_bench_runs_quick_and_times_every_attack():
    rows = run_quick("hostile_actions.py")[1:]
    for attack in HOSTILE_ATTACKS:
        row = next((row for row in rows if row.startswith(attack)), None)
        assert row is not None and re.search(rf" {NUMBER} s +[01]/1$", row), (attack, rows)


@pytest.mark.docker
def test_the_batch_bench_runs_quick_with_ray_when_it_is_installed():
    lines = run_quick("batch.py")
    figures = ["j1_s", "j2_s", "speedup_j2", "command_speedup_j2"]
    if importlib.util.find_spec("ray") is None:
        assert RAY_SKIPPED in lines
    else:
        figures += RAY_FIGURES
    assert_figures(lines[-1], figures)


@pytest.mark.docker
def test_the_setup_bench_runs_quick_over_the_corpus():
    last = run_quick("setup.py")[-1]
    assert re.fullmatch(rf"corpus_plans=(\d+)/\1 failed_second_ready_s={NUMBER}", last), last


@pytest.mark.docker
def test_the_candidates_bench_runs_quick():
    assert_figures(run_quick("candidates.py")[-1], ["one_s", "three_s", "ratio", "run_ratio"])
