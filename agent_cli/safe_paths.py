"""Host reads and writes of files inside the repository that never follow a symbolic link.

The sandbox can write anywhere in the working tree, so any path in it may have become a symlink (a
tracked file swapped for a link to ~/.ssh/id_rsa, `.actsmith/runs` pointing at another folder) or a
FIFO that would block a read forever. Here every folder on a path is opened relative to its parent's
descriptor with O_NOFOLLOW, and the file relative to its folder's, O_NOFOLLOW too: a link anywhere
on the way is refused (`PathRefused`), never followed, whatever the sandbox does meanwhile. Reads
take regular files only. Paths are relative to the repository root and may not climb out of it.

`Folders` keeps the folders' descriptors open to read many files in one go (each folder opened once);
the functions below it do one thing each. A folder opened once stays the folder it was even if the
sandbox then swaps it for a link: it can move a folder, but only within its mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath
from types import TracebackType
from typing import IO, Any

Relative = str | PurePath  # a path from the repository root
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO the sandbox planted returns at once (then refused: not a regular file)
# instead of waiting forever for its other end.
NO_SURPRISES = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
LINK = "is a symbolic link: actsmith does not follow links inside the repository"
FILE_MODES = {
    "rb": os.O_RDONLY,
    "r": os.O_RDONLY,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}
KEPT_OPEN = 128  # folder descriptors a Folders keeps (the least recently used are closed)


class PathRefused(OSError):
    """A path in the repository that could lead out of it: through a symbolic link, or with `..`."""

    def __init__(self, relative: str, reason: str):
        super().__init__(errno.ELOOP, reason, relative)
        self.relative = relative

    def __str__(self) -> str:
        return f"{self.relative} {self.strerror}"


def parts_of(relative: Relative) -> list[str]:
    """The components of a path relative to the repository; absolute paths and `..` are refused."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise PathRefused(str(relative), "is not a path inside the repository")
    parts = [part for part in path.parts if part != "."]
    if not parts:
        raise PathRefused(str(relative), "names no file in the repository")
    return parts


