"""How one attempt ended, in the words selection needs: the core outcome vocabulary (agent_cli/outcome.py)
read in one place, with how far each category got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_cli.outcome import Category, Status

if TYPE_CHECKING:
    from agent_cli.events import Ended

# How far an attempt got, best first: only the first two have a change worth applying.
TIERS: dict[str, int] = {
    Category.SUCCEEDED: 4,
    Category.UNTESTED: 3,
    Category.NO_CHANGE: 2,
    Category.TESTS_FAILED: 1,
}
APPLICABLE = 3


@dataclass(frozen=True)
class Outcome:
    status: Status
    category: Category
    exit_code: int


def read_outcome(ended: Ended) -> Outcome:
    return Outcome(ended.status, ended.category, ended.exit_code)
