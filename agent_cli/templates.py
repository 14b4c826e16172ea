"""Render the Jinja2 templates in prompts/. Prompt text lives there, never in Python strings."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from agent_cli.resources import resource_dir

HELPERS_SOURCE = Path(__file__).resolve().parent / "sandbox" / "kernel" / "helpers.py"


@dataclass(frozen=True)
class HelperDoc:
    signature: str
    doc: str


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("prompts"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **context: Any) -> str:
    """Render prompts/<name>.md; a missing variable is an error, not an empty string."""
    return _environment().get_template(f"{name}.md").render(**context).strip() + "\n"


@cache
def helper_docs() -> tuple[HelperDoc, ...]:
    """Signatures and docstrings of the kernel helpers, read from their source so the prompt never drifts."""
    tree = ast.parse(HELPERS_SOURCE.read_text())
    exported: list[str] = []
    functions: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported = list(ast.literal_eval(node.value))
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node
    return tuple(
        HelperDoc(f"{name}({ast.unparse(functions[name].args)})", ast.get_docstring(functions[name]) or "")
        for name in exported
    )
