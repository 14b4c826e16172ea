"""Tree-sitter analysis of one source file: its definitions, the names it references, its syntax errors.

Shared by the repo map (definitions and references build the ranking graph) and the edit ledger
(which definitions an edit touched, whether a changed file still parses). One parser and one compiled
query per language are cached at module level, so analysing a file costs the parse and one query run.

Each language has one query. Its captures follow a small convention:
  @def.<kind>  the definition node (its range gives the lines and the body hash)
  @name        the definition's name (a Go method's name is qualified by its @receiver type)
  @scope       a node that qualifies the definitions inside it but is not one itself (a Rust impl block)
  @ref         a name the file references unqualified (a call, a type, a base class, an import)
  @ref.member  a name it references as a member (x.parse(), Foo::new, p->next)
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import re
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
}
FILENAMES: dict[str, str] = {"Rakefile": "ruby", "Gemfile": "ruby"}

# Kinds that qualify the definitions nested in them ("Parser.parse"); a definition nested in a function
# is a local helper, not part of the file's outline, and is left out.
CONTAINER_KINDS = frozenset({"class", "interface", "struct", "enum", "trait", "module", "union", "namespace"})
FUNCTION_KINDS = frozenset({"function", "method"})
MAX_PROBLEMS = 5
# A call to len() or list() refers to no definition in the repository, whatever it defines.
PYTHON_BUILTINS = frozenset(name for name in dir(builtins) if not name.startswith("_"))
# Likewise `s.startswith(...)` or `items.append(...)` nearly always calls a method of a built-in
# type, not the one class in the repository that happens to define `append`: these member names
# are left out of member_references (they stay in references).
_JS_COMMON = (
    "push pop shift unshift slice splice map filter reduce forEach find findIndex includes indexOf "
    "join split concat keys values entries length toString then catch finally resolve reject "
    "trim replace startsWith endsWith toLowerCase toUpperCase test exec log error warn apply call bind "
    "get set has delete add clear size sort reverse some every assign freeze stringify parse"
)
_JAVA_COMMON = (
    "equals hashCode toString get put add remove size isEmpty contains length append "
    "getClass valueOf stream map filter collect forEach iterator next hasNext close println"
)
_RUST_COMMON = (
    "unwrap expect clone iter into_iter map collect len push pop insert remove get is_empty "
    "to_string as_str as_ref into from ok err and_then unwrap_or unwrap_or_else is_some is_none "
    "is_ok is_err borrow borrow_mut lock fmt eq cmp partial_cmp hash new default"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


COMMON_MEMBERS: dict[str, frozenset[str]] = {
    "python": frozenset(
        name
        for kind in (str, bytes, list, dict, set, tuple, int, float, object, bytearray)
        for name in dir(kind)
    ),
    "javascript": _words(_JS_COMMON),
    "typescript": _words(_JS_COMMON),
    "tsx": _words(_JS_COMMON),
    "java": _words(_JAVA_COMMON),
    "rust": _words(_RUST_COMMON),
}
MAX_SIGNATURE = 200


@dataclass(frozen=True)
class Definition:
    name: str  # qualified with enclosing classes/impls/modules for members: "Parser.parse"
    kind: str  # function, method, class, interface, struct, enum, trait, type, module, union, namespace
    line: int  # 1-based first line (decorators included)
    end_line: int  # 1-based last line
    signature: str  # the declaration header, whitespace collapsed, no body
    body_hash: str  # short hash of the definition's full source text: a changed body changes it


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 1-based
    column: int  # 1-based, in bytes
    message: str  # "missing ')'" or "unexpected 'foo('"


@dataclass(frozen=True)
class FileTags:
    language: str
    definitions: tuple[Definition, ...]
    references: tuple[str, ...]  # distinct identifier names the file references, in order of appearance
    problems: tuple[SyntaxProblem, ...]  # empty when the file parses cleanly
    # The same names split by how they are used, for the repo map: an unqualified `parse(x)` in
    # Python cannot mean a method, `x.parse()` can. Python builtins are left out of the bare ones.
    bare_references: tuple[str, ...] = ()
    member_references: tuple[str, ...] = ()


def language_for(path: str) -> str | None:
    """The grammar for a file, by extension (or a few well-known file names); None when we have none."""
    name = path.replace("\\", "/").rpartition("/")[2]  # plain string work: the map asks for every file
    dot = name.rfind(".")
    suffix = name[dot:].lower() if dot > 0 else ""
    return EXTENSIONS.get(suffix) or FILENAMES.get(name)


def analyse(path: str, source: bytes, *, problems: bool = True) -> FileTags | None:
    """Definitions, references and syntax problems of one file; None when no grammar covers it.

    `problems=False` skips the syntax check (the repo map does not need it): `problems` is then empty.
    """
    language = language_for(path)
    if language is None:
        return None
    parser, query = _tools(language)
    tree = parser.parse(source)
    root = tree.root_node
    from tree_sitter import QueryCursor

    definitions, bare, members = _collect(QueryCursor(query).matches(root), source, language)
    references = tuple(dict.fromkeys((*bare, *members)))
    found: tuple[SyntaxProblem, ...] = ()
    if problems:
        found = tuple(_problems(root, source)) if root.has_error else ()
        if not found and language == "python":
            found = _indentation_problems(path, source)
    if language == "python":
        bare = tuple(name for name in bare if name not in PYTHON_BUILTINS)
    common = COMMON_MEMBERS.get(language)
    if common:
        members = tuple(name for name in members if name not in common)
    return FileTags(language, definitions, references, found, bare, members)


# --- parsers and queries ----------------------------------------------------------------------------

# Parsers keep state between parses: one per thread, so callers may analyse files from a thread pool.
_local = threading.local()


def _tools(language: str) -> tuple[Any, Any]:
    parsers = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(language)
    if parser is None:
        from tree_sitter import Parser

        parser = parsers[language] = Parser(_language(language))
    return parser, _query(language)


@cache
def _language(language: str) -> Any:
    from tree_sitter_language_pack import get_language

    return get_language(language)


@cache
def _query(language: str) -> Any:
    from tree_sitter import Query

    return Query(_language(language), QUERIES[language])


_C_COMMON = """
(function_definition declarator: (_) @declarator) @def.function
(declaration declarator: (function_declarator declarator: (_) @name)) @def.function
(declaration declarator: (pointer_declarator declarator: (function_declarator declarator: (_) @name))) @def.function
(struct_specifier name: (type_identifier) @name body: (_)) @def.struct
(union_specifier name: (type_identifier) @name body: (_)) @def.union
(enum_specifier name: (type_identifier) @name body: (_)) @def.enum
(type_definition declarator: (type_identifier) @name) @def.type
(call_expression function: (identifier) @ref)
(field_expression field: (field_identifier) @ref.member)
(type_identifier) @ref
"""

QUERIES: dict[str, str] = {
    "python": """
