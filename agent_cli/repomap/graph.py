"""Ranking definitions by how central they are, kept up to date edit by edit.

Files are the nodes. A file that references a name links to the files defining it; the weight of
a name is split among its definers and the link weights of a file sum to 1. A file's rank solves
the personalised PageRank equation

    rank = (1 - DAMPING) * restart + DAMPING * (links' transpose) @ rank

(restart weighs every file 1, and the focus files much more), and a definition's score is the rank
that flows to it: the sum, over files referencing its name, of their rank times the link weight.

The equation is solved by "push" (Andersen, Chung & Lang 2006): each file holds a rank and a
residual, pushing a residual moves it into the rank and passes DAMPING times it along the links,
and we push until every residual is tiny. When an edit changes some files' links, only the rank
those files already passed on is taken back and resent along the new links, so a re-map after one
edit touches a handful of files, not the whole graph. Dangling mass (files referencing nothing
known) is dropped rather than spread: scores are relative, and spreading would touch every file.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Mapping, Set
from dataclasses import dataclass
from operator import itemgetter

from agent_cli.syntax import Definition, FileTags

DAMPING = 0.85
# Names defined in more files than this say nothing about which definition a reference means
# (__init__, get, run); following them would cost (referencing files) x (defining files) links.
MAX_DEFINERS = 25
# In these languages an unqualified call may be a method of the same class (Java's `parse(x)`
# inside a class means this.parse); in the others it can only be a top-level definition.
BARE_REACHES_MEMBERS = frozenset({"java", "c", "cpp", "ruby"})
# Push until no residual exceeds this fraction of a file's own restart mass. Ranks are then within
# about 1% of the exact solution: on the CPython stdlib and the gcloud SDK the top 200 definitions
# are the same as with 1e-5, in the same order, at half the cost of 1e-3.
PUSH_TOLERANCE = 1e-2
FOCUS_SHARE = 0.5  # the focus files share this part of the restart mass (when there are any)
# Tests reference much and are referenced by nothing: they rank files well, but their own
# definitions (test_x, fixtures) are rarely what a model needs from a map.
TEST_FILE_FACTOR = 0.3
SCAN_NAMES = 4  # an update touching more names than this builds the index of referencers
TOP_FILES = 30  # files whose every definition is a candidate, however little it is referenced

Link = tuple[str, str, float]  # (name, defining file, weight)


@dataclass(frozen=True)
class RankedDefinition:
    path: str
    definition: Definition
    score: float


@dataclass(frozen=True)
class _Names:
    """What the graph needs from one file's tags, computed once per version of the file."""

    top: frozenset[str]  # simple names of its top-level definitions
    all: frozenset[str]  # simple names of all its definitions ("parse" for "Parser.parse")
    reach_all: tuple[str, ...]  # names it references that may mean any definition
    reach_top: tuple[str, ...]  # names it references that can only mean a top-level definition
    by_name: Mapping[str, tuple[Definition, ...]]


def simple_name(name: str) -> str:
    return name.rpartition(".")[2]


def _names(tags: FileTags) -> _Names:
    by_name: dict[str, list[Definition]] = defaultdict(list)
    top: set[str] = set()
    for definition in tags.definitions:
        simple = simple_name(definition.name)
        by_name[simple].append(definition)
        if simple == definition.name:
            top.add(simple)
    members = set(tags.member_references)
    if tags.language in BARE_REACHES_MEMBERS:
        members.update(tags.bare_references)
    reach_top = tuple(name for name in tags.bare_references if name not in members)
    return _Names(
        frozenset(top),
        frozenset(by_name),
        tuple(members),
        reach_top,
        {name: tuple(defs) for name, defs in by_name.items()},
    )


def name_weight(name: str, definers: int, focus_names: Collection[str]) -> float:
    """How much a reference to `name` says about the files defining it (after aider's heuristics)."""
    weight = 1.0
    if name in focus_names:
        weight *= 10
    if len(name) >= 8 and ("_" in name.strip("_") or (not name.isupper() and not name.islower())):
        weight *= 3  # long compound names are specific: a reference to one means that definition
    if name.startswith("_"):
        weight *= 0.1
    if definers > 5:
        weight *= 0.1
    return weight


