"""Cancellation: a token a front end trips (Ctrl-C, SIGTERM, a batch driver, a CI timeout) and the
session's blocking points watch. Tripping it interrupts the running action, abandons a model call
and stops the loop; the session then closes normally, so the container goes and checkpoints stay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from agent_cli.errors import EXIT_INTERRUPTED, ActsmithError

T = TypeVar("T")


class Cancelled(ActsmithError):
    """The session was asked to stop."""

    exit_code = EXIT_INTERRUPTED


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._watchers = 0
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def watched(self) -> bool:
        """Whether a loop is running that will notice the token (else a front end should stop
        the old way, with KeyboardInterrupt)."""
        return self._watchers > 0

    def cancel(self, reason: str = "interrupted") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a callback on a sandbox already gone must not mask the cancel
                pass

    def reset(self) -> None:
        """Ready for the next turn of a conversation."""
        with self._lock:
            self._event.clear()
            self.reason = ""

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason or "interrupted")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when cancelled meanwhile."""
        return self._event.wait(seconds)

    @contextmanager
    def on_cancel(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call `callback` if the token trips while the block runs (to interrupt what it waits on)."""
        with self._lock:
            self._callbacks.append(callback)
            self._watchers += 1
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.remove(callback)
                self._watchers -= 1

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Mark a stretch of work that checks the token often enough to stop on it."""
        with self.on_cancel(lambda: None):
            yield

    def call(self, function: Callable[[], T], *, timeout: float | None = None) -> T:
        """Run a blocking call that cannot be interrupted (a model request) in a thread, and stop
        waiting for it when the token trips (Cancelled) or `timeout` passes (TimeoutError). An
        abandoned call finishes in the background and its result is dropped."""
        self.check()
        outcome: dict[str, object] = {}
        done = threading.Event()

        def target() -> None:
            try:
                outcome["value"] = function()
            except BaseException as error:  # re-raised in the caller's thread
                outcome["error"] = error
            finally:
                done.set()

        threading.Thread(target=target, name="actsmith-call", daemon=True).start()
        with self.on_cancel(done.set):  # a cancel wakes the wait below at once
            if self.cancelled:
                done.set()
            finished = done.wait(timeout)
        self.check()
        if not finished:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]
