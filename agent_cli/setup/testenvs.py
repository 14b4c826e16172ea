"""The test environment a Python project declares for its own CI: tox (tox.ini, or `[tool.tox]` in
pyproject.toml), nox (noxfile.py), hatch or pdm. Each reader returns what that environment installs:
requirement files, packages named inline, the project's extras and dependency groups, and whether
the project itself is installed. Nothing is run: the files are parsed (noxfile.py with `ast`).

Only the default test environment counts: the first tox env whose factors name a Python version or
tests, with its factor-conditional lines (`py3: -r ...`) evaluated for it; the nox session named for
the tests; hatch's `test`/`hatch-test` (else `default`) environment.
"""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from agent_cli.setup.inputs import read_input
from agent_cli.setup.roles import left_out

TEST_ENV_NAMES = ("tests", "test", "unit", "pytest", "unittest")
PYTHON_FACTOR = re.compile(r"^(py\d*|\d+(\.\d+)?|python\d.*|cpython\d*)$")
SUBSTITUTION = re.compile(r"\{\[([^\]]+)\]([^}]+)\}")


@dataclass
class TestEnvironment:
    """What a project's declared test environment installs."""

    source: str  # "tox.ini [testenv] (env py312)", said in the plan's reason
    requirement_files: list[str] = field(default_factory=list)
    constraint_files: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # requirements named inline
    extras: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # PEP 735 dependency groups
    install_project: bool = True
    editable_targets: list[str] = field(default_factory=list)  # `-e .` named among the deps


def declared_test_environment(root: Path, pyproject: dict) -> TestEnvironment | None:
    for reader in (_tox_ini, _tox_toml, _nox, _hatch, _pdm):
        found = reader(root, pyproject)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------------------- tox


def _tox_ini(root: Path, pyproject: dict) -> TestEnvironment | None:
    text = read_input(root, "tox.ini").decode(errors="replace")
    name = "tox.ini"
    if "[testenv" not in text:
        legacy = ((pyproject.get("tool") or {}).get("tox") or {}).get("legacy_tox_ini")
        if not isinstance(legacy, str) or "[testenv" not in legacy:
            return None
        text, name = legacy, "pyproject.toml [tool.tox] legacy_tox_ini"
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    envs = _expand_envlist(
        parser.get("tox", "envlist", fallback="") or parser.get("tox", "env_list", fallback="")
    )
    env = _test_env_name(envs)
    factors = set(env.split("-")) if env else set()

    def value(key: str) -> str:
        specific = f"testenv:{env}"
        raw = parser.get(specific, key, fallback=None) if env and parser.has_section(specific) else None
        if raw is None:
            raw = parser.get("testenv", key, fallback="")
        return _substitute(parser, raw)

    found = TestEnvironment(f"{name} [testenv]" + (f" (env {env})" if env else ""))
    _add_deps(found, _factor_lines(value("deps"), factors))
    found.extras = [
        e for line in _factor_lines(value("extras"), factors) for e in re.split(r"[,\s]+", line) if e
    ]
    found.groups = [
        g
        for line in _factor_lines(value("dependency_groups"), factors)
        for g in re.split(r"[,\s]+", line)
        if g
    ]
    # tox installs the project unless told not to; with no sdist, only in develop mode.
    skip_install = value("skip_install").strip().lower() == "true"
    no_sdist = parser.get("tox", "skipsdist", fallback="").strip().lower() == "true"
    found.install_project = not skip_install and (
        not no_sdist or value("usedevelop").strip().lower() == "true"
    )
    return found


def _tox_toml(root: Path, pyproject: dict) -> TestEnvironment | None:
    tox = (pyproject.get("tool") or {}).get("tox")
    if not isinstance(tox, dict) or not isinstance(tox.get("env_run_base"), dict):
        return None
    base = tox["env_run_base"]
    found = TestEnvironment("pyproject.toml [tool.tox.env_run_base]")
    _add_deps(found, [d for d in base.get("deps") or [] if isinstance(d, str)])
    found.extras = [e for e in base.get("extras") or [] if isinstance(e, str)]
    found.groups = [g for g in base.get("dependency_groups") or [] if isinstance(g, str)]
    found.install_project = not base.get("skip_install", False)
    return found


def _expand_envlist(text: str) -> list[str]:
    names: list[str] = []
    for item in re.split(r"[\n,]+(?![^{]*\})", text):
        item = item.split("#")[0].strip()
        if item:
            names += _expand_braces(item)
    return names


