"""Python setup, as the project's own CI installs for its tests.

Evidence, in order: a lock file (uv.lock: `uv sync`; poetry.lock: `poetry install`) with the test
groups; the test environment the project declares (tox, nox, hatch, pdm: see testenvs.py); else the
requirement files by the role their names give them. Tests first (`requirements-tests.txt`,
`requirements/test*.txt`, `test-requirements.txt`, `tests/requirements/py3.txt`), the development
set only when nothing names the tests, never docs, CI tooling, sponsor-only (`insiders`), release,
lint, typing or platform-specific variants. Files a chosen one includes (`-r`) are pip's to follow,
not listed again. Then the project itself, editable, with its test extra or dependency group, unless
a chosen file installs it already (`-e .[all]`).

Each plan comes with narrower ones for when it fails: the same without the lines that need a VCS
host or credentials, then the project alone (with, then without its test extra).
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from agent_cli.setup.inputs import (
    NEEDS_ACCESS,
    REQUIREMENTS,
    installs_the_project,
    lines_needing_access,
    read_input,
    with_includes,
)
from agent_cli.setup.plan import Choice, Part
from agent_cli.setup.roles import DEV_WORDS, TEST_WORDS, file_role, left_out, words_of
from agent_cli.setup.testenvs import TestEnvironment, declared_test_environment, toml_of

GROUP_SOURCES = "dependency-groups"
UPGRADE_PIP = "python -m pip install -q --upgrade 'pip>=25.1'"  # --group is new in pip 25.1


@dataclass(frozen=True)
class Install:
    """One pip install: requirement files, constraints, packages named inline, the project."""

    files: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    target: str | None = None  # the project, editable: ".", ".[tests]"
    groups: tuple[str, ...] = ()  # PEP 735, pip --group

    @property
    def empty(self) -> bool:
        return not (self.files or self.packages or self.target or self.groups)

    def commands(self, *, without_access: bool = False) -> tuple[str, ...]:
        options: list[str] = []
        for name in self.constraints:
            options += ["-c", name]
        options += [p for p in self.packages if not (without_access and NEEDS_ACCESS.search(p))]
        if self.target:
            options += ["-e", self.target]
        for group in self.groups:
            options += ["--group", group]
        files = [shlex.quote(name) for name in self.files]
        if files and without_access:
            # The files flattened (includes inlined), the lines needing a VCS host or credentials
            # left out, by the prelude's actsmith_without_vcs.
            parts = ["actsmith_without_vcs", *files, "| python -m pip install -r /dev/stdin"]
        else:
            parts = ["python -m pip install", *(f"-r {name}" for name in files)]
        install = " ".join([*parts, *(shlex.quote(option) for option in options)])
        return ((UPGRADE_PIP,) if self.groups else ()) + (install,)


@dataclass(frozen=True)
class Project:
    """What the repository's Python manifests say."""

    root: Path
    pyproject: dict
    installable: bool
    extras: tuple[str, ...]
    groups: tuple[str, ...]

    @classmethod
    def read(cls, root: Path) -> Project:
        pyproject = toml_of(root, "pyproject.toml")
        installable = bool(pyproject.get("project") or pyproject.get("build-system")) or any(
            read_input(root, name) for name in ("setup.py", "setup.cfg")
        )
        groups = tuple((pyproject.get("dependency-groups") or {}).keys())
        return cls(root, pyproject, installable, tuple(_extras(root, pyproject)), groups)

    @property
    def declares_dependencies(self) -> bool:
        """Whether installing the project brings its requirements (else its requirements.txt must)."""
        project = self.pyproject.get("project") or {}
        poetry = (self.pyproject.get("tool") or {}).get("poetry") or {}
        if "dependencies" in project or "dependencies" in (project.get("dynamic") or []) or poetry:
            return True
        setup = read_input(self.root, "setup.py") + read_input(self.root, "setup.cfg")
        return b"install_requires" in setup or b"requirements" in setup