(function_definition name: (identifier) @name) @def.function
(class_definition name: (identifier) @name) @def.class
(call function: (identifier) @ref)
(attribute attribute: (identifier) @ref.member)
(class_definition superclasses: (argument_list (identifier) @ref))
(type (identifier) @ref)
(decorator (identifier) @ref)
(import_from_statement name: (dotted_name (identifier) @ref))
(import_from_statement name: (aliased_import name: (dotted_name (identifier) @ref)))
""",
    "javascript": """
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(class_declaration name: (identifier) @name) @def.class
(method_definition name: (_) @name) @def.method
(lexical_declaration (variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)])) @def.function
(variable_declaration (variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)])) @def.function
(call_expression function: (identifier) @ref)
(new_expression constructor: (identifier) @ref)
(member_expression property: (property_identifier) @ref.member)
(class_heritage (identifier) @ref)
""",
    "go": """
(function_declaration name: (identifier) @name) @def.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: [(type_identifier) @receiver
                                                          (pointer_type (type_identifier) @receiver)
                                                          (generic_type type: (type_identifier) @receiver)
                                                          (pointer_type (generic_type type: (type_identifier) @receiver))]))
  name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (struct_type)) @def.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(type_spec name: (type_identifier) @name type: [(type_identifier) (qualified_type) (generic_type) (function_type)
                                                (map_type) (slice_type) (pointer_type) (channel_type)
                                                (array_type)]) @def.type
