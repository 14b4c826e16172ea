"""The model gate every session of a batch shares: one budget (max_cost_total) and one rate limiter
per provider. Sessions call it through `TaskGate` (the `ModelGate` of agent_cli.model); the state
lives in a `SharedGate`, in this process for the local backend and inside a Ray actor for the Ray
backend (the same class, so both behave alike). `SharedGate` never blocks: it answers how long to
wait, and the caller sleeps, so an actor serves every worker at once.

Budget: a call is admitted only after reserving its estimated cost, the largest a call of that model
has cost so far; the reservation becomes the real cost when the reply arrives. While a model's cost
is unknown (its first call), its calls go one at a time. So parallel workers cannot overshoot the cap
by more than what one call costs beyond the largest call before it.

Rate limits: a 429 pauses every worker of that provider for the server's Retry-After (at least
1 s, doubling while 429s keep coming), then lets one request through per pause length until one
succeeds: a storm costs one retry per pause for the whole batch, not one per worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from agent_cli.cancel import Cancelled, CancelToken
from agent_cli.errors import LimitReached

MIN_PAUSE_S = 1.0
MAX_PAUSE_S = 60.0
PROBE_POLL_S = 0.1  # how often a call waiting for a model's first cost asks again


class BudgetSpent(LimitReached):
    """The batch's max_cost_total cannot pay for another call."""


@dataclass(frozen=True)
class Admission:
    wait_s: float = 0.0  # > 0: ask again after this long
    refused: str | None = None  # the budget is spent: why, in one line
    at: float = 0.0  # when it was admitted (the gate's clock)


@dataclass
class Provider:
    """One provider's rate-limit state."""

    paused_until: float = 0.0
    spacing: float = 0.0  # > 0 after a 429: one request per `spacing` seconds until one succeeds
    next_slot: float = 0.0
    strikes: int = 0  # 429s of requests sent after the last pause began
    paused_at: float = 0.0

    def wait(self, now: float) -> float:
        """Seconds to wait before sending, or 0 (and the slot is taken)."""
        if now < self.paused_until:
            return self.paused_until - now
        if self.spacing > 0:
            if now < self.next_slot:
                return self.next_slot - now
            self.next_slot = now + self.spacing
        return 0.0

    def throttled(self, delay: float, sent_at: float, now: float) -> None:
        # Requests already in flight when the pause began were sent before anyone knew: only a request
        # sent after it (a probe) proves the provider is still over its limit.
        if sent_at >= self.paused_at or self.strikes == 0:
            self.strikes += 1
        pause = min(MAX_PAUSE_S, max(delay, MIN_PAUSE_S * 2 ** (self.strikes - 1)))
        if now + pause > self.paused_until:
            self.paused_until = now + pause
            self.paused_at = now
        self.spacing = pause
        self.next_slot = self.paused_until

    def succeeded(self) -> None:
        self.strikes = 0
        self.spacing = 0.0


@dataclass
class Reservation:
    task: str
    model: str
    amount: float


