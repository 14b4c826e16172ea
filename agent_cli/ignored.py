"""Ignored files a run touched: named when it ends, and put back by `actsmith undo`.

Checkpoints leave ignored files out (build output and caches: often big, always many), yet the
sandbox can write them like any other file. So when a run starts, every ignored file's stat is taken
and the content of the small ones is saved: the smallest first, up to MAX_SAVED_FILE bytes each and
MAX_SAVED_BYTES (MAX_SAVED_FILES files) in all, written by one `git fast-import` as a commit under
refs/actsmith/ignored/<run id>, so `git gc` keeps it. When the run ends, the files created, changed
or deleted since are found (stat first, a content hash when the stat differs) and recorded in that
commit beside the content, for `actsmith undo`. The host tool folders at the top, which the sandbox
sees read-only, and .actsmith/ (actsmith's own logs) are skipped. Files are read through
safe_paths: no link the sandbox planted is ever followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from agent_cli import safe_paths
from agent_cli.gitops import GitError, git, has_ref, nul_joined
from agent_cli.workspace import HOST_TOOL_FOLDERS, RUNS_DIR

REF_PREFIX = "refs/actsmith/ignored/"
MAX_SAVED_FILE = 1 << 20
MAX_SAVED_BYTES = 64 << 20
MAX_SAVED_FILES = 20_000  # reading many small files costs more than their bytes
# Mounted read-only in the sandbox (see the sandbox's mounts): it cannot change them.
SKIPPED = (*HOST_TOOL_FOLDERS, RUNS_DIR)
BEFORE = "before"  # the saved files, in the ref's tree
CHANGES = "changes.json"  # what the run did to them, added when it ends
SHOWN = 10  # files named in the summary line
LINK_MODE = "120000"


@dataclass(frozen=True)
class IgnoredChange:
    path: str  # from the repository root
    change: str  # created | changed | deleted
    saved: bool = True  # its content before the run was saved, so undo can put it back

    def describe(self) -> str:
        note = "" if self.saved else ", not saved: undo cannot restore it"
        return f"{printable(self.path)} ({self.change}{note})"


@dataclass(frozen=True)
class Seen:
    """An ignored file when the run started: its stat, and its git mode and blob when saved."""

    size: int
    mtime_ns: int
    ctime_ns: int  # the sandbox can set a file's mtime back, never its ctime
    mode: int
    blob: tuple[str, str] | None = None

    @classmethod
    def of(cls, info: os.stat_result) -> Seen:
        return cls(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)

    def same_stat(self, other: Seen) -> bool:
        return replace(self, blob=None) == replace(other, blob=None)


@dataclass
class IgnoredFiles:
    """The ignored files of a working tree as a run found them."""

    root: Path
    run_id: str
    before: dict[str, Seen]
    hash_name: str = "sha1"  # the repository's object format
    saved_any: bool = False
    # Saving runs in the background: the content is read before the snapshot returns (before any
    # action), hashed and written by git while the run goes on.
    _writer: ThreadPoolExecutor | None = None
    _written: Future[None] | None = None

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.run_id

    @classmethod
    def snapshot(cls, root: Path, run_id: str) -> IgnoredFiles:
        """Take the ignored files' stat and read the content of those within the budget; it is
        hashed and written in the background (`saved()` waits for it)."""
        paths = list_ignored(root)
        before = {path: Seen.of(info) for path, info in safe_paths.lstat_all(root, paths).items()}
        files = cls(root, run_id, before)
        chosen = _within_budget(before)
        if not chosen:
            return files
        with safe_paths.Folders(root) as folders:
            contents = {path: _content(folders, path, before[path].mode) for path in chosen}
        files.saved_any = any(content is not None for content in contents.values())
        if files.saved_any:
            files._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="actsmith-ignored")
            files._written = files._writer.submit(files._save, contents)
        return files

    def _save(self, contents: dict[str, bytes | None]) -> None:
        """Write the content read as the ref's first commit, in one fast-import; content the
        repository already holds (the same build output as last run's) is only referred to."""
        self.hash_name = object_format(self.root)
        saved = {}
        for path, content in contents.items():
            if content is not None:
                seen = self.before[path]
                entry = (git_mode(seen.mode) or "", blob_id(content, self.hash_name))
                self.before[path] = replace(seen, blob=entry)
                saved[path] = (entry, content)
        stored = existing_objects(self.root, [blob for (_mode, blob), _ in saved.values()])
        stream = [_commit_header(self.ref, f"ignored files before run {self.run_id}")]
        for path, ((mode, blob), content) in saved.items():
            name = _quoted(f"{BEFORE}/{path}")
            if blob in stored:
                stream.append(b"M %s %s %s\n" % (mode.encode(), blob.encode(), name))
            else:
                stream.append(b"M %s inline %s\ndata %d\n%s\n" % (mode.encode(), name, len(content), content))
        git(self.root, "fast-import", "--quiet", input=b"".join(stream) + b"done\n")

    def saved(self) -> None:
        """Wait until the content read at the start is written; if git failed to, nothing is
        saved (undo will say so)."""
        if self._writer is None or self._written is None:
            return
        writer, written, self._writer, self._written = self._writer, self._written, None, None
        writer.shutdown(wait=True)
        try:
            written.result()
        except GitError:
            self.saved_any = False
            self.before = {path: replace(seen, blob=None) for path, seen in self.before.items()}

    def finish(self) -> list[IgnoredChange]:
        """The ignored files created, changed or deleted since the snapshot, recorded for undo."""
        self.saved()
        now = list_ignored(self.root)
        paths = sorted(set(self.before) | set(now))
        changes = []
        with safe_paths.Folders(self.root) as folders:
            for path in paths:
                old, info = self.before.get(path), folders.lstat(path)
                if old is None:
                    if info is not None:
                        changes.append(IgnoredChange(path, "created"))
                elif info is None:
                    changes.append(IgnoredChange(path, "deleted", old.blob is not None))
                elif not old.same_stat(Seen.of(info)) and self._differs(folders, path, old, Seen.of(info)):
                    changes.append(IgnoredChange(path, "changed", old.blob is not None))
        self._record(changes)
        return changes

    def _differs(self, folders: safe_paths.Folders, path: str, old: Seen, new: Seen) -> bool:
        """Whether a file whose stat changed holds other content (or mode) than before."""
        if old.blob is None or old.size != new.size or git_mode(new.mode) != old.blob[0]:
            return True
        content = _content(folders, path, new.mode)
        return content is None or blob_id(content, self.hash_name) != old.blob[1]

    def _record(self, changes: list[IgnoredChange]) -> None:
        """Add what changed to the ref (undo reads it); a run that changed none keeps no ref."""
        if not changes:
            if self.saved_any:
                git(self.root, "update-ref", "-d", self.ref)
            return
        record = json.dumps({"run": self.run_id, "changes": [asdict(c) for c in changes]}, indent=1).encode()
        parent = f"from {self.ref}^0\n".encode() if self.saved_any else b""
        stream = [
            _commit_header(self.ref, f"ignored files changed by run {self.run_id}"),
            parent,
            b"M 100644 inline %s\ndata %d\n%s\n" % (CHANGES.encode(), len(record), record),
            b"done\n",
        ]
        git(self.root, "fast-import", "--quiet", input=b"".join(stream))


def list_ignored(root: Path) -> list[str]:
    """Every ignored file of the working tree, by path from its root (skipped folders left out)."""
    excluded = [f":(exclude,literal){name}" for name in SKIPPED]
    out = git(root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", ".", *excluded)
    return [path for path in out.decode("utf-8", "surrogateescape").split("\0") if path and path[-1] != "/"]


def object_format(root: Path) -> str:
    return git(root, "rev-parse", "--show-object-format").decode().strip() or "sha1"


def blob_id(content: bytes, hash_name: str) -> str:
    """The id git gives a blob of this content, in the repository's object format."""
    digest = hashlib.new(hash_name)
    digest.update(b"blob %d\0" % len(content))
    digest.update(content)
    return digest.hexdigest()


def existing_objects(root: Path, ids: list[str]) -> set[str]:
    """Which of these objects the repository already holds, in one `git cat-file --batch-check`."""
    out = git(root, "cat-file", "--batch-check=%(objectname)", input="\n".join(ids).encode() + b"\n")
    return {line for line in out.decode().splitlines() if not line.endswith(" missing")}


def git_mode(mode: int) -> str | None:
    """The git mode of a file with this stat mode; None for what git does not store (a folder)."""
    if stat.S_ISLNK(mode):
        return LINK_MODE
    if stat.S_ISREG(mode):
        return "100755" if mode & stat.S_IXUSR else "100644"
    return None


def _within_budget(before: dict[str, Seen]) -> list[str]:
    """The files whose content is saved: regular files and links, the smallest first."""
    chosen: list[str] = []
    total = 0
    for path, seen in sorted(before.items(), key=lambda item: (item[1].size, item[0])):
        if git_mode(seen.mode) is None or seen.size > MAX_SAVED_FILE:
            continue
        if total + seen.size > MAX_SAVED_BYTES or len(chosen) >= MAX_SAVED_FILES:
            break
        chosen.append(path)
        total += seen.size
    return chosen


def _content(folders: safe_paths.Folders, path: str, mode: int) -> bytes | None:
    """What git would store for the file: its bytes, or a link's target. None when unreadable."""
    try:
        if stat.S_ISLNK(mode):
            return folders.read_link(path)
        data = folders.read_bytes(path, MAX_SAVED_FILE + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_SAVED_FILE else None


def _commit_header(ref: str, message: str) -> bytes:
    text = message.encode()
    return (
        f"commit {ref}\ncommitter actsmith <actsmith@localhost> {int(time.time())} +0000\n".encode()
        + b"data %d\n" % len(text)
        + text
        + b"\n"
    )


def _quoted(path: str) -> bytes:
    """A path as fast-import reads it in C style: any byte a file name may hold survives."""
    out = bytearray(b'"')
    for byte in path.encode("utf-8", "surrogateescape"):
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


# ----------------------------------------------------------------------------------------- undo


def recorded_changes(root: Path, run_id: str) -> list[IgnoredChange]:
    """What a run did to ignored files, as recorded when it ended (none recorded: an empty list)."""
    ref = REF_PREFIX + run_id
    if not has_ref(root, ref):
        return []
    try:
        data = json.loads(git(root, "cat-file", "blob", f"{ref}:{CHANGES}"))
    except (GitError, ValueError):
        return []
    return [IgnoredChange(**change) for change in data.get("changes", [])]


@dataclass
class IgnoredUndone:
    """What undo did to ignored files."""

    removed: list[str] = field(default_factory=list)  # created by the run
    restored: list[str] = field(default_factory=list)  # changed or deleted by the run
    not_restored: list[str] = field(default_factory=list)  # path (why)
    left: list[str] = field(default_factory=list)  # an undo to a later step leaves them as they are


@dataclass
class IgnoredUndo:
    """Undo of a run's ignored files, in two halves around the undo of its checkpoints: files the
    run created go first (one that was tracked before the run comes back from its checkpoint),
    saved files come back last (one the run took out of the ignore rules is removed by the
    checkpoint's undo, then put back). The undo takes its own snapshot, so undoing it brings back
    what it removed or overwrote."""

    root: Path
    run_id: str
    changes: list[IgnoredChange]
    own: IgnoredFiles | None = None  # the undo's own snapshot, when it changes any
    undone: IgnoredUndone = field(default_factory=IgnoredUndone)

    @classmethod
    def begin(cls, root: Path, run_id: str, undo_id: str, whole: bool) -> IgnoredUndo:
        """`whole`: back to before the run; an undo to a later step leaves ignored files alone
        (only their state before the run is saved)."""
        undo = cls(root, run_id, recorded_changes(root, run_id))
        if not whole:
            undo.undone.left = [change.path for change in undo.changes]
            return undo
        if undo.changes:
            undo.own = IgnoredFiles.snapshot(root, undo_id)
        for change in undo.changes:
            if change.change == "created":
                try:
                    safe_paths.remove_file(root, change.path)
                except FileNotFoundError:
                    continue
                except OSError as error:
                    undo.undone.not_restored.append(f"{change.path} ({error})")
                    continue
                undo.undone.removed.append(change.path)
        return undo

    def finish(self) -> IgnoredUndone:
        if self.own is not None:
            self._put_back([change for change in self.changes if change.change != "created"])
            self.own.finish()
        return self.undone

    def _put_back(self, changes: list[IgnoredChange]) -> None:
        """Write the saved files back as they were, through git's checkout-index (byte-exact; a link
        in the way is replaced, never followed), then check each one."""
        saved = [change.path for change in changes if change.saved]
        self.undone.not_restored += [
            f"{change.path} (not saved before the run: over the budget)"
            for change in changes
            if not change.saved
        ]
        if not saved:
            return
        with tempfile.TemporaryDirectory(prefix="actsmith-ignored-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(self.root, "read-tree", f"{REF_PREFIX}{self.run_id}:{BEFORE}", env=env)
            with contextlib.suppress(GitError):  # each file is checked below
                git(self.root, "checkout-index", "--force", "-z", "--stdin", env=env, input=nul_joined(saved))
            wanted = _index_entries(self.root, env)
        hash_name = object_format(self.root)
        with safe_paths.Folders(self.root) as folders:
            for path in saved:
                info = folders.lstat(path)
                mode = git_mode(info.st_mode) if info else None
                content = _content(folders, path, info.st_mode) if info and mode else None
                if content is not None and (mode, blob_id(content, hash_name)) == wanted.get(path):
                    self.undone.restored.append(path)
                else:
                    self.undone.not_restored.append(f"{path} (could not be written back)")


def _index_entries(root: Path, env: dict[str, str]) -> dict[str, tuple[str, str]]:
    out = git(root, "ls-files", "-z", "--stage", env=env).decode("utf-8", "surrogateescape")
    entries = {}
    for entry in filter(None, out.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, blob, _stage = meta.split()
        entries[path] = (mode, blob)
    return entries


def printable(path: str) -> str:
    """A file name the sandbox chose, shown without the control characters (a newline, a terminal
    escape) it could use to fake lines of the summary."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in path)


def summary_line(changes: list[IgnoredChange]) -> str:
    """`ignored files changed: a (created), b (changed), ... and N more`."""
    shown = ", ".join(change.describe() for change in changes[:SHOWN])
    more = f", and {len(changes) - SHOWN} more" if len(changes) > SHOWN else ""
    return f"ignored files changed: {shown}{more}"


def ignored_undo_lines(undone: IgnoredUndone) -> list[str]:
    """What `actsmith undo` says about ignored files: one line for each kind of outcome."""
    lines = []
    if undone.removed:
        lines.append(f"ignored files removed (the run created them): {_names(undone.removed)}")
    if undone.restored:
        lines.append(f"ignored files restored: {_names(undone.restored)}")
    if undone.not_restored:
        lines.append(f"ignored files not restored: {_names(undone.not_restored)}")
    if undone.left:
        lines.append(
            "ignored files the run changed are left as they are (only their state before the run is "
            f"saved; `actsmith undo` without --step puts them back): {_names(undone.left)}"
        )
    return lines


def _names(paths: list[str]) -> str:
    return ", ".join(printable(path) for path in paths)
