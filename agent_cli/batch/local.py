"""The local backend: `jobs` sessions at once in threads of this process, each in its own worktree
and sandbox, all sharing one `SharedGate`. One more thread prepares the environment images of the
tasks in order, ahead of the workers, so a task's sandbox starts from a ready image when its turn
comes. Ctrl-C (the driver's token) trips every running session's own token: actions are interrupted,
sandboxes removed, and tasks still waiting are recorded as not started."""

from __future__ import annotations

import contextlib
import socket
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from agent_cli.batch.gate import SharedGate
from agent_cli.batch.task import prepare_environment_ahead, run_task
from agent_cli.cancel import CancelToken

if TYPE_CHECKING:
    from agent_cli.batch.driver import Dispatch, Driver

PREPARE_POLL_S = 0.2


class LocalBackend:
    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._tokens: set[CancelToken] = set()
        self._lock = threading.Lock()
        self._prepared: dict[tuple[str, ...], Future[None]] = {}

    def gate(self, cap: float | None, spent: float) -> SharedGate:
        return SharedGate(cap=cap, spent=spent)

    def run(self, dispatches: list[Dispatch], driver: Driver) -> None:
        node = socket.gethostname()
        with (
            ThreadPoolExecutor(1, thread_name_prefix="actsmith-batch-prepare") as preparer,
            ThreadPoolExecutor(self.jobs, thread_name_prefix="actsmith-batch") as workers,
            driver.cancel.on_cancel(self._cancel_all),
        ):
            ahead = {d.job.id: self._prepare(preparer, d, driver) for d in dispatches}
            running = {workers.submit(self._work, d, ahead[d.job.id], driver, node) for d in dispatches}
            while running:
                _, running = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                driver.tick()
            preparer.shutdown(cancel_futures=True)

    def _prepare(self, preparer: ThreadPoolExecutor, dispatch: Dispatch, driver: Driver) -> Future[None]:
        """One preparation per repository state and environment settings (tasks on one repository
        share it); what it says (an image being built) shows on the batch's stream, and a cancelled
        batch stops the build."""
        settings, job = dispatch.job.settings, dispatch.job
        key = (str(dispatch.repo), job.base, repr(settings.setup), str(settings.image), settings.base_image)
        if key not in self._prepared:
            self._prepared[key] = preparer.submit(
                prepare_environment_ahead, settings, dispatch.repo, job.base, driver.events, driver.cancel
            )
        return self._prepared[key]

    def _work(self, dispatch: Dispatch, prepared: Future[None], driver: Driver, node: str) -> None:
        while not prepared.done() and not driver.cancel.cancelled:
            with contextlib.suppress(Exception):
                prepared.result(timeout=PREPARE_POLL_S)
        # A failed preparation is the session's to report: it meets the same problem, with its words.
        if not driver.may_start(dispatch):
            return
        token = CancelToken()
        with self._lock:
            self._tokens.add(token)
        if driver.cancel.cancelled:
            token.cancel(driver.cancel.reason)
        try:
            driver.started(dispatch, node)
            run = run_task(
                dispatch.job, dispatch.repo, dispatch.trajectory, driver.gate, token, driver.progress, node
            )
        except Exception as error:  # the repository or git failed before the session could record it
            driver.failed(dispatch, f"{type(error).__name__}: {error}", node)
            return
        finally:
            with self._lock:
                self._tokens.discard(token)
        driver.finished(dispatch, run)

    def _cancel_all(self) -> None:
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel("the batch was interrupted")