@dataclass
class SharedGate:
    """The batch's budget and rate limiters. Thread-safe; never sleeps."""

    cap: float | None = None
    spent: float = 0.0  # including what earlier runs of the batch paid (from the journal)
    largest: dict[str, float] = field(default_factory=dict)  # model -> the dearest call so far
    reservations: list[Reservation] = field(default_factory=list)
    providers: dict[str, Provider] = field(default_factory=dict)
    refused_tasks: set[str] = field(default_factory=set)
    unjournaled: list[tuple[str, float]] = field(default_factory=list)  # (task, cost) not yet journaled
    owner: str = "the batch"  # whose cap it is, and the setting that sets it, in the refusal's words
    cap_setting: str = "max_cost_total"
    # A model's first call goes alone, to learn its cost. A few sessions that start together (the
    # candidates of one run) would wait a whole call for it; they may overshoot by one call each instead.
    probe_first: bool = True

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def admit(self, task: str, model: str, provider: str) -> Admission:
        with self._lock:
            now = time.monotonic()
            wait = self.providers.setdefault(provider, Provider()).wait(now)
            if wait > 0:
                return Admission(wait_s=wait)
            if self.cap is None:
                return Admission(at=now)
            estimate = self.largest.get(model)
            if estimate is None and self.probe_first and any(r.model == model for r in self.reservations):
                return Admission(wait_s=PROBE_POLL_S)  # its first call will tell what one costs
            amount = estimate or 0.0
            committed = self.spent + sum(r.amount for r in self.reservations)
            if committed >= self.cap or committed + amount > self.cap:
                self.refused_tasks.add(task)
                return Admission(refused=self._refusal(committed))
            self.reservations.append(Reservation(task, model, amount))
            return Admission(at=now)

    def settle(self, task: str, model: str, provider: str, cost: float | None) -> None:
        with self._lock:
            self._release_one(task, model)
            paid = cost or 0.0
            self.spent += paid
            self.largest[model] = max(self.largest.get(model, 0.0), paid)
            self.unjournaled.append((task, paid))
            self.providers.setdefault(provider, Provider()).succeeded()

    def throttle(self, task: str, model: str, provider: str, delay: float, sent_at: float) -> None:
        with self._lock:
            self._release_one(task, model)  # a refused request costs nothing
            self.providers.setdefault(provider, Provider()).throttled(delay, sent_at, time.monotonic())

    def release(self, task: str) -> None:
        """The task ended: drop what it still held (a call that failed without an answer)."""
        with self._lock:
            self.reservations = [r for r in self.reservations if r.task != task]

    def can_start(self) -> bool:
        """Whether a new task may start: the budget can still pay for the dearest call seen."""
        with self._lock:
            if self.cap is None:
                return True
            committed = self.spent + sum(r.amount for r in self.reservations)
            return committed < self.cap and committed + max(self.largest.values(), default=0.0) <= self.cap

    def refused(self, task: str) -> bool:
        with self._lock:
            return task in self.refused_tasks

    def capped(self) -> bool:
        """Whether the cap has refused anything yet."""
        with self._lock:
            return bool(self.refused_tasks)

    def drain(self) -> list[tuple[str, float]]:
        """Costs paid since the last drain, for the journal."""
        with self._lock:
            drained, self.unjournaled = self.unjournaled, []
            return drained

    def _release_one(self, task: str, model: str) -> None:
        for number, reservation in enumerate(self.reservations):
            if reservation.task == task and reservation.model == model:
                del self.reservations[number]
                return

    def _refusal(self, committed: float) -> str:
        assert self.cap is not None
        return (
            f"{self.owner}'s cost cap is spent (${committed:.4f} of {self.cap_setting} ${self.cap:.2f}, "
            "counting calls in flight)"
        )


class GateService(Protocol):
    """What a `TaskGate` asks: a `SharedGate`, or a client of the Ray actor holding one."""

    def admit(self, task: str, model: str, provider: str) -> Admission: ...

    def settle(self, task: str, model: str, provider: str, cost: float | None) -> None: ...

    def throttle(self, task: str, model: str, provider: str, delay: float, sent_at: float) -> None: ...

    def release(self, task: str) -> None: ...


class BatchGate(GateService, Protocol):
    """What the driver asks of the shared gate, besides what its tasks ask."""

    def can_start(self) -> bool: ...

    def capped(self) -> bool: ...

    def drain(self) -> list[tuple[str, float]]: ...


class TaskGate:
    """One task's `ModelGate`: waits here (cancellable) for what the shared gate answers."""

    def __init__(
        self, service: GateService, task: str, cancel: CancelToken, api_base: str | None = None
    ) -> None:
        self.service = service
        self.task = task
        self.cancel = cancel
        self.api_base = api_base
        self.refused = False  # the budget refused one of this task's calls
        self._sent_at = 0.0
        self._providers: dict[str, str] = {}

    def admit(self, model: str) -> None:
        while True:
            admission = self.service.admit(self.task, model, self._provider(model))
            if admission.refused:
                self.refused = True
                raise BudgetSpent(admission.refused)
            if admission.wait_s <= 0:
                self._sent_at = admission.at
                return
            if self.cancel.wait(admission.wait_s):
                raise Cancelled(self.cancel.reason or "interrupted")

    def settle(self, model: str, cost: float | None) -> None:
        self.service.settle(self.task, model, self._provider(model), cost)

    def throttle(self, model: str, delay_s: float) -> None:
        self.service.throttle(self.task, model, self._provider(model), delay_s, self._sent_at)

    def _provider(self, model: str) -> str:
        """Calls of one provider at one address share a limiter."""
        if model not in self._providers:
            from agent_cli.model import import_litellm

            try:
                _, provider, _, _ = import_litellm().get_llm_provider(model=model, api_base=self.api_base)
            except Exception:  # the model's own call reports an unknown provider
                provider = model.split("/", 1)[0]
            self._providers[model] = f"{provider}@{self.api_base or 'default'}"
        return self._providers[model]
