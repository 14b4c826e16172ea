"""How one attempt ended, in the words selection needs. Every outcome the candidates read goes
through `read_outcome`: when the core status vocabulary (a category on the `end` event) lands, this is
the one place that changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_cli.batch.results import batch_status

if TYPE_CHECKING:
    from agent_cli.events import Ended

INTERRUPTED = "interrupted"
# How far an attempt got, best first: only the first two have a change worth applying.
TIERS = {"succeeded": 4, "untested": 3, "no_change": 2, "tests_failed": 1}
APPLICABLE = 3


@dataclass(frozen=True)
class Outcome:
    status: str  # the session's own: finished, tests_failed, limit...
    category: str  # succeeded | no_change | untested | tests_failed | limit_reached | agent_error | infra_error | interrupted
    exit_code: int

    @property
    def tier(self) -> int:
        return TIERS.get(self.category, 0)


def read_outcome(ended: Ended, changed: bool) -> Outcome:
    """An attempt's outcome; `changed` says whether its work changed any file."""
    category = INTERRUPTED if ended.status == INTERRUPTED else batch_status(ended.status, changed)
    return Outcome(ended.status, category, ended.exit_code)
