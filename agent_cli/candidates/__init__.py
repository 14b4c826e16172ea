"""Candidates: several attempts at one task at once, an optional test designer writing tests for the
task first, and a choice among them by the gate, the designed tests and agreement (issue 20).

opening.py    what a front end opens for one task: a Session, or a CandidatesRun
runner.py     CandidatesRun: the attempts (Sessions in worktrees, in threads), the shared budget,
              the winner applied in place (checkpoints) or on the run's branch
designer.py   the test designer's settings, prompt and designed tests
selection.py  ranking, suspect tests, agreement, and why one won
outcome.py    an attempt's outcome read in one place
gitrefs.py    scratch branches, refs/actsmith/candidates/<run>/<n>, commits
events.py     the run's own events, and each attempt's events tagged with its number
render.py     the terminal view (parallel rows), the final table, the Markdown table
commands.py   `actsmith candidates show` and `apply`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_cli.settings import Settings


def wants_candidates(settings: Settings) -> bool:
    """Several attempts, or designed tests: a run of candidates rather than one session."""
    return settings.candidates > 1 or settings.design_tests
