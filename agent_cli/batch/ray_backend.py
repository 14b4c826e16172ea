"""The Ray backend: each task is a Ray task that needs one unit of the custom `sandbox` resource
(declared by nodes that have Docker), and runs the same `run_task` as the local backend.

Workers do not share the driver's disk. The driver ships each task's branch as a git bundle (one per
repository state, put in the object store once) and its replay files; the worker clones the bundle
into a folder of its own, runs the session there, and sends back what its branch gained (a bundle of
the new commits), its trajectory and how it ended. The driver then moves the branch in the user's
repository itself, and reads the patch from it exactly as for a local task.

The shared gate (cost cap, rate limiters) is a `SharedGate` inside an actor; progress and the
driver's interrupt travel through a second actor, `Mailbox`. A task lost with its node (the worker
or the node died) is tried once more; a second loss is an infra_error. Agent failures come back as
results and are never retried. Ctrl-C asks every worker to stop its session (the container goes,
the branch keeps what was done); a worker that does not answer in time is cancelled by force, and
each node then removes sandbox containers whose owner died.

Without --ray-address, actsmith starts a local Ray (one node, `sandbox` = -j) and stops it after.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.batch import repos
from agent_cli.batch.gate import Admission, SharedGate
from agent_cli.batch.task import TaskJob, TaskRun, run_task
from agent_cli.cancel import CancelToken
from agent_cli.errors import ActsmithError, EnvironmentProblem, UsageError
from agent_cli.model import REPLAY_PREFIX
from agent_cli.workspace import Workspace

if TYPE_CHECKING:
    from types import TracebackType

    from agent_cli.batch.driver import Dispatch, Driver
    from agent_cli.batch.events import TaskProgress

SANDBOX = "sandbox"  # the custom resource a node offers per sandbox it can run
POLL_S = 0.25
STOP_GRACE_S = 90.0  # how long stopped workers get to close their sessions before being cancelled
LOCAL_OBJECT_STORE = 256 << 20
FORWARDED_ENV_SUFFIXES = ("_API_KEY", "_API_BASE", "_API_VERSION")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'actsmith[ray]'") from None
    return ray


# ------------------------------------------------------------------------------------------ actors


class Mailbox:
    """Progress from the workers to the driver, and the driver's interrupt to the workers."""

    def __init__(self) -> None:
        self.events: list[TaskProgress] = []
        self.stopping = False

    def push(self, event: TaskProgress) -> None:
        self.events.append(event)

    def take(self) -> list[TaskProgress]:
        events, self.events = self.events, []
        return events

    def stop(self) -> None:
        self.stopping = True

    def stopped(self) -> bool:
        return self.stopping


class RemoteGate:
    """The `SharedGate` in its actor, asked like the local one (by the driver and by every worker)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def _ask(self, method: str, *args: Any) -> Any:
        return _ray().get(getattr(self.actor, method).remote(*args))

    def admit(self, task: str, model: str, provider: str) -> Admission:
        result: Admission = self._ask("admit", task, model, provider)
        return result

    def settle(self, task: str, model: str, provider: str, cost: float | None) -> None:
        self._ask("settle", task, model, provider, cost)

    def throttle(self, task: str, model: str, provider: str, delay: float, sent_at: float) -> None:
        self._ask("throttle", task, model, provider, delay, sent_at)

    def release(self, task: str) -> None:
        self._ask("release", task)

    def can_start(self) -> bool:
        return bool(self._ask("can_start"))

    def capped(self) -> bool:
        return bool(self._ask("capped"))

    def drain(self) -> list[tuple[str, float]]:
        drained: list[tuple[str, float]] = self._ask("drain")
        return drained


# -------------------------------------------------------------------------------------- the worker


@dataclass
class Shipment:
    """What a worker gets besides the job and the bundle of its branch."""

    bundled: str  # the branch the bundle was made from (tasks at one commit share one bundle)
    identity: tuple[str, str]  # whom the worker's commits are by
    replays: dict[str, bytes]  # replay file path on the driver -> its content


@dataclass
class Returned:
    """What a worker sends back."""

    run: TaskRun
    commits: bytes | None  # what the branch gained, as a bundle
    trajectory: bytes


def work(job: TaskJob, bundle: bytes, shipment: Shipment, gate: RemoteGate, mailbox: Any) -> Returned:
    """The Ray task: the job's session on a clone of its own, in a folder removed afterwards."""
    ray = _ray()
    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    cancel = CancelToken()
    done = threading.Event()
    watcher = threading.Thread(target=_watch_stop, args=(mailbox, cancel, done), daemon=True)
    watcher.start()
    try:
        with tempfile.TemporaryDirectory(prefix="actsmith-ray-task-") as folder:
            root = repos.unbundle(
                bundle, shipment.bundled, Path(folder) / "repo", job.branch, shipment.identity
            )
            settings = _local_replays(job.settings, shipment.replays, Path(folder) / "replays")
            trajectory = Path(folder) / "trajectory.jsonl"
            run = run_task(
                replace(job, settings=settings),
                root,
                trajectory,
                gate,
                cancel,
                lambda event: mailbox.push.remote(event),
                node,
            )
            commits = repos.bundle_since(root, job.branch, job.base)
            return Returned(run, commits, trajectory.read_bytes() if trajectory.exists() else b"")
    finally:
        done.set()


