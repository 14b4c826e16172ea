"""Batch jobs: many tasks over many repositories, each a Session in its own worktree and sandbox, in
parallel threads or on a Ray cluster, with one cost cap and one rate limiter per provider shared by
all of them, a journal to resume from, and a report.

spec.py      SPEC.yaml: tasks, settings, one-line errors naming the field
driver.py    plan from the spec and the journal, make the branches, record what comes back
task.py      run one task's Session on this machine (both backends)
local.py     the local backend: threads, environments prepared ahead
ray_backend.py  the Ray backend: repositories shipped as git bundles, the gate in an actor
gate.py      the shared budget and per-provider rate limiter behind every session's ModelGate
journal.py   DIR/journal.jsonl, what resume trusts
results.py   result.json, the batch statuses, the exit code
repos.py     branches, patches and bundles in the user's repositories
events.py    the batch's events, and the watcher that derives them from a session's
progress.py  the live table, plain lines, the status table
report.py    report.md and report.html (templates/)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_cli.errors import UsageError

if TYPE_CHECKING:
    from agent_cli.batch.driver import BatchOptions, Driver
    from agent_cli.batch.results import Tally


def run_batch(driver: Driver) -> Tally:
    """Run the driver's batch on the backend its options name."""
    from agent_cli.batch.local import LocalBackend
    from agent_cli.sandbox import default_jobs

    options: BatchOptions = driver.options
    here = options.jobs or default_jobs(driver.sandbox_memory())
    if options.backend == "local":
        return driver.run(LocalBackend(here))
    if options.backend == "ray":
        from agent_cli.batch.ray_backend import RayBackend

        # A cluster we join offers its own sandboxes (-j can only lower that); a local Ray gets
        # what this machine holds.
        with RayBackend(options.ray_address, options.jobs if options.ray_address else here) as backend:
            return driver.run(backend)
    raise UsageError(f"--backend {options.backend}: unknown backend (local or ray)")
