"""Which commands prepare a repository's environment: configured, or detected from its files.

Nothing runs to detect them: the repository's manifests are read. Each ecosystem found adds its
commands (Python first, then Node, Go, Rust), and the plan says why, so a wrong guess is easy to
spot and override with `setup` (`--setup CMD`, repeatable; `--no-setup` for none).
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agent_cli.safe_paths import read_text

# Files whose contents decide what setup installs: a change to any of them makes a new environment.
MANIFEST_NAMES = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "uv.lock",
    "poetry.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.mod",
    "go.sum",
    "go.work",
    "Cargo.toml",
    "Cargo.lock",
)
REQUIREMENTS = re.compile(r"^requirements[\w.-]*\.(txt|in)$")
TEST_EXTRAS = ("test", "tests", "testing")
DEV_EXTRAS = ("dev", "develop", "development")
# A shell function each setup command may call to install a missing toolchain from the image's
# Debian packages (setup runs as root, like a Dockerfile RUN step), or to say what to do instead.
TOOLCHAIN_PRELUDE = r"""actsmith_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "actsmith: $1 is not in the sandbox image and apt-get is not there to install it: use --image with $1 installed, or set setup" >&2
    return 127
  fi
  echo "actsmith: installing $2 (Debian) for $1" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $2 >/dev/null
}
"""


@dataclass(frozen=True)
class SetupPlan:
    """What prepares the environment, and why."""

    commands: tuple[str, ...]
    reason: str
    manifests: tuple[str, ...] = ()  # repository files whose contents key the environment image
    layers: tuple[str, ...] = ()  # folders setup fills inside the repository (node_modules)

    @property
    def empty(self) -> bool:
        return not self.commands


def plan_setup(configured: tuple[str, ...] | None, root: Path) -> SetupPlan:
    """The configured commands (an empty list: no setup), or the ones detected from `root`."""
    manifests = tuple(found_manifests(root))
    if configured is not None:
        reason = "configured (setup)" if configured else "turned off (--no-setup or setup = [])"
        node = (root / "package.json").is_file() and bool(configured)
        return SetupPlan(configured, reason, manifests, ("node_modules",) if node else ())
    commands: list[str] = []
    reasons: list[str] = []
    folders: list[str] = []
    for detect in (_python, _node, _go, _rust):
        found = detect(root)
        if found is not None:
            commands += found[0]
            reasons.append(found[1])
            folders += found[2]
    if not commands:
        return SetupPlan((), "nothing to install: no dependency manifest found", manifests)
    return SetupPlan(tuple(commands), "detected: " + "; ".join(reasons), manifests, tuple(folders))


def found_manifests(root: Path) -> list[str]:
    names = [name for name in MANIFEST_NAMES if (root / name).is_file()]
    names += sorted(p.name for p in root.glob("requirements*") if p.is_file() and REQUIREMENTS.match(p.name))
    folder = root / "requirements"
    if folder.is_dir():
        names += sorted(f"requirements/{p.name}" for p in folder.iterdir() if p.suffix in (".txt", ".in"))
    return names


# --------------------------------------------------------------------------------------------- Python

Detected = tuple[list[str], str, list[str]]  # commands, reason, layers


def _python(root: Path) -> Detected | None:
    pyproject = _toml(root, "pyproject.toml")
    installable = bool(pyproject.get("project") or pyproject.get("build-system")) or any(
        (root / name).is_file() for name in ("setup.py", "setup.cfg")
    )
    requirements = _requirement_files(root)
    if (root / "uv.lock").is_file():
        extras = _chosen(_extras(root, pyproject))
        extra_flags = "".join(f" --extra {extra}" for extra in extras)
        commands = [
            "python -m pip install -q uv",
            f"UV_PROJECT_ENVIRONMENT=$VIRTUAL_ENV uv sync --frozen --inexact{extra_flags}",
        ]
        return commands, "Python: uv.lock (uv sync into the sandbox's virtualenv)", []
    if (root / "poetry.lock").is_file():
        commands = [
            "python -m pip install -q poetry",
            "POETRY_VIRTUALENVS_CREATE=false poetry install --no-interaction",
        ]
        return commands, "Python: poetry.lock (poetry install into the sandbox's virtualenv)", []
    if installable:
        extras = _chosen(_extras(root, pyproject))
        target = f".[{','.join(extras)}]" if extras else "."
        commands = [f"python -m pip install -e '{target}'"]
        why = f"an installable project, extras {', '.join(extras)}" if extras else "an installable project"
        groups = _chosen(list((pyproject.get("dependency-groups") or {}).keys()))
        if groups and not extras:
            commands = ["python -m pip install -q --upgrade pip", *commands]
            commands += [f"python -m pip install --group {group}" for group in groups]
            why += f", dependency groups {', '.join(groups)}"
        elif not extras:
            commands += [f"python -m pip install -r {name}" for name in requirements]
            if requirements:
                why += f", {', '.join(requirements)}"
        return commands, f"Python: {why} (pip install -e)", []
    if requirements:
        commands = [f"python -m pip install -r {name}" for name in requirements]
        return commands, f"Python: {', '.join(requirements)}", []
    return None


def _requirement_files(root: Path) -> list[str]:
    """requirements*.txt at the top, and requirements/*.txt, those naming tests or dev first."""
    names = [
        name for name in found_manifests(root) if name.startswith("requirements") and name.endswith(".txt")
    ]
    return sorted(names, key=lambda name: (not re.search(r"test|dev", name), name))


def _extras(root: Path, pyproject: dict) -> list[str]:
    extras = list(((pyproject.get("project") or {}).get("optional-dependencies") or {}).keys())
    poetry_extras = (((pyproject.get("tool") or {}).get("poetry") or {}).get("extras") or {}).keys()
    extras += list(poetry_extras)
    if (root / "setup.cfg").is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read_string(_read(root, "setup.cfg"))
            if parser.has_section("options.extras_require"):
                extras += parser.options("options.extras_require")
        except configparser.Error:
            pass
    if (root / "setup.py").is_file():
        text = _read(root, "setup.py")
        block = re.search(r"extras_require\s*=\s*\{(.*?)\}", text, re.DOTALL)
        if block:
            extras += re.findall(r"""["']([\w.-]+)["']\s*:""", block.group(1))
    return list(dict.fromkeys(extras))


def _chosen(names: list[str]) -> list[str]:
    """The extras (or groups) that hold the tests' dependencies: a test one if there is, else dev."""
    lowered = {name.lower(): name for name in names}
    for family in (TEST_EXTRAS, DEV_EXTRAS):
        picked = [lowered[name] for name in family if name in lowered]
        if picked:
            return picked[:1]
    return []


def _toml(root: Path, name: str) -> dict:
    if not (root / name).is_file():
        return {}
    try:
        return tomllib.loads(_read(root, name))
    except tomllib.TOMLDecodeError:
        return {}


def _read(root: Path, name: str) -> str:
    """A manifest's text; one that is a link out of the repository reads as empty."""
    try:
        return read_text(root, name, follow_inside=True)
    except OSError:
        return ""


# ------------------------------------------------------------------------------------ Node, Go, Rust


def _node(root: Path) -> Detected | None:
    if not (root / "package.json").is_file():
        return None
    try:
        data = json.loads(_read(root, "package.json"))
    except ValueError:
        data = {}
    if not isinstance(data, dict) or not (data.get("dependencies") or data.get("devDependencies")):
        return None
    need = "actsmith_need npm 'nodejs npm'"
    if (root / "pnpm-lock.yaml").is_file():
        return (
            [need, "npm install -g pnpm", "pnpm install --frozen-lockfile"],
            "Node: pnpm-lock.yaml",
            ["node_modules"],
        )
    if (root / "yarn.lock").is_file():
        return (
            [need, "npm install -g yarn", "yarn install --frozen-lockfile"],
            "Node: yarn.lock",
            ["node_modules"],
        )
    for lock in ("package-lock.json", "npm-shrinkwrap.json"):
        if (root / lock).is_file():
            return [need, "npm ci"], f"Node: {lock}", ["node_modules"]
    return [need, "npm install"], "Node: package.json without a lock file", ["node_modules"]


def _go(root: Path) -> Detected | None:
    if not (root / "go.mod").is_file():
        return None
    return ["actsmith_need go golang-go", "go mod download"], "Go: go.mod", []


def _rust(root: Path) -> Detected | None:
    if not (root / "Cargo.toml").is_file():
        return None
    return ["actsmith_need cargo cargo", "cargo fetch"], "Rust: Cargo.toml", []
