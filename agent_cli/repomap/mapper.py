"""RepoMap: scan a repository's files, keep their tags and reference graph, render the map."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent_cli.repomap import files as source_files
from agent_cli.repomap.files import MAX_FILE_BYTES, RACY_NS, StatRecord, TagCache
from agent_cli.repomap.graph import RankedDefinition, ReferenceGraph
from agent_cli.repomap.render import CHARS_PER_TOKEN, fit_outline, format_outline
from agent_cli.safe_paths import Folders
from agent_cli.syntax import FileTags

# Below this many files to parse, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 100
# Definitions considered per render before falling back to all of them: far more than a
# budget of a few thousand tokens can show.
RANKED_LIMIT = 1500
PRUNE_AFTER = 50  # cached tags of old file versions swept from the disk cache past this many


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class ScanStats:
    """What the last scan did. Tests count `parsed` to check a warm re-map parses only changes."""

    files: int = 0  # files in the map
    skipped: int = 0  # listed but left out: no grammar, vendored, generated, minified, binary, huge
    hashed: int = 0  # read and hashed: new, or their size, mtime or inode changed
    parsed: int = 0  # parsed with tree-sitter: their content was in no cache


class RepoMap:
    """The map of one repository. Keep the object to re-map cheaply: tags and the ranking stay in
    memory and are updated with what changed; a new object starts from the disk cache."""

    def __init__(
        self,
        root: Path,
        *,
        cache_path: Path | None = None,
        use_cache: bool = True,
        workers: int | None = None,
    ):
        self.root = Path(root).resolve()
        self.cache = TagCache(
            (cache_path or source_files.default_cache_path(self.root)) if use_cache else None
        )
        self.workers = workers if workers is not None else min(_usable_cpus(), 8)
        self.files: dict[str, FileTags] = {}  # the files in the map, as of the last scan()
        self.stats = ScanStats()
        self._records: dict[str, StatRecord] = self.cache.records(str(self.root))
        self._tags: dict[str, FileTags | None] = {}  # by content digest, for the files listed
        self._graph: ReferenceGraph | None = None
        self._wanted_by_name: dict[str, bool] = {}  # by path: the checks are pure, and paths repeat
        self._stale = PRUNE_AFTER + 1  # a new process sweeps once

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> RepoMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scanning --

    def scan(self) -> ScanStats:
        """Bring `files` up to date with the working tree, parsing only content never seen before."""
        stats = ScanStats()
        listing = source_files.start_listing(self.root)
        # While git lists the files, stat the ones we know: the two take about as long.
        seen = {path: self._lstat(path) for path in self._records}
        listed = listing()
        candidates = [path for path in listed if self._wanted(path)]
        current: dict[str, StatRecord] = {}
        unknown = self._unchanged_or_unknown(candidates, current, seen)
        stats.hashed = len(unknown)
        changed, fresh = self._hash_and_tag(unknown, current, stats)

        missing = {record[4] for record in current.values()} - self._tags.keys()
        self._tags.update(self.cache.tags(missing))
        lost = [path for path, record in current.items() if record[4] not in self._tags]
        if lost:  # stat records whose tags are gone from the cache: parse them again
            more_changed, more_fresh = self._hash_and_tag(lost, current, stats)
            changed.update(more_changed)
            fresh.update(more_fresh)

        removed = [path for path in self._records if path not in current]
        # Old versions of edited files stay in the cache until there are enough to be worth a sweep.
        self._stale += len(removed) + sum(
            1 for path, record in changed.items() if self._records.get(path, record)[4] != record[4]
        )
        prune = self._stale > max(PRUNE_AFTER, len(current) // 10)
        self.cache.save(str(self.root), changed, removed, fresh, prune=prune)
        if prune:
            self._stale = 0
        self._records = current
        live = {record[4] for record in current.values()}
        self._tags = {digest: tags for digest, tags in self._tags.items() if digest in live}
        self.files = {
            path: tags for path, record in current.items() if (tags := self._tags.get(record[4])) is not None
        }
        stats.files = len(self.files)
        stats.skipped = len(listed) - len(self.files)
        self.stats = stats
        return stats

    def _wanted(self, path: str) -> bool:
        wanted = self._wanted_by_name.get(path)
        if wanted is None:
            wanted = self._wanted_by_name[path] = source_files.wanted_by_name(path)
        return wanted

    def _lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(f"{self.root}/{path}")  # string joins: pathlib costs more than the lstat
        except OSError:
            return None

    def _unchanged_or_unknown(
        self,
        candidates: list[str],
        current: dict[str, StatRecord],
        seen: dict[str, os.stat_result | None],
    ) -> list[str]:
        """Fill `current` with the files whose stat matches their record; return the others."""
        unknown: list[str] = []
        for path in candidates:
            info = seen[path] if path in seen else self._lstat(path)
            if info is None:
                continue  # deleted but still tracked
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                continue  # a symlink could point outside the repository; huge files are data
            known = self._records.get(path)
            if (
                known is not None
                and known[:3] == (info.st_size, info.st_mtime_ns, info.st_ino)
                and info.st_mtime_ns + RACY_NS < known[3]
            ):
                current[path] = known
            else:
                unknown.append(path)
        return unknown

    def _hash_and_tag(
        self, paths: list[str], current: dict[str, StatRecord], stats: ScanStats
    ) -> tuple[dict[str, StatRecord], dict[str, bytes]]:
        """Read and hash `paths`; parse those whose content no cache holds. Returns the new stat
        records and the new tags (pack()ed, for the disk cache)."""
        changed: dict[str, StatRecord] = {}
        fresh: dict[str, bytes] = {}
        with Folders(self.root) as folders:
            for path in paths:
                read = source_files.read(folders, path)
                if read is None:
                    continue
                record, data = read
                current[path] = changed[path] = record
                if not source_files.wanted_by_content(data):  # decided now: no worker time for it
                    self._tags[record[4]] = None
                    fresh[record[4]] = source_files.pack(None)
        self._tags.update(self.cache.tags({changed[p][4] for p in changed} - self._tags.keys()))
        # One path per unseen content: identical files are parsed once.
        to_parse = list({changed[p][4]: p for p in changed if changed[p][4] not in self._tags}.values())
        stats.parsed += len(to_parse)
        if len(to_parse) >= PARALLEL_MIN_FILES and self.workers > 1:
            sizes = {path: changed[path][0] for path in to_parse}
            groups = source_files.balance(to_parse, sizes, self.workers)
            results = source_files.tag_in_workers(self.root, groups)
        else:
            results = source_files.tag_files(self.root, to_parse)
        for path, tagged, blob in results:
            if tagged is not None:  # the read that was tagged is the one recorded
                current[path] = changed[path] = tagged
                fresh[tagged[4]] = blob
                self._tags[tagged[4]] = source_files.unpack(blob)
        return changed, fresh

    # -- ranking and rendering --

    def ranked(
        self,
        focus_files: Iterable[str] = (),
        focus_names: Iterable[str] = (),
        limit: int | None = None,
    ) -> list[RankedDefinition]:
        """Definitions best first (after scan()): the best `limit` candidates, or all of them."""
        focus_files, focus_names = self.resolve(focus_files), set(focus_names)
        if self._graph is None:
            self._graph = ReferenceGraph(focus_files, focus_names)
        self._graph.update(self.files)
        self._graph.refocus(focus_files, focus_names)  # cheap: only what the change of focus moves
        return self._graph.ranked(limit)

    def render(
        self, max_tokens: int = 1024, focus_files: Iterable[str] = (), focus_names: Iterable[str] = ()
    ) -> str:
        """Scan, rank, and render the outline fitting `max_tokens` (estimated: characters / 4).

        focus_files and focus_names (what the task and the ledger mention) pull the ranking toward
        themselves; file names may be given as any unique tail of the path ("parser.py")."""
        if max_tokens <= 0:
            return ""
        self.scan()
        focus_files, focus_names = list(focus_files), list(focus_names)
        budget = max_tokens * CHARS_PER_TOKEN
        text, filled = fit_outline(self.ranked(focus_files, focus_names, RANKED_LIMIT), self.files, budget)
        if not filled:  # a small repository, or the candidates ran out: consider every definition
            text, _ = fit_outline(self.ranked(focus_files, focus_names), self.files, budget)
        return text

    def outline(self, paths: Iterable[str]) -> str:
        """The full outline of some files as they are on disk now, e.g. right after an edit added,
        removed or moved definitions (the last scan may predate it). Tags come from the cache of
        contents already seen, else from a parse."""
        tags: dict[str, FileTags] = {}
        with Folders(self.root) as folders:
            reads = [(path, source_files.read(folders, path)) for path in paths]  # a few files
        for path, read in reads:
            if read is None:
                continue
            record, data = read
            digest = record[-1]
            if digest in self._tags:
                known = self._tags[digest]
            else:
                known = source_files.tag_content(path, data)
                self._tags[digest] = known
            if known is not None:
                tags[path] = known
        return format_outline({path: t.definitions for path, t in tags.items()}, tags)

    def resolve(self, names: Iterable[str]) -> set[str]:
        """Files as a task names them: paths, absolute paths, or a tail matching at most 3 files
        ("parser.py", "pkg/parser.py"); names matching nothing are ignored."""
        resolved: set[str] = set()
        for raw in names:
            name = raw.strip().strip("'\"`").removeprefix("./")
            if os.path.isabs(name):
                try:
                    name = Path(name).resolve().relative_to(self.root).as_posix()
                except ValueError:
                    continue
            if not name:
                continue
            if name in self.files:
                resolved.add(name)
                continue
            tail = "/" + name
            matches = [path for path in self.files if path.endswith(tail)]
            if len(matches) <= 3:
                resolved.update(matches)
        return resolved