def _watch_stop(mailbox: Any, cancel: CancelToken, done: threading.Event) -> None:
    ray = _ray()
    while not done.wait(POLL_S):
        try:
            if ray.get(mailbox.stopped.remote()):
                cancel.cancel("the batch was interrupted")
                return
        except Exception:  # the driver is gone: stop rather than spend on
            cancel.cancel("the batch driver is gone")
            return


def _local_replays(settings: Any, replays: dict[str, bytes], folder: Path) -> Any:
    """Replay models read their files from the worker's own copies."""
    changes: dict[str, str] = {}
    for name in ("model", "summary_model"):
        value = getattr(settings, name)
        if value and value.startswith(REPLAY_PREFIX):
            source = value[len(REPLAY_PREFIX) :]
            copy = folder / f"{len(changes)}-{Path(source).name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(replays[source])
            changes[name] = f"{REPLAY_PREFIX}{copy}"
    return replace(settings, **changes)


def _warm() -> None:
    """Import what a task needs (litellm takes seconds) in a worker Ray will reuse for tasks."""
    from agent_cli.model import import_litellm

    import_litellm()


def _sweep_orphans() -> list[str]:
    """On one node: remove sandbox containers whose actsmith process is gone (a worker killed)."""
    from agent_cli.sandbox.identity import docker_client, sweep_leftovers

    return sweep_leftovers(docker_client())


# -------------------------------------------------------------------------------------- the driver