(call_expression function: (identifier) @ref)
(selector_expression field: (field_identifier) @ref.member)
(type_identifier) @ref
""",
    "rust": """
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(enum_item name: (type_identifier) @name) @def.enum
(union_item name: (type_identifier) @name) @def.union
(trait_item name: (type_identifier) @name) @def.trait
(type_item name: (type_identifier) @name) @def.type
(mod_item name: (identifier) @name body: (_)) @def.module
(macro_definition name: (identifier) @name) @def.function
(impl_item type: [(type_identifier) @name (generic_type type: (type_identifier) @name)
                  (scoped_type_identifier name: (type_identifier) @name)]) @scope
(call_expression function: (identifier) @ref)
(scoped_identifier name: (identifier) @ref.member)
(field_expression field: (field_identifier) @ref.member)
(macro_invocation macro: (identifier) @ref)
(type_identifier) @ref
""",
    "java": """
(class_declaration name: (identifier) @name) @def.class
(record_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(annotation_type_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.enum
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
(method_invocation object: (_) name: (identifier) @ref.member)
(method_invocation !object name: (identifier) @ref)
(field_access field: (identifier) @ref.member)
(type_identifier) @ref
""",
    "c": _C_COMMON,
    "cpp": _C_COMMON
    + """
(field_declaration declarator: (function_declarator declarator: (_) @name)) @def.method
(class_specifier name: (type_identifier) @name body: (_)) @def.class
(namespace_definition name: (namespace_identifier) @name body: (_)) @def.namespace
(alias_declaration name: (type_identifier) @name) @def.type
(qualified_identifier name: (identifier) @ref.member)
(namespace_identifier) @ref
""",
    "ruby": """
(method name: (_) @name) @def.method
(singleton_method name: (_) @name) @def.method
(class name: [(constant) (scope_resolution)] @name) @def.class
(module name: [(constant) (scope_resolution)] @name) @def.module
(call receiver: (_) method: (identifier) @ref.member)
(call !receiver method: (identifier) @ref)
(constant) @ref
""",
}
QUERIES["typescript"] = (
    (
        QUERIES["javascript"]
        .replace("(class_declaration name: (identifier)", "(class_declaration name: (type_identifier)")
        .replace("(class_heritage (identifier) @ref)", "(extends_clause value: (identifier) @ref)")
    )
    + """
(abstract_class_declaration name: (type_identifier) @name) @def.class
(interface_declaration name: (type_identifier) @name) @def.interface
(type_alias_declaration name: (type_identifier) @name) @def.type
(enum_declaration name: (identifier) @name) @def.enum
(internal_module name: (_) @name) @def.namespace
(abstract_method_signature name: (_) @name) @def.method
(function_signature name: (identifier) @name) @def.function
(type_identifier) @ref
"""
)
QUERIES["tsx"] = QUERIES["typescript"]


# --- turning matches into definitions ----------------------------------------------------------------


@dataclass
class _Candidate:
    node: Any  # the definition's node
    start: int  # byte range, decorators included
    end: int
    line: int  # 1-based first line, decorators included
    kind: str
    name: str
    is_scope: bool  # qualifies what it contains but is not itself a definition


def _collect(
    matches: list[tuple[int, dict[str, list[Any]]]], source: bytes, language: str
) -> tuple[tuple[Definition, ...], tuple[str, ...], tuple[str, ...]]:
    candidates: list[_Candidate] = []
    bare: dict[str, None] = {}  # ordered sets
    members: dict[str, None] = {}
    for _, captures in matches:
        refs = captures.get("ref")
        if refs is not None:
            for node in refs:
                bare[source[node.start_byte : node.end_byte].decode("utf-8", "replace")] = None
            continue
        refs = captures.get("ref.member")
        if refs is not None:
            for node in refs:
                members[source[node.start_byte : node.end_byte].decode("utf-8", "replace")] = None
            continue
        candidate = _candidate(captures, source, language)
        if candidate is not None:
            candidates.append(candidate)
    return _qualify(candidates, source, language), tuple(bare), tuple(members)


def _candidate(captures: dict[str, list[Any]], source: bytes, language: str) -> _Candidate | None:
    for key, nodes in captures.items():
        if key.startswith("def.") or key == "scope":
            node = nodes[0]
            kind = key[4:] if key != "scope" else "scope"
            break
    else:
        return None
    name_node = _name_node(captures)
    if name_node is None:
        return None
    name = _text(source, name_node)
    if "::" in name:  # C++ out-of-line member: void Shape::area() {...}
        name = name.replace("::", ".")
        kind = "method" if kind == "function" else kind
    if "receiver" in captures:
        name = f"{_text(source, captures['receiver'][0])}.{name}"
    outer = node
    parent = node.parent
    if parent is not None and parent.type == "decorated_definition":  # Python decorators belong to it
        outer = parent
    line = outer.start_point[0] + 1
    return _Candidate(node, outer.start_byte, node.end_byte, line, kind, name, kind == "scope")


def _name_node(captures: dict[str, list[Any]]) -> Any | None:
    if "name" in captures:
        return captures["name"][0]
    declarator = captures.get("declarator", [None])[0]
    # C/C++ wrap a function's name in pointer, reference and function declarators: unwrap to the name.
    while declarator is not None and declarator.type.endswith("declarator"):
        declarator = declarator.child_by_field_name("declarator") or _first_named(declarator)
    return declarator


def _first_named(node: Any) -> Any | None:
    for child in node.named_children:
        if child.type not in {"type_qualifier", "ms_pointer_modifier", "attribute_specifier"}:
            return child
    return None


def _qualify(candidates: list[_Candidate], source: bytes, language: str) -> tuple[Definition, ...]:
    """Name members after their containers ("Parser.parse"); drop definitions local to a function."""
    candidates.sort(key=lambda c: (c.start, -c.end))
    stack: list[_Candidate] = []
    definitions: list[Definition] = []
    seen: set[tuple[int, int]] = set()
    for candidate in candidates:
        if (candidate.start, candidate.end) in seen:  # two patterns matched the same node
            continue
        seen.add((candidate.start, candidate.end))
        while stack and stack[-1].end <= candidate.start:
            stack.pop()
        stack.append(candidate)
        enclosing = stack[:-1]
        if any(c.kind in FUNCTION_KINDS for c in enclosing) or candidate.is_scope:
            continue
        kind = candidate.kind
        if kind == "function" and enclosing and enclosing[-1].kind in CONTAINER_KINDS | {"scope"}:
            kind = "method"
        name = ".".join([*(c.name for c in enclosing), candidate.name])
        definitions.append(_definition(candidate, name, kind, source, language))
    return tuple(definitions)


def _definition(candidate: _Candidate, name: str, kind: str, source: bytes, language: str) -> Definition:
    node = candidate.node
    text = source[candidate.start : candidate.end]
    return Definition(
        name=name,
        kind=kind,
        line=candidate.line,
        end_line=node.end_point[0] + 1,
        signature=_signature(node, source, language),
        body_hash=hashlib.blake2b(text, digest_size=6).hexdigest(),
    )


_WHITESPACE = re.compile(r"\s+")
_BRACED = re.compile(r"\{.*\}", re.DOTALL)
_AFTER_OPEN = re.compile(r"([(\[]) ")
_BEFORE_CLOSE = re.compile(r",? ([)\]])")


def _signature(node: Any, source: bytes, language: str) -> str:
    """The declaration without its body: up to the body if the grammar names one, else the text with
    any braced part elided, or its first line."""
    body = _body(node)
    if body is not None:
        header = source[node.start_byte : _header_end(node, body)].decode("utf-8", "replace")
    else:
        header = source[node.start_byte : node.end_byte].decode("utf-8", "replace")
        if "{" in header:
            header = _BRACED.sub("{…}", header)
        elif "\n" in header and language in {"ruby", "python"}:
            header = header.split("\n", 1)[0]
    if node.type == "type_spec":  # Go: the "type" keyword lives on the parent declaration
        header = "type " + header
    header = _WHITESPACE.sub(" ", header).strip()
    # Arguments that were one per line: "f( a, b, )" reads better as "f(a, b)".
    header = _AFTER_OPEN.sub(r"\1", _BEFORE_CLOSE.sub(r"\1", header))
    if len(header) > MAX_SIGNATURE:
        header = header[: MAX_SIGNATURE - 1] + "…"
    return header


def _header_end(node: Any, body: Any) -> int:
    """Where the header ends: before the body, and before comments that precede the body."""
    end = body.start_byte
    for child in reversed(node.children):
        if child.start_byte >= body.start_byte:
            continue
        if child.type != "comment":
            return min(end, child.end_byte)
    return end


def _body(node: Any) -> Any | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    if node.type in {"lexical_declaration", "variable_declaration"}:  # const f = () => {...}
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value")
            if value is not None:
                return value.child_by_field_name("body")
    if node.type == "type_spec":  # Go: type Foo struct {...}
        kind = node.child_by_field_name("type")
        if kind is not None and kind.type in {"struct_type", "interface_type"}:
            return next((c for c in kind.children if c.type in {"field_declaration_list", "{"}), None)
    return None


def _text(source: bytes, node: Any) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


# --- syntax problems ---------------------------------------------------------------------------------


def _problems(root: Any, source: bytes) -> list[SyntaxProblem]:
    """The first few ERROR and MISSING nodes, in source order; only subtrees that contain one are walked."""
    problems: list[SyntaxProblem] = []
    stack = [root]
    while stack and len(problems) < MAX_PROBLEMS:
        node = stack.pop()
        if node.is_missing:
            problems.append(_problem(node, f"missing '{node.type}'"))
        elif node.type == "ERROR":
            problems.append(_problem(node, f"unexpected {_snippet(source, node)}"))
        elif node.has_error:
            stack.extend(reversed(node.children))
    return problems


def _indentation_problems(path: str, source: bytes) -> tuple[SyntaxProblem, ...]:
    """tree-sitter's Python grammar accepts some inconsistent indentation that Python rejects (a
    common result of a botched edit), so ask the compiler. Only indentation errors are reported:
    other errors depend on the host Python's version (new syntax, Python 2 code), this one does not."""
    try:
        compile(source, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except IndentationError as error:  # TabError is one too
        message = (error.msg or "bad indentation").lower()
        return (SyntaxProblem(error.lineno or 1, error.offset or 1, message),)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()  # tree-sitter already had its say on everything else
    return ()


def _problem(node: Any, message: str) -> SyntaxProblem:
    row, column = node.start_point
    return SyntaxProblem(row + 1, column + 1, message)


def _snippet(source: bytes, node: Any) -> str:
    text = source[node.start_byte : node.end_byte].decode("utf-8", "replace").strip()
    first = text.split("\n", 1)[0]
    if len(first) > 30:
        first = first[:30] + "…"
    elif len(first) < len(text):
        first += "…"
    return repr(first) if first else "end of input"