def python_part(root: Path) -> Part | None:
    project = Project.read(root)
    if (root / "uv.lock").is_file():
        return _uv(project)
    if (root / "poetry.lock").is_file():
        return _poetry(project)
    candidates = requirement_candidates(root)
    if not project.installable and not candidates:
        return None
    environment = declared_test_environment(root, project.pyproject)
    chosen = _from_environment(project, environment, candidates) if environment else None
    if chosen is None or chosen[0].empty:
        chosen = _by_role(project, candidates)
    install, choices, source = chosen
    if install.empty:
        return None
    return Part(install.commands(), f"Python: {source}", (), tuple(choices), _narrower(project, install))


# ------------------------------------------------------------------------------------- roles


def requirement_candidates(root: Path) -> list[str]:
    """Requirement files where projects keep them: at the top (`requirements*.txt`,
    `test-requirements.txt`), in `requirements/`, and in the tests' folder."""
    names = [
        p.name
        for p in root.glob("*requirements*")
        if p.is_file()
        and (REQUIREMENTS.match(p.name) or re.match(r"^[\w.-]*requirements\.(txt|in)$", p.name))
    ]
    names += ["constraints.txt"] if (root / "constraints.txt").is_file() else []
    for folder in ("requirements", "tests/requirements", "test/requirements"):
        if (root / folder).is_dir():
            names += [f"{folder}/{p.name}" for p in (root / folder).iterdir() if p.suffix in (".txt", ".in")]
    names += [n for n in ("tests/requirements.txt", "test/requirements.txt") if (root / n).is_file()]
    return sorted(set(names))


def _compiled_inputs(candidates: list[str]) -> dict[str, str]:
    """`X.in` beside `X.txt`: the input pip-compile made the pinned `X.txt` from."""
    return {
        name: name[:-3] + ".txt"
        for name in candidates
        if name.endswith(".in") and name[:-3] + ".txt" in candidates
    }


def _by_role(project: Project, candidates: list[str]) -> tuple[Install, list[Choice], str]:
    compiled = _compiled_inputs(candidates)
    roles = {name: file_role(name) for name in candidates if name not in compiled}
    test_extras = [e for e in project.extras if set(words_of(e)) & TEST_WORDS and not left_out(e)]
    test_groups = [g for g in project.groups if set(words_of(g)) & TEST_WORDS and not left_out(g)]
    wanted = "test"
    if not (test_extras or test_groups or any(role == "test" for role, _ in roles.values())):
        wanted = "dev"
        test_extras = [e for e in project.extras if set(words_of(e)) & DEV_WORDS and not left_out(e)][:1]
        test_groups = [g for g in project.groups if set(words_of(g)) & DEV_WORDS and not left_out(g)][:1]
    files = [name for name, (role, _) in roles.items() if role == wanted]
    if not (files or test_extras or test_groups):
        files = [name for name, (role, _) in roles.items() if role == "base"]
    elif not project.declares_dependencies:
        # The project's own requirements, unless the file is an aggregate that brings docs and
        # the like (fastapi's requirements.txt includes requirements-docs.txt).
        bases = [name for name, (role, _) in roles.items() if role == "base"]
        files = [name for name in bases if not _includes_left_out(project.root, name)] + files
    choices = _file_choices(project.root, roles, compiled, files, "")
    install = _with_project(
        project, Install(tuple(_top_level(project.root, files))), test_extras[:1], test_groups
    )
    return (
        install,
        choices + _named_choices(install, test_extras[:1], test_groups),
        _source(project.root, install),
    )


def _from_environment(
    project: Project, environment: TestEnvironment, candidates: list[str]
) -> tuple[Install, list[Choice], str]:
    compiled = _compiled_inputs(candidates)
    roles = {name: file_role(name) for name in candidates if name not in compiled}
    files, choices = [], []
    for name in environment.requirement_files:
        why = left_out(Path(name).name.rsplit(".", 1)[0])
        if why:
            choices.append(Choice(name, False, f"{why}; listed by {environment.source}"))
        else:
            files.append(name)
    listed = {choice.name for choice in choices}
    not_listed = f"not in {environment.source}"
    choices += [
        c for c in _file_choices(project.root, roles, compiled, files, not_listed) if c.name not in listed
    ]
    root_installed = environment.install_project or any(
        t.split("[")[0] in (".", "./") for t in environment.editable_targets
    )
    extras = [
        e
        for t in environment.editable_targets
        for e in re.findall(r"\[([\w,.-]+)\]", t)
        for e in e.split(",")
    ]
    install = Install(
        tuple(files),
        tuple(environment.constraint_files),
        tuple(environment.packages),
        None,
        tuple(environment.groups),
    )
    if root_installed and project.installable:
        install = _with_project(project, install, [*environment.extras, *extras], [])
    choices += _named_choices(install, [*environment.extras, *extras], list(environment.groups))
    return install, choices, f"{environment.source}: {_summary(install)}"