class RayBackend:
    def __init__(self, address: str | None, jobs: int | None) -> None:
        self.address = address
        self.jobs = jobs or 0
        self._ray = _ray()

    def __enter__(self) -> RayBackend:
        ray = self._ray
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": False}
        if self.address:
            try:
                ray.init(address=self.address, **quiet)
            except Exception as error:
                raise UsageError(f"--ray-address {self.address}: cannot join the cluster ({error})") from None
            offered = int(ray.cluster_resources().get(SANDBOX, 0))
            if not offered:
                self.__exit__(None, None, None)
                raise UsageError(
                    f"the Ray cluster at {self.address} offers no '{SANDBOX}' resource: start each node "
                    f"that has Docker with --resources '{{\"{SANDBOX}\": N}}'"
                )
            self.jobs = self.jobs or offered
        else:
            self.jobs = self.jobs or 1
            try:
                ray.init(  # "local": a new Ray of our own, never one found running on this machine
                    address="local",
                    num_cpus=os.cpu_count() or 1,
                    resources={SANDBOX: self.jobs},
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE,
                    **quiet,
                )
            except Exception as error:
                raise EnvironmentProblem(f"cannot start a local Ray: {_first_line(error)}") from None
        # One worker per sandbox imports what tasks need while the driver prepares the batch; Ray
        # then reuses these workers for the tasks.
        warm = ray.remote(_warm).options(num_cpus=0, resources={SANDBOX: 1})
        for _ in range(self.jobs):
            warm.remote()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._ray.shutdown()  # stops the local Ray we started; leaves a cluster we joined as it was

    def gate(self, cap: float | None, spent: float) -> RemoteGate:
        actor = self._ray.remote(SharedGate).options(num_cpus=0).remote(cap=cap, spent=spent)
        return RemoteGate(actor)

    def run(self, dispatches: list[Dispatch], driver: Driver) -> None:
        ray = self._ray
        mailbox = ray.remote(Mailbox).options(num_cpus=0).remote()
        gate = driver.gate
        assert isinstance(gate, RemoteGate)
        remote = ray.remote(work).options(
            num_cpus=0, resources={SANDBOX: 1}, max_retries=0, runtime_env=_forwarded_env(self.address)
        )
        bundles: dict[tuple[Path, str], tuple[str, Any]] = {}
        waiting = deque(dispatches)
        running: dict[Any, Dispatch] = {}
        lost: set[str] = set()
        stop_at: float | None = None
        while waiting or running:
            if driver.cancel.cancelled and stop_at is None:
                ray.get(mailbox.stop.remote())
                stop_at = time.monotonic() + STOP_GRACE_S
            while waiting and len(running) < self.jobs:
                dispatch = waiting.popleft()
                if not driver.may_start(dispatch):
                    continue
                driver.started(dispatch, "ray")
                try:
                    bundled, bundle = self._bundle(dispatch, bundles)
                    shipment = self._shipment(dispatch, bundled)
                except (ActsmithError, OSError) as error:  # its repository or replay file went away
                    driver.failed(dispatch, f"cannot ship the task: {error}")
                    continue
                running[remote.remote(dispatch.job, bundle, shipment, gate, mailbox)] = dispatch
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S) if running else ([], [])
            for event in ray.get(mailbox.take.remote()):
                driver.progress(event)
            driver.tick()
            for ref in ready:
                dispatch = running.pop(ref)
                retry = self._collect(ref, dispatch, driver, lost)
                if retry is not None:
                    waiting.appendleft(retry)
            if stop_at is not None and time.monotonic() > stop_at:
                self._force_stop(running, driver)
        if driver.cancel.cancelled:
            self._sweep_nodes()

    def _bundle(
        self, dispatch: Dispatch, bundles: dict[tuple[Path, str], tuple[str, Any]]
    ) -> tuple[str, Any]:
        """The branch as a bundle in the object store, put there once per repository state;
        returns the branch it was made from, and its reference."""
        key = (dispatch.repo, dispatch.job.base)
        if key not in bundles:
            branch = dispatch.job.branch
            bundles[key] = (branch, self._ray.put(repos.bundle(dispatch.repo, branch)))
        return bundles[key]

    def _shipment(self, dispatch: Dispatch, bundled: str) -> Shipment:
        job, root = dispatch.job, dispatch.repo
        replays = {}
        for name in ("model", "summary_model"):
            value = getattr(job.settings, name)
            if value and value.startswith(REPLAY_PREFIX):
                path = value[len(REPLAY_PREFIX) :]
                replays[path] = Path(path).read_bytes()
        return Shipment(bundled, Workspace(root, root).author(), replays)

    def _collect(self, ref: Any, dispatch: Dispatch, driver: Driver, lost: set[str]) -> Dispatch | None:
        """A Ray task ended: its result, a retry when its node was lost the first time, or a failure."""
        ray, exceptions = self._ray, self._ray.exceptions
        job = dispatch.job
        try:
            returned: Returned = ray.get(ref)
        except exceptions.TaskCancelledError:
            driver.interrupted(dispatch)
            return None
        except (
            exceptions.WorkerCrashedError,
            exceptions.NodeDiedError,
            exceptions.ObjectLostError,
            exceptions.LocalRayletDiedError,
        ) as error:
            reason = _first_line(error)
            if job.id in lost or driver.cancel.cancelled:
                driver.failed(dispatch, f"lost with its node again: {reason}")
                return None
            lost.add(job.id)
            driver.lost(dispatch, reason)
            return replace(dispatch, job=replace(job, attempt=job.attempt + 1))
        except exceptions.RayError as error:
            driver.failed(dispatch, _first_line(error))
            return None
        run = returned.run
        if returned.commits is not None:
            with driver.repository_lock(dispatch.repo):
                run.tip = repos.take_branch(dispatch.repo, job.branch, returned.commits, job.base)
        dispatch.folder.mkdir(parents=True, exist_ok=True)
        with dispatch.trajectory.open("ab") as trajectory:  # every attempt, as a local task's file
            trajectory.write(returned.trajectory)
        driver.finished(dispatch, run)
        return None

    def _force_stop(self, running: dict[Any, Dispatch], driver: Driver) -> None:
        for ref, dispatch in list(running.items()):
            self._ray.cancel(ref, force=True)
            driver.interrupted(dispatch)
            del running[ref]

    def _sweep_nodes(self) -> None:
        """After an interrupt: on every node offering sandboxes, remove containers left by a killed
        worker (a stopped session removed its own)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self._ray
        sweeps = [
            ray.remote(_sweep_orphans)
            .options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            )
            .remote()
            for node in ray.nodes()
            if node.get("Alive") and node.get("Resources", {}).get(SANDBOX)
        ]
        ray.wait(sweeps, num_returns=len(sweeps), timeout=60)


def _forwarded_env(address: str | None) -> dict[str, Any] | None:
    """Nodes of a cluster we joined do not have the driver's environment: the model keys and bases
    go with each task. A local Ray started here inherits them already."""
    if not address:
        return None
    env = {name: value for name, value in os.environ.items() if name.endswith(FORWARDED_ENV_SUFFIXES)}
    return {"env_vars": env} if env else None


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"
