"""Checkpoints: the exact state of a working tree, kept as commits under refs/actsmith/runs/<run>.

The user's branches, index, stash and HEAD are never touched: snapshots go through a private index
file, and the commits hang off a private ref so `git gc` keeps them. Git runs byte-exact here (no
attributes, filters or line-ending conversion), so restoring a checkpoint gives back the same bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli.errors import UsageError
from agent_cli.gitops import GITLINK, checked_out_submodules, git, has_ref, nul_joined
from agent_cli.ignored import IgnoredUndo, IgnoredUndone
from agent_cli.workspace import RUN_REF_PREFIX as REF_PREFIX
from agent_cli.workspace import Workspace

IDENTITY = {
    "GIT_AUTHOR_NAME": "actsmith",
    "GIT_AUTHOR_EMAIL": "actsmith@localhost",
    "GIT_COMMITTER_NAME": "actsmith",
    "GIT_COMMITTER_EMAIL": "actsmith@localhost",
}


@dataclass(frozen=True)
class Checkpoint:
    commit: str
    tree: str
    step: int


@dataclass
class RunCheckpoints:
    """The checkpoints of one run: step 0 is the state before it, step N the state after action N."""

    root: Path
    state_dir: Path  # the run's private folder inside .git (read-only to the sandbox): its index
    run_id: str
    task: str
    branch: str | None = None  # set when the run works in its own worktree
    started: float = field(default_factory=time.time)
    submodules: list[RunCheckpoints] = field(default_factory=list)  # found when step 0 is recorded
    index_name: str = "index"
    # A submodule's git dir, resolved before the sandbox ran; None for the repository itself, whose
    # .git the sandbox sees read-only.
    git_dir: Path | None = None

    @classmethod
    def for_run(
        cls,
        workspace: Workspace,
        run_id: str,
        task: str,
        *,
        root: Path | None = None,
        branch: str | None = None,
    ) -> RunCheckpoints:
        """The checkpoints of a run whose id `workspace` reserved, of `root` (a worktree) or the checkout."""
        return cls(root or workspace.root, workspace.run_state_dir(run_id), run_id, task, branch)

    def __post_init__(self) -> None:
        self.task = " ".join(self.task.split())[:200]  # one line: it is stored as a commit message field
        self._history: list[Checkpoint] = []
        self._pending: Future | None = None  # a checkpoint still being written in the background
        self._writer: ThreadPoolExecutor | None = None

    @property
    def history(self) -> list[Checkpoint]:
        """Every checkpoint so far (waiting for one still being written)."""
        self.settle()
        return self._history

    def settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def record_staged_later(self, step: int) -> None:
        """Write what is staged as `step`'s checkpoint in the background: the caller already has the
        step's diff, and whatever reads the history next waits for it (the next step, seconds later)."""
        self.settle()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="actsmith-checkpoints")
        self._pending = self._writer.submit(lambda: self._record(step, tree=self.write_tree()))

    def _git(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
        return git(self.root, *args, env=env, input=input, git_dir=self.git_dir)

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.run_id

    @property
    def index(self) -> Path:
        # Inside .git, which the sandbox sees read-only: code in the sandbox cannot tamper with it.
        return self.state_dir / self.index_name

    @property
    def index_env(self) -> dict[str, str]:
        return {"GIT_INDEX_FILE": str(self.index)}

    def stage(self) -> list[str]:
        """Bring the private index up to date with the working tree, untracked files included, ignored
        ones not. It starts empty, not from the user's index: their entries hold blobs that went through
        their eol and filter settings (not the bytes on disk), and may be marked assume-unchanged. So
        the first stage hashes every file; later ones reuse this index's own stat cache. Returns the
        git repositories found in the tree that are not this run's submodules (see `stage_tree`)."""
        self.index.parent.mkdir(parents=True, exist_ok=True)
        known = [(sub.root, sub.git_dir) for sub in self.submodules if sub.git_dir is not None]
        return stage_tree(self.root, self.index_env, known, git_dir=self.git_dir)

    def write_tree(self) -> str:
        return self._git("write-tree", env=self.index_env).decode().strip()

    def snapshot(self) -> str:
        """A tree object of the working tree as it is now."""
        self.stage()
        return self.write_tree()

    def record(
        self, step: int, status: str = "running", subject: str | None = None, tree: str | None = None
    ) -> Checkpoint:
        """Checkpoint the working tree (or a `tree` just snapshotted) as `step`. A step that changed
        nothing shares the previous commit (read_run fills such gaps), which keeps idle steps cheap."""
        self.settle()
        return self._record(step, status, subject, tree)

    def _record(
        self, step: int, status: str = "running", subject: str | None = None, tree: str | None = None
    ) -> Checkpoint:
        history = self._history
        if not history:
            self.submodules = [
                RunCheckpoints(
                    path,
                    self.state_dir,
                    self.run_id,
                    self.task,
                    self.branch,
                    started=self.started,
                    index_name=f"{self.index_name}-submodule-{number}",
                    git_dir=git_dir,
                )
                for number, (path, git_dir) in enumerate(checked_out_submodules(self.root, self.git_dir))
            ]
        for submodule in self.submodules:
            # A superproject snapshot holds only a submodule's commit; its files are kept by its own ref.
            submodule.record(step, status, subject)
        tree = tree or self.snapshot()
        if history and subject is None and tree == history[-1].tree:
            checkpoint = Checkpoint(history[-1].commit, tree, step)
            history.append(checkpoint)
            return checkpoint
        parent = ["-p", history[-1].commit] if history else []
        fields = {
            "run": self.run_id,
            "started": f"{self.started:.6f}",
            "step": step,
            "status": status,
            "branch": self.branch,
            "task": self.task,
        }
        body = "".join(f"{key}: {value}\n" for key, value in fields.items() if value is not None)
        message = f"{subject or f'actsmith step {step}'}\n\n{body}"
        commit = self._git("commit-tree", tree, *parent, env=IDENTITY, input=message.encode())
        checkpoint = Checkpoint(commit.decode().strip(), tree, step)
        self._git("update-ref", self.ref, checkpoint.commit)
        history.append(checkpoint)
        return checkpoint

    def close(self, status: str) -> Checkpoint | None:
        """Record the final state with the run's outcome and drop the private state. The tree can
        differ from the last step's when the run was interrupted in the middle of an action. None
        when the run never recorded its start."""
        final = None
        try:
            if self._history or self._pending is not None:
                last = self.history[-1]
                tree = self.snapshot()
                step = last.step if tree == last.tree else last.step + 1
                final = self.record(step, status, subject="actsmith end", tree=tree)
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            for checkpoints in [self, *self.submodules]:
                checkpoints.index.unlink(missing_ok=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return final


@dataclass(frozen=True)
class RunRecord:
    """A past run, read back from its ref."""

    run_id: str
    started: float
    task: str
    status: str
    branch: str | None
    steps: int
    trees: tuple[str, ...]  # trees[n] is the state after step n (0: before the run)

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.run_id


def list_runs(root: Path) -> list[RunRecord]:
    """Runs of this repository, newest first."""
    out = git(
        root, "for-each-ref", "--sort=-committerdate", "--format=%(refname)%00%(objectname)", REF_PREFIX
    ).decode()
    runs = []
    for line in out.splitlines():
        refname, _, commit = line.partition("\0")
        runs.append(read_run(root, refname.removeprefix(REF_PREFIX), commit))
    runs.sort(key=lambda run: run.started, reverse=True)
    return runs


def read_run(root: Path, run_id: str, tip: str | None = None, *, git_dir: Path | None = None) -> RunRecord:
    tip = (
        tip or git(root, "rev-parse", "--verify", "-q", REF_PREFIX + run_id, git_dir=git_dir).decode().strip()
    )
    log = git(root, "log", "--format=%H%x00%T%x00%ct%x00%B%x01", tip, git_dir=git_dir).decode()
    entries = [entry.strip("\n") for entry in log.split("\x01") if entry.strip()]
    steps: dict[int, str] = {}
    started, fields_of_tip = time.time(), {}
    for position, entry in enumerate(entries):  # newest first
        _commit, tree, stamp, body = entry.split("\0", 3)
        fields = dict(
            line.split(": ", 1) for line in body.splitlines() if ": " in line and not line.startswith(" ")
        )
        if position == 0:
            fields_of_tip = fields
        step = int(fields.get("step", "0"))
        steps.setdefault(step, tree)  # the end commit repeats the last step's tree
        started = float(fields.get("started", stamp))
    ordered: list[str] = []
    for n in range(max(steps) + 1):  # steps that changed nothing have no commit of their own
        ordered.append(steps.get(n, ordered[-1] if ordered else ""))
    status = fields_of_tip.get("status", "unknown")
    return RunRecord(
        run_id=run_id,
        started=started,
        task=fields_of_tip.get("task", ""),
        status="interrupted" if status == "running" else status,
        branch=fields_of_tip.get("branch"),
        steps=max(steps) if steps else 0,
        trees=tuple(ordered),
    )


def restore(root: Path, current_tree: str, target_tree: str, *, git_dir: Path | None = None) -> list[str]:
    """Make the working tree, now `current_tree`, hold exactly `target_tree` (ignored files aside).
    Only paths that differ are written or removed, so other files keep their timestamps."""
    changed = _changed_paths(root, current_tree, target_tree, git_dir=git_dir)
    for path, in_target in changed:
        if not in_target:
            _remove(root, root / path)
    wanted = [path for path, in_target in changed if in_target]
    for path in wanted:
        _clear_directory_in_the_way(root / path)
    if wanted:
        with tempfile.TemporaryDirectory(prefix="actsmith-restore-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(root, "read-tree", target_tree, env=env, git_dir=git_dir)
            git(
                root,
                "checkout-index",
                "--force",
                "-z",
                "--stdin",
                env=env,
                input=nul_joined(wanted),
                git_dir=git_dir,
            )
    return [path for path, _ in changed]


@dataclass(frozen=True)
class Undone:
    """What an undo put back: a run's state (`actsmith undo`), or a conversation's last turn."""

    paths: list[str]  # restored
    kept: list[str] = field(default_factory=list)  # left alone: edited by the user after the turn
    run: RunRecord | None = None  # the run undone (None: a turn of the session still running)
    step: int = 0  # the step whose state the working tree now holds (0: before the run)
    record: str | None = None  # the undo's own run id: undoing it brings the overwritten state back
    ignored: IgnoredUndone = field(default_factory=IgnoredUndone)  # what it did to ignored files


def undo(workspace: Workspace, run_id: str | None = None, step: int | None = None) -> Undone:
    """Restore the working tree to a run's state before it began (or after one of its steps). The
    undo is itself recorded as a run, so nothing the working tree held is lost."""
    root = workspace.root
    runs = list_runs(root)
    if not runs:
        raise UsageError("there is no actsmith run to undo in this repository")
    run = next((r for r in runs if r.run_id == run_id), None) if run_id else runs[0]
    if run is None:
        raise UsageError(f"there is no run {run_id} in this repository: `actsmith runs` lists them")
    if run.branch:
        raise UsageError(
            f"run {run.run_id} worked in its own worktree on branch {run.branch}; your checkout was never "
            f"changed (to drop its work: git branch -D {run.branch})"
        )
    step = 0 if step is None else step
    if not 0 <= step < len(run.trees):
        raise UsageError(f"run {run.run_id} has steps 0 to {len(run.trees) - 1}; --step {step} is not one")
    undo_id = workspace.reserve_run_id("undo")
    record = RunCheckpoints.for_run(workspace, undo_id, f"undo {run.run_id}")
    before = record.record(0)
    ignored = IgnoredUndo.begin(root, run.run_id, undo_id, whole=step == 0)  # removes what it created
    paths = restore(root, before.tree, run.trees[step])
    for submodule in record.submodules:
        prefix = submodule.root.relative_to(root).as_posix()
        sub, sub_git = submodule.root, submodule.git_dir
        kept = read_run(sub, run.run_id, git_dir=sub_git) if has_ref(sub, run.ref, git_dir=sub_git) else None
        if kept:
            now = submodule.history[0].tree
            restored = restore(sub, now, kept.trees[min(step, len(kept.trees) - 1)], git_dir=sub_git)
            paths += [f"{prefix}/{path}" for path in restored]
    undone_ignored = ignored.finish()  # puts back what it changed or deleted
    record.close("finished")
    return Undone(paths, run=run, step=step, record=record.run_id, ignored=undone_ignored)


def undo_changes(root: Path, now: str, before: str, after: str) -> Undone:
    """Put back as they were in `before` the files that changed from `before` to `after`, when they
    still hold what `after` gave them; a file edited since (`now` differs) is named and left alone."""
    paths = changed_paths(root, before, after)
    given, current = blobs(root, after, paths), blobs(root, now, paths)
    kept = [path for path in paths if given.get(path) != current.get(path)]
    undone = [path for path in paths if path not in kept]
    if undone:
        restore(root, now, tree_with(root, now, before, undone))
    return Undone(undone, kept)


def _changed_paths(
    root: Path, current: str, target: str, *, git_dir: Path | None = None
) -> list[tuple[str, bool]]:
    """(path, exists in target) for every file that differs between two trees. Submodule entries are
    left out: their files are restored through their own checkpoints, never deleted from here."""
    out = git(root, "diff-tree", "-r", "--no-renames", "-z", "--raw", current, target, git_dir=git_dir)
    parts = out.decode("utf-8", "surrogateescape").split("\0")
    changed = []
    for meta, path in zip(parts[0::2], parts[1::2], strict=False):
        old_mode, new_mode, *_, letter = meta.lstrip(":").split()
        if GITLINK not in (old_mode, new_mode):
            changed.append((path, letter != "D"))
    return changed


def _remove(root: Path, path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()  # only succeeds while empty
        except OSError:
            break
        parent = parent.parent


def _clear_directory_in_the_way(path: Path) -> None:
    """A file coming back where a directory now stands (or under a path that is now a file)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    for parent in path.parents:
        if parent.is_file() or parent.is_symlink():
            parent.unlink()
            break


def working_tree(workspace: Workspace) -> str:
    """A tree object of the working tree as it is now (untracked files in, ignored ones out), made
    through a throwaway index: no ref, no run, the user's index untouched."""
    scratch = workspace.common_git_dir / "actsmith"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="snapshot-", dir=scratch) as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        stage_tree(workspace.root, env, checked_out_submodules(workspace.root))
        return git(workspace.root, "write-tree", env=env).decode().strip()


def stage_tree(
    root: Path, env: dict[str, str], submodules: list[tuple[Path, Path]], *, git_dir: Path | None = None
) -> list[str]:
    """Stage the working tree into the index `env` names, so that git never runs inside a repository
    the sandbox could have planted. `git add` runs `git status` inside every gitlink of the index whose
    folder looks changed, finding its git dir through the folder's `.git`, which the sandbox can
    replace (with a config naming a filter): so submodules are left out of `add` and their entries
    pinned to the commit their git dir (resolved before the sandbox ran) holds, and any other
    repository in the tree (an untracked folder with a `.git`, which git lists as `folder/`) is left
    out too: its files stay out of the checkpoints, and its path is returned, to be said."""
    relative = [sub.relative_to(root).as_posix() for sub, _ in submodules]
    if submodules:
        heads = [
            f"{GITLINK} {git(sub, 'rev-parse', 'HEAD', git_dir=sub_git).decode().strip()}\t{path}"
            for (sub, sub_git), path in zip(submodules, relative, strict=True)
        ]
        git(
            root,
            "update-index",
            "--add",
            "-z",
            "--index-info",
            env=env,
            git_dir=git_dir,
            input=nul_joined(heads),
        )
    untracked = git(root, "ls-files", "-z", "--others", "--exclude-standard", env=env, git_dir=git_dir)
    planted = [
        path.rstrip("/")
        for path in untracked.decode("utf-8", "surrogateescape").split("\0")
        if path.endswith("/") and path.rstrip("/") not in relative
    ]
    excluded = [f":(exclude,literal){path}" for path in [*relative, *planted]]
    git(root, "add", "--all", "--", ".", *excluded, env=env, git_dir=git_dir)
    return planted


def blobs(root: Path, tree: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob) of each of `paths` in `tree`; paths absent from it are left out."""
    if not paths:
        return {}
    out = git(
        root, "ls-tree", "-r", "-z", "--full-tree", tree, "--", *paths, env={"GIT_LITERAL_PATHSPECS": "1"}
    )
    found = {}
    for record in filter(None, out.decode("utf-8", "surrogateescape").split("\0")):
        meta, _, path = record.partition("\t")
        mode, _kind, sha = meta.split()
        found[path] = (mode, sha)
    return found


def changed_paths(root: Path, before: str, after: str) -> list[str]:
    return [path for path, _ in _changed_paths(root, before, after)]


def tree_with(root: Path, base: str, source: str, paths: list[str]) -> str:
    """`base` with `paths` as they are in `source` (removed where `source` has none)."""
    taken = blobs(root, source, paths)
    with tempfile.TemporaryDirectory(prefix="actsmith-tree-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", base, env=env)
        for path in paths:
            if path in taken:
                mode, sha = taken[path]
                git(root, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", env=env)
            else:
                git(root, "update-index", "--force-remove", "--", path, env=env)
        return git(root, "write-tree", env=env).decode().strip()
