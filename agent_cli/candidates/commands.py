"""`actsmith candidates show RUN [N]` and `actsmith candidates apply RUN N`: look at any attempt of a
candidates run, or take another one than the winner. Both read the run folder's candidates.json and
the attempts' refs; applying is recorded as a run of its own, so `actsmith undo` takes it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent_cli.candidates import gitrefs
from agent_cli.candidates.runner import RECORD
from agent_cli.candidates.selection import Candidate
from agent_cli.checkpoints import RunCheckpoints, read_run, restore, tree_with, working_tree
from agent_cli.errors import UsageError
from agent_cli.gitops import has_ref
from agent_cli.workspace import RUN_REF_PREFIX, RUNS_DIR, Workspace

MAX_NAMED = 5


@dataclass(frozen=True)
class CandidatesRecord:
    run_id: str
    data: dict[str, Any]
    candidates: list[Candidate]

    def candidate(self, number: int) -> Candidate:
        for candidate in self.candidates:
            if candidate.number == number:
                return candidate
        raise UsageError(
            f"run {self.run_id} has candidates 1 to {len(self.candidates)}; {number} is not one of them"
        )


@dataclass(frozen=True)
class Applied:
    paths: list[str]
    run_id: str  # the apply's own run: `actsmith undo` takes it back


def load_record(workspace: Workspace, run_id: str) -> CandidatesRecord:
    path = workspace.root / RUNS_DIR / "runs" / run_id / RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"run {run_id} is not a candidates run of this repository (no {path}); `actsmith runs` lists runs"
        ) from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    return CandidatesRecord(run_id, data, [Candidate(**item) for item in data["candidates"]])


def candidate_diff(workspace: Workspace, record: CandidatesRecord, number: int) -> str:
    """What candidate `number` changed, from where it started (the designed tests already there)."""
    candidate = record.candidate(number)
    if candidate.commit is None:
        return ""
    return workspace.diff(record.data["start"], candidate.commit, binary=True)


def apply_candidate(workspace: Workspace, record: CandidatesRecord, number: int) -> Applied:
    """Candidate `number`'s change in the checkout in place of what the run applied (if anything):
    files the run changed go back to how they were before it, then the candidate's change goes on.
    A file changed since the run is never overwritten: the command stops and names it."""
    candidate = record.candidate(number)
    data, root = record.data, workspace.root
    since = data["base"] if data["keep_designed_tests"] else data["start"]
    paths = workspace.changed_files(since, candidate.commit) if candidate.commit else []
    if not paths:
        raise UsageError(f"candidate {number} of run {record.run_id} changed nothing ({candidate.category})")
    base_tree, left = data["base_tree"], _left_by_run(workspace, record)
    touched = sorted(set(paths) | set(workspace.changed_files(base_tree, left)))
    lock = workspace.lock_in_place()
    try:
        now = working_tree(workspace)
        edited = gitrefs.differing(root, now, left, touched)
        if edited:
            more = f" and {len(edited) - MAX_NAMED} more" if len(edited) > MAX_NAMED else ""
            raise UsageError(
                f"{', '.join(edited[:MAX_NAMED])}{more} changed since run {record.run_id}: commit, stash "
                "or undo that first, so applying a candidate overwrites nothing of yours"
            )
        target = tree_with(root, tree_with(root, now, base_tree, touched), candidate.commit or "", paths)
        apply_id = workspace.reserve_run_id(f"apply candidate {number} of {record.run_id}")
        checkpoints = RunCheckpoints.for_run(
            workspace, apply_id, f"apply candidate {number} of {record.run_id}"
        )
        before = checkpoints.record(0)
        restore(root, before.tree, target)
        checkpoints.close("finished")
    finally:
        lock.release()
    return Applied(paths, apply_id)


def _left_by_run(workspace: Workspace, record: CandidatesRecord) -> str:
    """The checkout's tree as the run left it: its final checkpoint (in place), else its base."""
    if record.data["branch"] is None and has_ref(workspace.root, RUN_REF_PREFIX + record.run_id):
        return read_run(workspace.root, record.run_id).trees[-1]
    return str(record.data["base_tree"])