def within(root: Path, path: Path) -> str | None:
    """`path` relative to `root` when it lies inside it (judged on the absolute path as written)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return None


class Folders:
    """Descriptors of the folders under `root`, each reached without following a link."""

    def __init__(self, root: Path):
        self.root = root
        self._open: OrderedDict[str, int] = OrderedDict()  # by path from the root ("" for the root)

    def __enter__(self) -> Folders:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1])

    def folder(self, relative: str, *, make: bool = False) -> int:
        """The descriptor of the folder `relative` ("" for the root); `make` creates the missing
        folders, as mkdir -p would."""
        if relative in self._open:
            self._open.move_to_end(relative)
            return self._open[relative]
        if not relative:
            fd = os.open(self.root, DIRECTORY & ~os.O_NOFOLLOW)  # the root itself is the user's choice
        else:
            parent_path, _, name = relative.rpartition("/")
            parent = self.folder(parent_path, make=make)
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=parent)
            try:
                fd = os.open(name, DIRECTORY, dir_fd=parent)
            except OSError as error:
                raise _refusal(parent, name, relative, error) from None
        self._open[relative] = fd
        while len(self._open) > KEPT_OPEN:
            os.close(self._open.popitem(last=False)[1])
        return fd

    def parent_of(self, relative: Relative, *, make: bool = False) -> tuple[int, str]:
        """The descriptor of the folder holding `relative`, and its name in it."""
        parts = parts_of(relative)
        return self.folder("/".join(parts[:-1]), make=make), parts[-1]

    def open(self, relative: Relative, flags: int, *, make_parents: bool = False) -> int:
        """A descriptor of the regular file `relative`, opened with `flags`, following no link."""
        parent, name = self.parent_of(relative, make=make_parents)
        shown = "/".join(parts_of(relative))
        try:
            fd = os.open(name, flags | NO_SURPRISES, 0o644, dir_fd=parent)
        except OSError as error:
            raise _refusal(parent, name, shown, error) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", shown)
        os.set_blocking(fd, True)
        return fd

    def read_bytes(self, relative: Relative, limit: int | None = None) -> bytes:
        with os.fdopen(self.open(relative, os.O_RDONLY), "rb") as handle:
            return handle.read() if limit is None else handle.read(limit)

    def read_link(self, relative: Relative) -> bytes:
        """Where a symbolic link points (the link itself is never followed)."""
        parent, name = self.parent_of(relative)
        return os.readlink(os.fsencode(name), dir_fd=parent)

    def lstat(self, relative: Relative) -> os.stat_result | None:
        """lstat() of a path; None when it is gone or now lies behind a link."""
        try:
            parent, name = self.parent_of(relative)
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError:
            return None


def _refusal(parent: int, name: str, shown: str, error: OSError) -> OSError:
    """A link in the way says so; any other failure stays what it was."""
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                return PathRefused(shown, LINK)
    error.filename = shown
    return error


def open_file(root: Path, relative: Relative, mode: str = "rb", **options: Any) -> IO[Any]:
    """`open()` for a file under `root`, by `relative` path, following no link. `mode` is one of
    r, rb, w, wb, a, ab; folders are created for writing. Text is UTF-8 unless `options` say."""
    writing = mode[0] in "wa"
    with Folders(root) as folders:
        fd = folders.open(relative, FILE_MODES[mode], make_parents=writing)
    if "b" not in mode:
        options.setdefault("encoding", "utf-8")
    return os.fdopen(fd, mode, **options)


def open_path(path: Path, mode: str, root: Path | None, **options: Any) -> IO[Any]:
    """`open()` for a path anywhere: through `open_file` when it lies inside the repository `root`,
    as is otherwise (a path outside it is the user's, and the sandbox cannot reach it)."""
    relative = within(root, path) if root is not None else None
    if root is not None and relative is not None:
        return open_file(root, relative, mode, **options)
    if mode[0] in "wa":
        path.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        options.setdefault("encoding", "utf-8")
    return open(path, mode, **options)


def read_bytes(
    root: Path, relative: Relative, limit: int | None = None, *, follow_inside: bool = False
) -> bytes:
    """The content of a regular file under `root` (its first `limit` bytes when given).
    `follow_inside`: a link that resolves to a file inside the repository is read there (a manifest
    linked to a shared one); one that leads out of it is refused all the same."""
    try:
        with Folders(root) as folders:
            return folders.read_bytes(relative, limit)
    except PathRefused:
        if not follow_inside:
            raise
    target = within(root, Path(os.path.realpath(root / relative)))
    if target is None:
        raise PathRefused(str(relative), "is a symbolic link that leads out of the repository")
    return read_bytes(root, target, limit)


def read_text(
    root: Path, relative: Relative, limit: int | None = None, *, follow_inside: bool = False
) -> str:
    """The text of a regular file under `root`, UTF-8 with undecodable bytes replaced."""
    return read_bytes(root, relative, limit, follow_inside=follow_inside).decode("utf-8", "replace")


def lstat_all(root: Path, paths: Iterable[str]) -> dict[str, os.stat_result]:
    """lstat() of each path that is still there and not behind a link."""
    with Folders(root) as folders:
        found = {path: folders.lstat(path) for path in paths}
    return {path: info for path, info in found.items() if info is not None}


def make_dirs(root: Path, relative: Relative) -> None:
    """mkdir -p under `root`, refusing to go through a link."""
    with Folders(root) as folders:
        folders.folder("/".join(parts_of(relative)), make=True)


def write_atomic(root: Path, relative: Relative, data: bytes) -> None:
    """Replace a file under `root` at once (never half written): a new file beside it, renamed over
    it. A link in its place is replaced, never written through."""
    with Folders(root) as folders:
        parent, name = folders.parent_of(relative, make=True)
        temporary = f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=parent)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_SURPRISES, 0o644, dir_fd=parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)


def remove_file(root: Path, relative: Relative) -> None:
    """Remove a file (or a link, itself) under `root`, then the folders it leaves empty."""
    parts = parts_of(relative)
    with Folders(root) as folders:
        parent, name = folders.parent_of(relative)
        os.unlink(name, dir_fd=parent)
        for depth in range(len(parts) - 1, 0, -1):
            try:
                os.rmdir(parts[depth - 1], dir_fd=folders.folder("/".join(parts[: depth - 1])))
            except OSError:  # not empty: it holds something else
                return