def _includes_left_out(root: Path, name: str) -> bool:
    return any(left_out(Path(n).name.rsplit(".", 1)[0]) for n in with_includes(root, [name])[1:])


def _top_level(root: Path, files: list[str]) -> list[str]:
    """The chosen files less those another chosen file includes: pip follows the includes."""
    included = {name for chosen in files for name in with_includes(root, [chosen])[1:]}
    return [name for name in files if name not in included]


def _file_choices(
    root: Path,
    roles: dict[str, tuple[str, str]],
    compiled: dict[str, str],
    chosen: list[str],
    not_listed: str,
) -> list[Choice]:
    reached = {name: chosen_by for chosen_by in chosen for name in with_includes(root, [chosen_by])[1:]}
    choices = []
    for name, (role, why) in roles.items():
        if name in reached:
            choices.append(Choice(name, True, f"included by {reached[name]}"))
        elif name in chosen:
            choices.append(Choice(name, True, why))
        else:
            reason = why if role == "out" else not_listed or _not_chosen(role)
            choices.append(Choice(name, False, reason))
    choices += [
        Choice(name, False, f"the input pip-compile made {txt} from") for name, txt in compiled.items()
    ]
    return sorted(choices, key=lambda c: (not c.taken, c.name))


def _not_chosen(role: str) -> str:
    if role == "dev":
        return "development requirements: the tests' own are chosen instead"
    if role == "base":
        return "the project's requirements: installing the project brings them"
    return "the development set is chosen instead"


def _with_project(project: Project, install: Install, extras: list[str], groups: list[str]) -> Install:
    """The project itself, editable, unless a chosen file installs it already."""
    if not project.installable or installs_the_project(project.root, install.files):
        return replace(install, groups=tuple(dict.fromkeys([*install.groups, *groups])))
    extras = list(dict.fromkeys(extras))
    target = f".[{','.join(extras)}]" if extras else "."
    return replace(install, target=target, groups=tuple(dict.fromkeys([*install.groups, *groups])))


def _named_choices(install: Install, extras: list[str], groups: list[str]) -> list[Choice]:
    choices = [
        Choice(f"extra [{e}]", True, "the tests' extra") for e in dict.fromkeys(extras) if install.target
    ]
    choices += [Choice(f"group {g}", True, "the tests' dependency group") for g in dict.fromkeys(groups)]
    return choices


def _summary(install: Install) -> str:
    parts = [*install.files, *(f"-c {c}" for c in install.constraints)]
    if install.packages:
        parts.append(f"{len(install.packages)} package(s) named inline")
    if install.target:
        parts.append(f"the project ({install.target})")
    parts += [f"group {g}" for g in install.groups]
    return ", ".join(parts) or "nothing"


def _source(root: Path, install: Install) -> str:
    itself = installs_the_project(root, install.files)
    note = f" ({install.files[0]} installs the project: {itself})" if itself and install.files else ""
    return f"{_summary(install)}{note}"


def _narrower(project: Project, install: Install) -> tuple[tuple[tuple[str, ...], str], ...]:
    """Smaller installs to try when this one fails, each different from the one before."""
    steps: list[tuple[tuple[str, ...], str]] = []
    if lines_needing_access(project.root, install.files) or any(
        NEEDS_ACCESS.search(p) for p in install.packages
    ):
        steps.append(
            (install.commands(without_access=True), "without the lines that need a VCS host or credentials")
        )
    if project.installable:
        extras = re.findall(r"\[(.*)\]", install.target or "")
        alone = Install(target=f".[{extras[0]}]" if extras else ".", groups=install.groups)
        if alone.target != "." or alone.groups:
            steps.append((alone.commands(), "the project alone, with its tests' extras and groups"))
        steps.append((Install(target=".").commands(), "the project alone"))
    unique: list[tuple[tuple[str, ...], str]] = []
    for commands, what in steps:
        if commands != install.commands() and all(commands != seen for seen, _ in unique):
            unique.append((commands, what))
    return tuple(unique)