def _expand_braces(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    options: list[str] = []
    for option in match.group(1).split(","):
        option = option.strip()
        span = re.fullmatch(r"(\d+)-(\d+)", option)
        options += [str(n) for n in range(int(span[1]), int(span[2]) + 1)] if span else [option]
    return [
        out
        for option in options
        for out in _expand_braces(text[: match.start()] + option + text[match.end() :])
    ]


def _test_env_name(envs: list[str]) -> str | None:
    """The env CI runs the tests in: the first naming a CPython version or tests among its factors."""
    for env in envs:
        factors = env.split("-")
        if left_out(env):
            continue  # docs, lint, type checking, a platform or versions variant
        if any(PYTHON_FACTOR.match(f) or f in TEST_ENV_NAMES for f in factors):
            return env
    return None


def _factor_lines(raw: str, factors: set[str]) -> list[str]:
    """The lines of a tox value that apply to an env with these factors (`a,b-c: value`, `!a: value`)."""
    kept = []
    for line in raw.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        condition = re.match(r"^([\w.,!{}-]+):(?!//)\s*(.*)$", line)
        if condition and not condition.group(1).startswith("-"):
            alternatives = re.split(r",(?![^{]*\})", condition.group(1))
            if not any(_matches(c, factors) for part in alternatives for c in _expand_braces(part)):
                continue
            line = condition.group(2)
        kept.append(line)
    return kept


def _matches(combo: str, factors: set[str]) -> bool:
    return all(
        (part[1:] not in factors) if part.startswith("!") else (part in factors) for part in combo.split("-")
    )


def _substitute(parser: configparser.RawConfigParser, raw: str) -> str:
    raw = SUBSTITUTION.sub(lambda m: parser.get(m.group(1), m.group(2), fallback=""), raw)
    raw = raw.replace("{toxinidir}/", "").replace("{toxinidir}", ".")
    return re.sub(r"\{env:[^:}]+:?([^}]*)\}", r"\1", raw)


def _add_deps(found: TestEnvironment, lines: list[str]) -> None:
    """Sort dependency lines (tox deps, nox install arguments) into files, constraints and packages."""
    for line in lines:
        words = line.split()
        option = re.match(r"^(-r|--requirement|-c|--constraint)\s*=?\s*(\S+)$", line)
        if option:
            target = (
                found.constraint_files
                if option.group(1) in ("-c", "--constraint")
                else found.requirement_files
            )
            target.append(str(Path(option.group(2))))
        elif (words[:1] in (["-e"], ["--editable"]) and len(words) == 2) or line in (".", "./"):
            found.editable_targets.append(words[-1])
        elif not line.startswith("-"):
            found.packages.append(line)


# ------------------------------------------------------------------------------------------- nox


def _nox(root: Path, pyproject: dict) -> TestEnvironment | None:
    source = read_input(root, "noxfile.py").decode(errors="replace")
    if not source:
        return None
    try:
        module = ast.parse(source)
    except SyntaxError:
        return None
    lists = {
        target.id: [
            e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
        for node in module.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for function in module.body:
        if isinstance(function, ast.FunctionDef) and _nox_session_name(function) in TEST_ENV_NAMES:
            found = TestEnvironment(f"noxfile.py session {_nox_session_name(function)!r}")
            found.install_project = False
            for arguments in _install_calls(function, lists):
                _add_nox_install(found, arguments)
            return found
    return None


def _nox_session_name(function: ast.FunctionDef) -> str | None:
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        if (isinstance(target, ast.Attribute) and target.attr == "session") or (
            isinstance(target, ast.Name) and target.id == "session"
        ):
            for keyword in call.keywords if call else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
            return function.name
    return None


def _install_calls(function: ast.FunctionDef, lists: dict[str, list[str]]) -> list[list[str]]:
    calls = []
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "install"
        ):
            arguments: list[str] = []
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    arguments.append(argument.value)
                elif isinstance(argument, ast.Starred) and isinstance(argument.value, ast.Name):
                    arguments += lists.get(argument.value.id, [])
            calls.append(arguments)
    return calls


def _add_nox_install(found: TestEnvironment, arguments: list[str]) -> None:
    lines, pending = [], ""
    for argument in arguments:
        if argument in ("-r", "-c", "-e", "--requirement", "--constraint", "--editable"):
            pending = argument
            continue
        lines.append(f"{pending} {argument}".strip())
        pending = ""
    for line in lines:
        project = re.fullmatch(r"(?:-e\s+)?\.(\[([\w,.-]+)\])?", line)
        if project:
            found.install_project = True
            found.extras += [e for e in (project.group(2) or "").split(",") if e]
        else:
            _add_deps(found, [line])


# ------------------------------------------------------------------------------------ hatch, pdm


def _hatch(root: Path, pyproject: dict) -> TestEnvironment | None:
    envs = ((pyproject.get("tool") or {}).get("hatch") or {}).get("envs") or {}
    if not isinstance(envs, dict):
        return None
    for name in ("hatch-test", "test", "tests", "default"):
        env = envs.get(name)
        if isinstance(env, dict) and (
            env.get("dependencies") or env.get("extra-dependencies") or env.get("features")
        ):
            found = TestEnvironment(f"pyproject.toml [tool.hatch.envs.{name}]")
            dependencies = [*(env.get("dependencies") or []), *(env.get("extra-dependencies") or [])]
            _add_deps(found, [d for d in dependencies if isinstance(d, str)])
            found.extras = [f for f in env.get("features") or [] if isinstance(f, str)]
            found.install_project = not env.get("skip-install", False)
            return found
    return None


def _pdm(root: Path, pyproject: dict) -> TestEnvironment | None:
    groups = ((pyproject.get("tool") or {}).get("pdm") or {}).get("dev-dependencies") or {}
    if not isinstance(groups, dict):
        return None
    for name in TEST_ENV_NAMES:
        if isinstance(groups.get(name), list):
            found = TestEnvironment(f"pyproject.toml [tool.pdm.dev-dependencies] {name}")
            _add_deps(found, [d for d in groups[name] if isinstance(d, str) and not d.startswith("-e file:")])
            return found
    return None


def toml_of(root: Path, name: str) -> dict:
    try:
        return tomllib.loads(read_input(root, name).decode(errors="replace"))
    except tomllib.TOMLDecodeError:
        return {}
