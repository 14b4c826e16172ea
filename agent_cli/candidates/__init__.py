"""Candidates: several attempts at one task at once, an optional test designer writing tests for the
task first, and a choice among them by the gate, the designed tests and agreement (issue 20).

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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_cli.candidates.runner import CandidatesRun
    from agent_cli.session import Session
    from agent_cli.settings import Settings
    from agent_cli.workspace import Workspace


def wants_candidates(settings: Settings) -> bool:
    return settings.candidates > 1 or settings.design_tests


def open_session(settings: Settings, workspace: Workspace, **options: Any) -> Session | CandidatesRun:
    """What a front end drives for one task: a Session, or a CandidatesRun when the settings ask for
    several attempts or designed tests (a plan is one read-only session whatever they say). Both take
    the same options and end with `outcome`."""
    if wants_candidates(settings) and not options.get("plan"):
        options.pop("plan", None)
        from agent_cli.candidates.runner import CandidatesRun

        return CandidatesRun(settings, workspace, **options)
    from agent_cli.session import Session

    return Session(settings, workspace, **options)