class ReferenceGraph:
    """The reference graph of a set of files for one focus; update() it with each new scan."""

    def __init__(self, focus_files: Collection[str] = (), focus_names: Collection[str] = ()):
        self.focus_files = frozenset(focus_files)
        self.focus_names = frozenset(focus_names)
        self.tags: dict[str, FileTags] = {}
        self.rank: dict[str, float] = {}
        self._names: dict[str, _Names] = {}
        self._definers_all: dict[str, set[str]] = defaultdict(set)
        self._definers_top: dict[str, set[str]] = defaultdict(set)
        self._referencers: dict[str, set[str]] | None = None  # see _referencers_index()
        self._links: dict[str, list[Link]] = {}
        self._residual: dict[str, float] = defaultdict(float)
        self._flow: dict[tuple[str, str], float] = defaultdict(float)  # (file, name) -> score
        self._focus_restart = 1.0
        self.relinked = 0  # files whose links were recomputed by the last update (for tests)

    # -- keeping up with the files --

    def update(self, files: Mapping[str, FileTags]) -> None:
        """Bring the graph to `files`; tags objects that did not change are recognised by identity."""
        changed = [path for path, tags in files.items() if self.tags.get(path) is not tags]
        removed = [path for path in self.tags if path not in files]
        first_build = not self.tags
        if first_build:
            self._focus_restart = self._focus_restart_for(files)
        touched: set[str] = set()  # names whose definers changed
        for path in removed:
            touched |= self._forget(path)
        for path in changed:
            touched |= self._learn(path, files[path])
        dirty = set(changed)
        if not first_build and touched:
            # Files referencing a name whose definers changed must re-link (a file that stopped
            # referencing one changed itself, so it is in `changed` already).
            dirty |= self._files_referencing(touched)
        dirty -= set(removed)
        queue: deque[str] = deque()
        for path in removed:
            self._relink(path, [], queue)
            self.rank.pop(path, None)
            self._residual.pop(path, None)
        for path in dirty:
            self._relink(path, self._compute_links(path), queue)
        for path in changed:
            if path not in self.rank:
                self.rank[path] = 0.0
                self._residual[path] += (1 - DAMPING) * self._restart(path)
                queue.append(path)
        self.relinked = len(dirty)
        self._settle(queue)

    def refocus(self, focus_files: Collection[str], focus_names: Collection[str]) -> None:
        """Move the focus (another task, or the files the ledger shows edited). Only the restart
        weights of files entering or leaving the focus change, and the links of the files that
        reference names entering or leaving it: the rest of the ranking is kept."""
        focus_files, focus_names = frozenset(focus_files), frozenset(focus_names)
        if (focus_files, focus_names) == (self.focus_files, self.focus_names):
            return
        before = {path: self._restart(path) for path in self.tags if self._is_focus(path)}
        moved_names = self.focus_names ^ focus_names
        self.focus_files, self.focus_names = focus_files, focus_names
        self._focus_restart = self._focus_restart_for(self.tags)
        after = {path: self._restart(path) for path in self.tags if self._is_focus(path)}
        queue: deque[str] = deque()
        for path in before.keys() | after.keys():
            delta = after.get(path, 1.0) - before.get(path, 1.0)
            if delta:
                self._residual[path] += (1 - DAMPING) * delta
                queue.append(path)
        for path in self._files_referencing(moved_names) if moved_names else ():
            self._relink(path, self._compute_links(path), queue)
        self._settle(queue)

    def _focus_restart_for(self, paths: Iterable[str]) -> float:
        """The restart weight of each focus file: together they get FOCUS_SHARE of the total."""
        paths = list(paths)
        focused = sum(1 for path in paths if self._is_focus(path))
        return FOCUS_SHARE * len(paths) / focused if focused else 1.0

    def _is_focus(self, path: str) -> bool:
        """A file the task names, or one named like an identifier it mentions (parser.py for Parser
        is not matched, parser.py for "parser" is)."""
        if path in self.focus_files:
            return True
        name = path.rpartition("/")[2]
        return name.partition(".")[0] in self.focus_names

    def _restart(self, path: str) -> float:
        return self._focus_restart if self._is_focus(path) else 1.0

    def _learn(self, path: str, tags: FileTags) -> set[str]:
        """Index a new version of a file; return the names whose definers changed."""
        old = self._names.get(path)
        new = self._names[path] = _names(tags)
        self.tags[path] = tags
        if self._referencers is not None:
            if old is not None:
                for name in (*old.reach_all, *old.reach_top):
                    self._referencers[name].discard(path)
            for name in (*new.reach_all, *new.reach_top):
                self._referencers[name].add(path)
        old_top, old_all = (old.top, old.all) if old else (frozenset(), frozenset())
        for name in old_top - new.top:
            self._definers_top[name].discard(path)
        for name in new.top - old_top:
            self._definers_top[name].add(path)
        for name in old_all - new.all:
            self._definers_all[name].discard(path)
        for name in new.all - old_all:
            self._definers_all[name].add(path)
        return set((old_top ^ new.top) | (old_all ^ new.all))

    def _forget(self, path: str) -> set[str]:
        old = self._names.pop(path)
        del self.tags[path]
        if self._referencers is not None:
            for name in (*old.reach_all, *old.reach_top):
                self._referencers[name].discard(path)
        for name in old.top:
            self._definers_top[name].discard(path)
        for name in old.all:
            self._definers_all[name].discard(path)
        return set(old.all)

    def _files_referencing(self, names: Set[str]) -> set[str]:
        """The files referencing any of `names`. A typical edit touches a name or two: scanning
        every file's references for those costs less than building the index, which a one-shot
        map (a new process) would never use again."""
        if self._referencers is None and len(names) <= SCAN_NAMES:
            return {
                path
                for path, known in self._names.items()
                if any(name in known.reach_all or name in known.reach_top for name in names)
            }
        referencers = self._referencers_index()
        return set().union(*(referencers.get(name, ()) for name in names))

    def _referencers_index(self) -> dict[str, set[str]]:
        """Files by the names they reference, kept up to date once built."""
        if self._referencers is None:
            self._referencers = defaultdict(set)
            for path, names in self._names.items():
                for name in (*names.reach_all, *names.reach_top):
                    self._referencers[name].add(path)
        return self._referencers

    def _compute_links(self, path: str) -> list[Link]:
        names = self._names[path]
        raw: list[Link] = []
        for reach, definers in ((names.reach_all, self._definers_all), (names.reach_top, self._definers_top)):
            for name in reach:
                targets = definers.get(name)
                if not targets:
                    continue
                count = len(self._definers_all[name])
                if count > MAX_DEFINERS:
                    continue
                others = len(targets) - (path in targets)
                if others == 0:
                    continue
                weight = name_weight(name, count, self.focus_names) / others
                raw.extend((name, target, weight) for target in targets if target != path)
        total = sum(link[2] for link in raw)
        return [(name, target, weight / total) for name, target, weight in raw]

    def _relink(self, path: str, links: list[Link], queue: deque[str]) -> None:
        """Take back what `path` passed along its old links and send it along the new ones."""
        rank = self.rank.get(path, 0.0)
        residual, flow = self._residual, self._flow
        if rank:
            for name, target, weight in self._links.get(path, ()):
                flow[target, name] -= rank * weight
                residual[target] -= DAMPING * rank * weight
                queue.append(target)
            for name, target, weight in links:
                flow[target, name] += rank * weight
                residual[target] += DAMPING * rank * weight
                queue.append(target)
        if links:
            self._links[path] = links
        else:
            self._links.pop(path, None)

    def _settle(self, queue: deque[str]) -> None:
        """Push residuals until none is bigger than the tolerance."""
        rank, residual, flow, links = self.rank, self._residual, self._flow, self._links
        epsilon = PUSH_TOLERANCE * (1 - DAMPING)
        queued = set(queue)
        while queue:
            path = queue.popleft()
            queued.discard(path)
            delta = residual.get(path, 0.0)
            if -epsilon < delta < epsilon or path not in rank:
                continue
            residual[path] = 0.0
            rank[path] += delta
            for name, target, weight in links.get(path, ()):
                amount = delta * weight
                flow[target, name] += amount
                pushed = residual[target] = residual[target] + DAMPING * amount
                if (pushed >= epsilon or pushed <= -epsilon) and target not in queued:
                    queued.add(target)
                    queue.append(target)

    # -- reading the ranking --

    def ranked(self, limit: int | None = None) -> list[RankedDefinition]:
        """Definitions best first: those of the `limit` best (file, name) pairs, or all of them."""
        names_of, flow, rank = self._names, self._flow, self.rank
        if limit is None:
            pairs: Iterable[tuple[str, str]] = (
                (path, name) for path in names_of for name in names_of[path].by_name
            )
        else:
            # The best by flow, the names of the best files (which order what nothing references),
            # and whatever the task names.
            top_flow = heapq.nlargest(limit, flow.items(), key=itemgetter(1))
            top_files = heapq.nlargest(TOP_FILES, rank.items(), key=itemgetter(1))
            focused = [(path, name) for name in self.focus_names for path in self._definers_all.get(name, ())]
            pairs = dict.fromkeys(
                [key for key, _ in top_flow]
                + focused
                + [
                    (path, name)
                    for path, _ in top_files
                    if path in names_of
                    for name in names_of[path].by_name
                ]
            )
        scored: list[tuple[float, str, str]] = []
        for path, name in pairs:
            names = names_of.get(path)
            if names is None or name not in names.by_name:
                continue  # a file gone since, or a name it no longer defines
            scored.append((self._score(path, name), path, name))
        if limit is not None:
            scored = heapq.nlargest(limit, scored)
        ranked = [
            RankedDefinition(path, definition, score * 10 if definition.name in self.focus_names else score)
            for score, path, name in scored
            for definition in names_of[path].by_name[name]
        ]
        ranked.sort(key=lambda r: (-r.score, r.path, r.definition.line))
        return ranked

    def _score(self, path: str, name: str) -> float:
        score = self._flow.get((path, name), 0.0)
        count = len(self.tags[path].definitions)
        if self._is_focus(path):
            # The task names this file: its outline matters as much as what it uses.
            score += self.rank.get(path, 0.0) / math.sqrt(count)
        else:
            # A small share of the file's own rank orders the definitions nothing references.
            score += self.rank.get(path, 0.0) / (10 * count)
            if is_test_file(path):
                score *= TEST_FILE_FACTOR
        if name in self.focus_names:
            # Named by the task: shown even if nothing references it yet (it may be brand new).
            score = 10 * (score + self.rank.get(path, 0.0))
        return score


_TEST_FILE = re.compile(
    r"(^|/)(tests?|testing|spec|__tests__)/|(^|/)test_[^/]*$|_test\.\w+$|\.(spec|test)\.\w+$"
)


def is_test_file(path: str) -> bool:
    return _TEST_FILE.search(path) is not None
