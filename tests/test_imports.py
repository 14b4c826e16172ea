"""The package's import structure: no cycle between its modules (lazy imports inside functions count:
they run too), container identity a leaf the sandbox and the setup both stand on, and chat a thin
driver of the Session that never reaches into the agent, the ledger or the checkpoints."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agent_cli"
KERNEL = PACKAGE / "sandbox" / "kernel"  # runs inside the sandbox, on its own


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if KERNEL not in path.parents}


def imported(path: Path, *, typing_only_too: bool) -> set[str]:
    """The package's modules `path` imports, wherever the import statement is (a function too);
    imports only for the type checker count when `typing_only_too`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and not typing_only_too:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("agent_cli"):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            source = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            if source.startswith("agent_cli"):
                for alias in node.names:
                    add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as the modules along it, or None."""
    done: set[str] = set()
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            cycle = walk(target)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = walk(module)
        if cycle:
            return cycle
    return None


def test_no_module_of_the_package_imports_itself_back_through_others():
    graph = {name: imported(path, typing_only_too=False) for name, path in MODULES.items()}
    assert "agent_cli.sandbox.identity" in graph["agent_cli.setup.environment"]  # the graph sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_a_cycle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_container_identity_is_a_leaf():
    assert imported(MODULES["agent_cli.sandbox.identity"], typing_only_too=True) == {"agent_cli.errors"}


@pytest.mark.parametrize(
    "module",
    [
        "agent_cli.sandbox.identity",
        "agent_cli.sandbox.docker_sandbox",
        "agent_cli.setup",
        "agent_cli.setup.environment",
    ],
)
def test_the_sandbox_and_the_setup_each_import_alone(module):
    """Each imported first, in a fresh interpreter (a cycle breaks whichever comes first); the
    identity module brings in neither the sandbox nor the setup."""
    script = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.startswith('agent_cli.')))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if module == "agent_cli.sandbox.identity":
        loaded = ast.literal_eval(done.stdout.strip())
        assert not [m for m in loaded if m.startswith(("agent_cli.setup", "agent_cli.sandbox.docker"))]


FORBIDDEN_TO_CHAT = {"agent_cli.agent", "agent_cli.ledger", "agent_cli.checkpoints"}


def test_chat_drives_the_session_and_never_the_agent_ledger_or_checkpoints():
    chat = {name: path for name, path in MODULES.items() if name.startswith("agent_cli.chat")}
    assert "agent_cli.chat.commands" in chat
    reached = {name: imported(path, typing_only_too=True) & FORBIDDEN_TO_CHAT for name, path in chat.items()}
    assert {name: sorted(found) for name, found in reached.items() if found} == {}