# ---------------------------------------------------------------------------------- uv, poetry


def _uv(project: Project) -> Part:
    environment = declared_test_environment(project.root, project.pyproject)
    declared = environment.groups if environment and environment.groups else None
    groups, choices = _groups(project.groups, declared, "uv")
    extras = [e for e in project.extras if set(words_of(e)) & TEST_WORDS and not left_out(e)][:1]
    workspace = bool(((project.pyproject.get("tool") or {}).get("uv") or {}).get("workspace"))
    flags = "--frozen --inexact" + (" --all-packages" if workspace else "")
    sync = "UV_PROJECT_ENVIRONMENT=$VIRTUAL_ENV uv sync " + flags
    chosen = sync + "".join(f" --extra {e}" for e in extras) + "".join(f" --group {g}" for g in groups)
    commands = ("python -m pip install -q uv", chosen)
    narrower = ((("python -m pip install -q uv", sync + " --no-default-groups"), "the project alone"),)
    why = "uv.lock (uv sync into the sandbox's virtualenv" + (", workspace" if workspace else "") + ")"
    return Part(
        commands, f"Python: {why}", (), tuple(choices), narrower if narrower[0][0] != commands else ()
    )


def _poetry(project: Project) -> Part:
    poetry = (project.pyproject.get("tool") or {}).get("poetry") or {}
    names = list((poetry.get("group") or {}).keys()) + (["dev"] if poetry.get("dev-dependencies") else [])
    groups, choices = _groups(tuple(dict.fromkeys(names)), None, "poetry")
    install = "POETRY_VIRTUALENVS_CREATE=false poetry install --no-interaction"
    chosen = f"{install} --only {','.join(['main', *groups])}" if names else install
    narrower = ((("python -m pip install -q poetry", f"{install} --only main"), "the project alone"),)
    return Part(
        ("python -m pip install -q poetry", chosen),
        "Python: poetry.lock (poetry install into the sandbox's virtualenv)",
        (),
        tuple(choices),
        narrower if names else (),
    )


def _groups(names: tuple[str, ...], declared: list[str] | None, tool: str) -> tuple[list[str], list[Choice]]:
    """The dependency groups to install: those the test environment declares, else those naming the
    tests, else the development ones; never docs, release or lint groups."""
    if declared is not None:
        chosen = [g for g in declared if g in names]
    else:
        chosen = [g for g in names if set(words_of(g)) & TEST_WORDS and not left_out(g)]
        chosen = chosen or [g for g in names if set(words_of(g)) & DEV_WORDS and not left_out(g)][:1]
    choices = []
    for name in names:
        if name in chosen:
            choices.append(Choice(f"group {name}", True, "the tests' dependency group"))
        else:
            default = " (installed by default)" if tool == "uv" and name == "dev" else ""
            choices.append(
                Choice(f"group {name}", bool(default), (left_out(name) or "not for the tests") + default)
            )
    return chosen, choices


# ------------------------------------------------------------------------------------- extras


def _extras(root: Path, pyproject: dict) -> list[str]:
    extras = list(((pyproject.get("project") or {}).get("optional-dependencies") or {}).keys())
    poetry_extras = (((pyproject.get("tool") or {}).get("poetry") or {}).get("extras") or {}).keys()
    extras += list(poetry_extras)
    cfg = read_input(root, "setup.cfg").decode(errors="replace")
    if cfg:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(cfg)
            if parser.has_section("options.extras_require"):
                extras += parser.options("options.extras_require")
        except configparser.Error:
            pass
    setup_py = read_input(root, "setup.py").decode(errors="replace")
    block = re.search(r"extras_require\s*=\s*\{(.*?)\}", setup_py, re.DOTALL)
    if block:
        extras += re.findall(r"""["']([\w.-]+)["']\s*:""", block.group(1))
    return list(dict.fromkeys(extras))
