"""The edit ledger: after every action, what the step changed, and the state of the work so far.

Each step is a checkpoint (see checkpoints.py); the ledger diffs it against the previous one, finds the
definitions whose bodies changed (tree-sitter) and whether each changed file still parses. `view()`
is what the model sees every turn: one line per file changed since the run began, merged across steps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli.checkpoints import Checkpoint, RunCheckpoints, restore, tree_with
from agent_cli.gitops import git
from agent_cli.protect import ProtectedPaths
from agent_cli.safe_paths import read_bytes
from agent_cli.syntax import Definition, FileTags, SyntaxProblem, analyse, language_for

MAX_ANALYSED_BYTES = 1_000_000  # bigger files are counted, not parsed
MAX_FILES_SHOWN = 25
MAX_SYMBOLS_SHOWN = 8
PARSE_CACHE_SIZE = 256


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # created | changed | deleted | renamed | reverted (back to its state before the run)
    old_path: str | None = None
    symbols: tuple[str, ...] = ()  # "+name" new, "-name" removed, "name" body changed
    problem: SyntaxProblem | None = None  # set when the file does not parse after the step


@dataclass(frozen=True)
class StepEdits:
    step: int
    files: tuple[FileChange, ...]
    by_user: bool = False  # edits made outside the agent (between turns of a conversation)
    refused: tuple[str, ...] = ()  # what the harness would not do for this step, one line each
    undone: tuple[str, ...] = ()  # protected paths whose change the harness put back

    def merged(self, later: StepEdits) -> StepEdits:
        """This step's edits followed by more of the same step (what the after-edit command wrote)."""
        files = {change.path: change for change in self.files}
        files.update({change.path: change for change in later.files})
        return StepEdits(
            self.step,
            tuple(files.values()),
            self.by_user,
            self.refused + later.refused,
            self.undone + later.undone,
        )

    @property
    def warnings(self) -> list[str]:
        """Syntax problems this step left, for the step's own observation."""
        return [
            f"{change.path} line {change.problem.line}: {change.problem.message}: the file no longer parses"
            for change in self.files
            if change.problem is not None
        ]

    @property
    def reshaped(self) -> list[str]:
        """Files whose definitions this step added, removed or moved: the model gets their outline."""
        return [
            change.path
            for change in self.files
            if change.status in ("created", "changed", "renamed")
            and (change.status == "renamed" or any(s[0] in "+-" for s in change.symbols))
        ]


@dataclass(frozen=True)
class FileState:
    """One file's net change since the run began, with every step that touched it."""

    path: str
    status: str
    old_path: str | None
    added: int
    removed: int
    binary: bool
    steps: tuple[int, ...]
    symbols: tuple[str, ...]
    by_user: tuple[int, ...] = ()  # which of those steps were the user's edits

    @property
    def steps_text(self) -> str:
        return ", ".join(
            f"{step} (the user's edit)" if step in self.by_user else str(step) for step in self.steps
        )


@dataclass(frozen=True)
class OpenProblem:
    path: str
    line: int
    message: str


@dataclass(frozen=True)
class LedgerView:
    files: tuple[FileState, ...]
    hidden_files: int  # changed files left out to keep the block short
    problems: tuple[OpenProblem, ...]


@dataclass(frozen=True)
class _Parsed:
    tags: FileTags | None
    checked: bool  # parsed with the syntax check


