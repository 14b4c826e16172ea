"""What a front end opens for one task: a Session, or a CandidatesRun when the settings ask for
several attempts or designed tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_cli.candidates import wants_candidates

if TYPE_CHECKING:
    from agent_cli.candidates.runner import CandidatesRun
    from agent_cli.session import Session
    from agent_cli.settings import Settings
    from agent_cli.workspace import Workspace


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
