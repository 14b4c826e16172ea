"""The outline: files in path order, each followed by the signatures of its chosen definitions,
indented under their enclosing class, fitted to a token budget."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from agent_cli.repomap.graph import RankedDefinition
from agent_cli.syntax import Definition, FileTags

# Tokens are estimated as characters / 4: an outline is mostly identifiers, punctuation and
# spaces, which the common BPE tokenizers (cl100k, o200k, Claude's) encode at 3.5 to 4.5 characters
# a token. Counting exactly would need each model's tokenizer and cost more than the whole map.
CHARS_PER_TOKEN = 4
INDENT = "  "

Parents = dict[Definition, Definition | None]


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def parents_of(definitions: Sequence[Definition]) -> Parents:
    """Each definition's innermost enclosing definition in the same file, by line range."""
    parents: Parents = {}
    stack: list[Definition] = []
    for definition in sorted(definitions, key=lambda d: (d.line, -d.end_line)):
        while stack and not (stack[-1].line <= definition.line and definition.end_line <= stack[-1].end_line):
            stack.pop()
        parents[definition] = stack[-1] if stack else None
        stack.append(definition)
    return parents


def _depth(definition: Definition, parents: Parents) -> int:
    depth = 0
    parent = parents.get(definition)
    while parent is not None:
        depth += 1
        parent = parents.get(parent)
    return depth


def _line(definition: Definition, depth: int) -> str:
    return f"{INDENT * (depth + 1)}{definition.signature}\n"


def _header(path: str) -> str:
    return f"{path}:\n"


def format_outline(selected: Mapping[str, Iterable[Definition]], files: Mapping[str, FileTags]) -> str:
    """The outline of the selected definitions of each file. A member always comes with its
    enclosing definitions, so a method is never shown without its class."""
    parts: list[str] = []
    for path in sorted(selected):
        parents = parents_of(files[path].definitions)
        chosen = set(selected[path])
        for definition in list(chosen):
            parent = parents.get(definition)
            while parent is not None:
                chosen.add(parent)
                parent = parents.get(parent)
        parts.append(_header(path))
        parts.extend(
            _line(d, _depth(d, parents)) for d in sorted(chosen, key=lambda d: (d.line, -d.end_line))
        )
    return "".join(parts)


def fit_outline(
    ranked: Iterable[RankedDefinition], files: Mapping[str, FileTags], max_chars: int
) -> tuple[str, bool]:
    """The outline of the best-ranked definitions that fits in `max_chars`, and whether the budget
    was filled. Sizes are counted while choosing (a file's header comes with its first definition,
    a method brings its class), so the outline is rendered once."""
    selected: dict[str, set[Definition]] = {}
    shown: dict[str, set[tuple[Definition | None, str]]] = {}  # (parent, signature) already shown
    parents_by_file: dict[str, Parents] = {}
    used = 0
    for item in ranked:
        if max_chars - used < 20:
            return format_outline(selected, files), True
        path = item.path
        parents = parents_by_file.get(path)
        if parents is None:
            parents = parents_by_file[path] = parents_of(files[path].definitions)
        chosen = selected.get(path, set())
        seen = shown.get(path, set())
        if (parents.get(item.definition), item.definition.signature) in seen:
            continue  # a property's getter and setter read the same in an outline
        cost = 0 if path in selected else len(_header(path))
        bring: list[Definition] = []
        node: Definition | None = item.definition
        while node is not None and node not in chosen:
            bring.append(node)
            cost += len(_line(node, _depth(node, parents)))
            node = parents.get(node)
        if not bring or used + cost > max_chars:
            continue  # a smaller definition further down may still fit
        used += cost
        selected.setdefault(path, set()).update(bring)
        shown.setdefault(path, set()).update((parents.get(d), d.signature) for d in bring)
    return format_outline(selected, files), False