@dataclass
class Ledger:
    checkpoints: RunCheckpoints
    steps: list[StepEdits] = field(default_factory=list)
    problems: dict[str, SyntaxProblem] = field(default_factory=dict)  # files that do not parse now
    net: dict[str, DiffEntry] = field(default_factory=dict)  # files that differ from the base now
    planted_repositories: set[str] = field(default_factory=set)  # already said to the model
    protected: ProtectedPaths = field(default_factory=ProtectedPaths)  # changes to these are undone
    base: Checkpoint | None = None  # the state before the run, set by start()
    _parsed: dict[str, _Parsed] = field(default_factory=dict)  # by blob id, oldest first
    _view: tuple[int, LedgerView] | None = None  # the last view, keyed by the number of editing steps
    _pool: ThreadPoolExecutor | None = None

    @property
    def base_tree(self) -> str:
        assert self.base is not None, "Ledger.start() records the base first"
        return self.base.tree

    @property
    def current(self) -> Checkpoint:
        """The latest checkpoint (waiting for one still being written)."""
        return self.checkpoints.history[-1]

    def start(self) -> Checkpoint:
        """Checkpoint the exact state before the first action (the user's uncommitted work included)."""
        self.base = self.checkpoints.record(0)
        return self.base

    def close(self, status: str) -> Checkpoint | None:
        """Record the final state with the session's outcome; None if the start was never recorded."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return self.checkpoints.close(status)

    def record_step(self, step: int, *, by_user: bool = False) -> StepEdits:
        """Checkpoint after an action (or, `by_user`, the user's own edits between turns) and record
        what it changed."""
        previous = self.checkpoints.history[-1]
        refused = self._refusals(self.checkpoints.stage())
        entries = self._diff(previous.tree)  # the freshly staged index against the last checkpoint
        undone = self._undo_protected(previous.tree, entries)
        if undone:
            refused += tuple(undone.values())
            entries = self._diff(previous.tree)
        files: tuple[FileChange, ...] = ()
        if not entries:
            self.checkpoints.record(step, tree=previous.tree)
        else:
            # Only staging and one diff stand before parsing: re-diffing against the base runs beside
            # it, and the checkpoint commit is written in the background (the next step waits for it).
            self.checkpoints.record_staged_later(step)
            touched = {path for entry in entries for path in (entry.path, entry.old_path) if path}
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="actsmith-ledger")
            net = self._pool.submit(self._net_update, touched)
            files = self._changes(entries)
            differed = set(self.net)
            self._apply_net(*net.result())
            files = tuple(self._mark_revert(change, differed) for change in files)
        edits = StepEdits(step, files, by_user, refused, tuple(undone))
        self.steps.append(edits)
        for change in files:
            self.problems.pop(change.old_path or change.path, None)
            if change.problem is not None:
                self.problems[change.path] = change.problem
        return edits

    def _undo_protected(self, previous_tree: str, entries: list[DiffEntry]) -> dict[str, str]:
        """Put every protected path the step changed back as the last checkpoint has it (a created
        file goes), and stage again, so the step's checkpoint never holds the change. Returns what
        to tell the model, by path."""
        hits = {
            path: glob
            for entry in entries
            for path in (entry.path, entry.old_path)
            if path is not None and (glob := self.protected.match(path)) is not None
        }
        if not hits:
            return {}
        root = self.checkpoints.root
        staged = self.checkpoints.write_tree()
        restore(root, staged, tree_with(root, staged, previous_tree, sorted(hits)))
        self.checkpoints.stage()
        return {
            path: f"{path} is protected (`{glob}`): the harness undid your change to it; leave it as it is"
            for path, glob in sorted(hits.items())
        }

    def _refusals(self, planted: list[str]) -> tuple[str, ...]:
        """Each git repository made inside the working tree is said once, when first seen."""
        new = [path for path in planted if path not in self.planted_repositories]
        self.planted_repositories.update(new)
        return tuple(
            f"{path}/ is a git repository that is not one of this repository's submodules: actsmith "
            f"runs no git command in it and does not record its files (remove {path}/.git to have "
            "them recorded)"
            for path in new
        )

    def _mark_revert(self, change: FileChange, differed: set[str]) -> FileChange:
        """A file this step put back exactly as it was before the run: nothing of it is left to
        describe, so no symbols and no map (its definitions are the ones the model started with)."""
        if change.status == "deleted" or change.path not in differed or change.path in self.net:
            return change
        return FileChange(change.path, "reverted", None, (), change.problem)

    def _net_update(self, touched: set[str]) -> tuple[list[str], list[DiffEntry]]:
        """Re-diff against the base only the paths this step touched (and renames involving them):
        line counts need content diffs, and a long run's other files have not changed."""
        related = {
            p
            for e in self.net.values()
            if {e.path, e.old_path} & touched
            for p in (e.path, e.old_path)
            if p is not None
        }
        paths = sorted(touched | related)
        return paths, self._diff(self.base_tree, paths, numstat=True)

    def _apply_net(self, paths: list[str], entries: list[DiffEntry]) -> None:
        for path in paths:
            self.net.pop(path, None)
        for entry in entries:
            self.net[entry.path] = entry

    def view(self) -> LedgerView:
        key = sum(1 for record in self.steps if record.files)  # the view changes only with edits
        if self._view and self._view[0] == key:
            return self._view[1]  # an action that wrote nothing leaves the view as it was
        states = [self._file_state(entry) for _, entry in sorted(self.net.items())]
        shown = states[:MAX_FILES_SHOWN]
        problems = tuple(
            OpenProblem(path, problem.line, problem.message)
            for path, problem in sorted(self.problems.items())
        )
        view = LedgerView(tuple(shown), len(states) - len(shown), problems)
        self._view = (key, view)
        return view

    def _file_state(self, entry: DiffEntry) -> FileState:
        names = {entry.path, entry.old_path or entry.path}
        steps, symbols, by_user = [], [], []
        for record in self.steps:
            for change in record.files:
                if change.path in names or change.old_path in names:
                    steps.append(record.step)
                    symbols += [s for s in change.symbols if s not in symbols]
                    if record.by_user:
                        by_user.append(record.step)
        return FileState(
            path=entry.path,
            status=entry.status,
            old_path=entry.old_path,
            added=entry.added,
            removed=entry.removed,
            binary=entry.binary,
            steps=tuple(dict.fromkeys(steps)),
            symbols=tuple(symbols[:MAX_SYMBOLS_SHOWN]),
            by_user=tuple(by_user),
        )

    def _changes(self, entries: list[DiffEntry]) -> tuple[FileChange, ...]:
        parsed = [e for e in entries if language_for(e.path) or (e.old_path and language_for(e.old_path))]
        contents = self._contents_on_disk(parsed)
        older = [e.old_blob for e in parsed if e.old_blob and e.old_blob not in self._parsed]
        contents.update(read_blobs(self.checkpoints.root, older))
        return tuple(
            self._change(e, contents) if e in parsed else FileChange(e.path, e.status, e.old_path)
            for e in entries
        )

    def _contents_on_disk(self, entries: list[DiffEntry]) -> dict[str, bytes]:
        """New versions, read from the working tree: the snapshot just hashed these very bytes
        (unfiltered), and reading them costs no git process."""
        contents = {}
        for entry in entries:
            cached = self._parsed.get(entry.new_blob or "")
            # A blob parsed only as an old version (no syntax check) is read again for the check.
            if entry.new_blob and not (cached and cached.checked) and entry.new_mode in REGULAR_MODES:
                try:  # the sandbox may have swapped the file for a link since: never followed
                    data = read_bytes(self.checkpoints.root, entry.path, MAX_ANALYSED_BYTES + 1)
                except OSError:
                    continue
                if len(data) <= MAX_ANALYSED_BYTES:
                    contents[entry.new_blob] = data
        return contents

    def _change(self, entry: DiffEntry, blobs: dict[str, bytes]) -> FileChange:
        old_tags = self._tags(entry.old_path or entry.path, entry.old_blob, blobs, problems=False)
        new_tags = self._tags(entry.path, entry.new_blob, blobs, problems=True)
        symbols = touched_definitions(
            old_tags.definitions if old_tags else (), new_tags.definitions if new_tags else ()
        )
        problem = new_tags.problems[0] if new_tags and new_tags.problems else None
        return FileChange(entry.path, entry.status, entry.old_path, symbols, problem)

    def _tags(self, path: str, blob: str | None, blobs: dict[str, bytes], problems: bool) -> FileTags | None:
        """Parse a blob once: a file's new version is the old version of its next edit."""
        cached = self._parsed.get(blob or "")
        if cached is not None and (cached.checked or not problems):
            return cached.tags
        if blob is None or blob not in blobs:
            return None
        self._parsed[blob] = _Parsed(analyse(path, blobs[blob], problems=problems), problems)
        while len(self._parsed) > PARSE_CACHE_SIZE:
            self._parsed.pop(next(iter(self._parsed)))
        return self._parsed[blob].tags

    def _diff(self, before: str, paths: list[str] | None = None, numstat: bool = False) -> list[DiffEntry]:
        """The private index (the working tree as last staged) against a tree: raw entries with renames
        found, line counts when asked; `paths` limits the diff."""
        limit = ["--", *paths] if paths is not None else []
        stats = ["--numstat"] if numstat else []
        out = git(
            self.checkpoints.root,
            "diff-index",
            "--cached",
            "-M",
            "-z",
            "--raw",
            *stats,
            before,
            *limit,
            env={**self.checkpoints.index_env, "GIT_LITERAL_PATHSPECS": "1"},
        )
        return parse_raw_numstat(out.decode("utf-8", "surrogateescape"), numstat)


@dataclass(frozen=True)
class DiffEntry:
    path: str
    status: str
    old_path: str | None
    old_blob: str | None
    new_blob: str | None
    new_mode: str = ""
    added: int = 0
    removed: int = 0
    binary: bool = False


REGULAR_MODES = ("100644", "100755")
STATUS_WORDS = {
    "A": "created",
    "D": "deleted",
    "M": "changed",
    "T": "changed",
    "R": "renamed",
    "C": "created",
}
NULL_SHA = "0" * 40


def parse_raw_numstat(out: str, numstat: bool = True) -> list[DiffEntry]:
    """Parse `git diff-tree -z --raw [--numstat]`: the raw records, then numstat in the same order."""
    tokens = out.split("\0")
    raw, i = [], 0
    while i < len(tokens) and tokens[i].startswith(":"):
        meta = tokens[i].split()
        old_blob, new_blob, letter = meta[2], meta[3], meta[4][0]
        if letter in "RC":
            old_path, path, i = tokens[i + 1], tokens[i + 2], i + 3
        else:
            old_path, path, i = None, tokens[i + 1], i + 2
        raw.append((path, letter, old_path, old_blob, new_blob, meta[1]))
    entries = []
    for path, letter, old_path, old_blob, new_blob, new_mode in raw:
        added, removed, rest = tokens[i].split("\t", 2) if numstat else ("0", "0", "")
        i += (3 if rest == "" else 1) if numstat else 0
        entries.append(
            DiffEntry(
                path=path,
                status=STATUS_WORDS.get(letter, "changed"),
                old_path=old_path if letter == "R" else None,
                old_blob=None if old_blob == NULL_SHA else old_blob,
                new_blob=None if new_blob == NULL_SHA else new_blob,
                new_mode=new_mode,
                added=int(added) if added != "-" else 0,
                removed=int(removed) if removed != "-" else 0,
                binary=added == "-",
            )
        )
    return entries


def read_blobs(root: Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of several blobs in one `git cat-file --batch` call; big ones are left out."""
    if not shas:
        return {}
    out = git(root, "cat-file", "--batch", input="\n".join(dict.fromkeys(shas)).encode() + b"\n")
    blobs, pos = {}, 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        sha, kind, *size = out[pos:header_end].decode().split()
        pos = header_end + 1
        if kind == "missing" or not size:
            continue
        length = int(size[0])
        if length <= MAX_ANALYSED_BYTES:
            blobs[sha] = out[pos : pos + length]
        pos += length + 1
    return blobs


def touched_definitions(old: tuple[Definition, ...], new: tuple[Definition, ...]) -> tuple[str, ...]:
    """Definitions added (+), removed (-) or with a changed body; an enclosing class is named only when
    nothing inside it explains the change."""
    before = {d.name: d.body_hash for d in old}
    after = {d.name: d.body_hash for d in new}
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    changed = [name for name in after if name in before and before[name] != after[name]]
    specific = added + removed + changed
    changed = [name for name in changed if not any(other.startswith(name + ".") for other in specific)]
    return tuple([f"+{name}" for name in added] + [f"-{name}" for name in removed] + changed)
