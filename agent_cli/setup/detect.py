"""Which commands prepare a repository's environment: configured, or detected from its files.

Nothing runs to detect them: the repository's manifests are read. Each ecosystem found adds its
commands (Python first, see python.py; then Node, Go, Rust), and the plan says why each file was
chosen or left out, so a wrong guess is easy to spot and override with `setup` (`--setup CMD`,
repeatable; `--no-setup` for none). A detected plan carries narrower ones to fall back to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent_cli.setup.inputs import read_input, setup_inputs
from agent_cli.setup.plan import Choice, Part, SetupPlan
from agent_cli.setup.python import python_part, requirement_candidates

__all__ = ["TOOLCHAIN_PRELUDE", "Choice", "SetupPlan", "found_manifests", "plan_setup"]

# Files whose contents decide what setup installs: a change to any of them makes a new environment.
MANIFEST_NAMES = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "tox.ini",
    "noxfile.py",
    "uv.lock",
    "poetry.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "go.mod",
    "go.sum",
    "go.work",
    "Cargo.toml",
    "Cargo.lock",
)
# Test commands that need Node: a Python project's package.json gets a toolchain only for them.
NODE_WORDS = frozenset(
    {"npm", "npx", "yarn", "pnpm", "node", "bun", "jest", "vitest", "mocha", "grunt", "gulp"}
)
# Shell functions setup commands may call. actsmith_need installs a missing toolchain from the
# image's Debian packages (setup runs as root, like a Dockerfile RUN step), or says what to do
# instead. actsmith_without_vcs prints requirement files flattened (includes inlined, constraint
# paths made absolute) without the lines that need a VCS host or credentials: a fallback's input.
TOOLCHAIN_PRELUDE = r"""actsmith_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "actsmith: $1 is not in the sandbox image and apt-get is not there to install it: use --image with $1 installed, or set setup" >&2
    return 127
  fi
  echo "actsmith: installing $2 (Debian) for $1" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $2 >/dev/null
}
actsmith_without_vcs() {
  python3 - "$@" <<'ACTSMITH_PY'
import os, re, sys
ACCESS = re.compile(r"(^|[\s@=])(git|hg|svn|bzr)\+|\$\{?\w+|://[^/\s]*@")
OPTION = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?=[^\s-]))(\S+)")
seen = set()
def emit(path):
    path = os.path.normpath(path)
    if path in seen:
        return
    seen.add(path)
    for line in open(path, encoding="utf-8", errors="replace"):
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        option = OPTION.match(line)
        if option and option.group(1) in ("-r", "--requirement"):
            emit(os.path.join(os.path.dirname(path), option.group(2)))
        elif option:
            print("-c", os.path.abspath(os.path.join(os.path.dirname(path), option.group(2))))
        elif line and not ACCESS.search(line):
            print(line)
        elif line:
            print(f"actsmith: left out: {line}", file=sys.stderr)
for name in sys.argv[1:]:
    emit(name)
ACTSMITH_PY
}
"""


def plan_setup(configured: tuple[str, ...] | None, root: Path, test_command: str | None = None) -> SetupPlan:
    """The configured commands (an empty list: no setup), or the ones detected from `root`; the
    test command (configured or detected) says whether a Python project needs its Node tooling."""
    manifests = tuple(setup_inputs(root, found_manifests(root)))
    if configured is not None:
        reason = "configured (setup)" if configured else "turned off (--no-setup or setup = [])"
        node = (root / "package.json").is_file() and bool(configured)
        return SetupPlan(configured, reason, manifests, ("node_modules",) if node else ())
    python = python_part(root)
    parts = [
        part
        for part in (python, _node(root, python is not None, test_command), _go(root), _rust(root))
        if part
    ]
    choices = tuple(choice for part in parts for choice in part.choices)
    parts = [part for part in parts if part.commands]
    if not parts:
        return SetupPlan((), "nothing to install: no dependency manifest found", manifests, choices=choices)
    plan = SetupPlan(
        tuple(command for part in parts for command in part.commands),
        "detected: " + "; ".join(part.reason for part in parts),
        manifests,
        tuple(layer for part in parts for layer in part.layers),
        detected=True,
        choices=choices,
    )
    fallbacks = []
    for commands, what in python.narrower if python else ():
        others = tuple(command for part in parts if part is not python for command in part.commands)
        fallbacks.append(plan.narrowed(commands + others, what))
    return SetupPlan(plan.commands, plan.reason, manifests, plan.layers, True, choices, tuple(fallbacks))


def found_manifests(root: Path) -> list[str]:
    names = [name for name in MANIFEST_NAMES if (root / name).is_file()]
    return names + [name for name in requirement_candidates(root) if name not in names]


def needs_node(test_command: str | None) -> bool:
    return bool(test_command) and bool(NODE_WORDS & set(re.split(r"[\s/;&|()]+", test_command or "")))


# ------------------------------------------------------------------------------------ Node, Go, Rust


def _node(root: Path, python: bool, test_command: str | None) -> Part | None:
    package = root / "package.json"
    if not package.is_file():
        return None
    try:
        data = json.loads(read_input(root, "package.json").decode(errors="replace"))
    except ValueError:
        data = {}
    if not isinstance(data, dict) or not (data.get("dependencies") or data.get("devDependencies")):
        return None
    if python and not needs_node(test_command):
        why = (
            f"the tests (`{test_command}`) do not need Node" if test_command else "no test command needs Node"
        )
        return Part((), "", choices=(Choice("package.json", False, f"{why}: auxiliary tooling"),))
    need = "actsmith_need npm 'nodejs npm'"
    workspaces = data.get("workspaces")
    also = ", with its workspaces" if workspaces or (root / "pnpm-workspace.yaml").is_file() else ""
    taken = (Choice("package.json", True, "the tests run with Node" if python else "a Node project"),)
    if (root / "pnpm-lock.yaml").is_file():
        commands = (need, "npm install -g pnpm", "pnpm install --frozen-lockfile")
        return Part(commands, f"Node: pnpm-lock.yaml{also}", ("node_modules",), taken)
    if (root / "yarn.lock").is_file():
        commands = (need, "npm install -g yarn", "yarn install --frozen-lockfile")
        return Part(commands, f"Node: yarn.lock{also}", ("node_modules",), taken)
    for lock in ("package-lock.json", "npm-shrinkwrap.json"):
        if (root / lock).is_file():
            return Part((need, "npm ci"), f"Node: {lock}{also}", ("node_modules",), taken)
    return Part(
        (need, "npm install"), f"Node: package.json without a lock file{also}", ("node_modules",), taken
    )


def _go(root: Path) -> Part | None:
    if not (root / "go.mod").is_file():
        return None
    return Part(("actsmith_need go golang-go", "go mod download"), "Go: go.mod")


def _rust(root: Path) -> Part | None:
    if not (root / "Cargo.toml").is_file():
        return None
    return Part(("actsmith_need cargo cargo", "cargo fetch"), "Rust: Cargo.toml")
