"""Settings: the one place each knob is declared (default, range, help, flag), resolved in order:
command-line flags > ACTSMITH_* environment > the repository's .actsmith.toml > the user config file >
defaults. Every value is checked once, as it arrives, and a bad one is a single line naming where it
came from. The agent's config, the sandbox limits and the CLI's flags are all derived from here.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent_cli.errors import UsageError
from agent_cli.safe_paths import read_text

REPO_CONFIG = ".actsmith.toml"
MIN_MEMORY = 64 << 20  # the supervisor, the interpreter and a test run need some room
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Spec:
    """How a setting is shown and checked."""

    help: str
    flag: str | None = None  # the CLI option; default: --name-with-dashes (bools get --no-name)
    low: float | None = None  # inclusive, unless `above`
    high: float | None = None
    above: bool = False  # the value must be strictly greater than `low`
    negative: tuple[str, str] | None = None  # a list setting's flag (and help) that sets it empty
    from_repo: bool = True  # False: a repository's .actsmith.toml may not set it (see NOT_FROM_REPO)
    cli: bool = True  # offered as a flag on run, chat and ci


def setting(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class Settings:
    model: str = setting("", "Any litellm model name, or replay:PATH for scripted replies.")
    # A repository is not trusted to choose where API keys are sent, what loosens the sandbox, or
    # where files are written on the host; the sandbox could also edit its .actsmith.toml.
    api_base: str | None = setting(
        None, "Base URL of an OpenAI-compatible server (Ollama, vLLM...).", from_repo=False
    )
    model_timeout: float = setting(
        180.0,
        "Seconds one model request may take before it is retried (never past the time left).",
        low=1,
        high=3600,
    )
    max_steps: int = setting(30, "Stop after this many steps (exit 3).", low=1, high=100_000)
    max_cost: float = setting(
        2.0, "Stop once the run cost this many USD (exit 3).", low=0, above=True, high=100_000
    )
    max_time: float = setting(
        1800.0, "Stop after this many seconds of wall time (exit 3).", low=1, high=7 * 86400
    )
    action_timeout: float = setting(120.0, "Seconds before an action is interrupted.", low=1, high=86400)
    max_output_chars: int = setting(
        10_000,
        "Characters of an action's output shown to the model.",
        flag="--max-output",
        low=200,
        high=10_000_000,
    )
    trajectory: Path | None = setting(None, "Write the JSON Lines trajectory here.", from_repo=False)
    image: str | None = setting(
        None, "A ready sandbox image to use instead of building ours.", from_repo=False
    )
    base_image: str = setting("python:3.12-slim", "Base of the sandbox image.", from_repo=False, cli=False)
    memory: str = setting(
        "4g", "Memory limit of the sandbox, such as 512m or 8g (at least 64m).", from_repo=False
    )
    cpus: float = setting(2.0, "CPUs the sandbox may use.", low=0, above=True, high=1024, from_repo=False)
    pids: int = setting(
        1024, "Processes the sandbox may run at once.", low=32, high=4_194_304, from_repo=False
    )
    network: bool = setting(False, "Give the sandbox network access.", from_repo=False)
    commit: bool = setting(False, "Commit the run's changes (only its files) when it finishes.")
    worktree: bool = setting(
        False,
        "Work in a new git worktree on branch actsmith/<slug> and commit there; your checkout is untouched.",
        flag="--worktree/--in-place",
    )
    test_cmd: str | None = setting(
        None, "The test command (default: detected: pytest, unittest, npm, go, cargo, make)."
    )
    tests: bool = setting(True, "Run a baseline and check the tests when the model finishes.")
    max_test_rounds: int = setting(
        3, "Test reports sent back on finish() before the run ends failing (exit 1).", low=0, high=100
    )
    test_timeout: float = setting(600.0, "Seconds before a test run is stopped.", low=1, high=86400)
    summary_model: str | None = setting(
        None, "Model that condenses long test output and old steps (default: --model)."
    )
    prompt_caching: bool = setting(
        True,
        "Mark the prompt's stable prefix for the provider's cache where it needs marks (Anthropic, Claude on "
        "Bedrock and Vertex); others cache it on their own.",
    )
    max_context_tokens: int | None = setting(
        None,
        "Token budget of every prompt; older steps are condensed past it (default: the model's window).",
        low=1000,
        high=10_000_000,
    )
    map_tokens: int = setting(
        1024, "Token budget of the repo map in the first prompt (0: no map).", low=0, high=200_000
    )
    setup: tuple[str, ...] | None = setting(
        None,
        "A command that prepares the environment (repeatable; default: detected from the repository).",
        negative=("--no-setup", "Skip setup: the agent runs in the plain sandbox image."),
    )
    protect: tuple[str, ...] | None = setting(
        None,
        "A glob of paths the agent may not change, such as 'migrations/**' (repeatable); a change is undone at once.",
    )
    after_edit: str | None = setting(
        None,
        "A command run in the sandbox after each step that changed files, such as 'ruff check --fix {files}' "
        "({files}: the changed files, quoted); its output is shown to the model.",
    )
    setup_timeout: float = setting(
        1800.0, "Seconds the environment's setup may take.", low=10, high=7 * 86400
    )
    setup_idle_timeout: float = setting(
        300.0,
        "Seconds a setup command may print nothing before it is stopped (a hung download).",
        low=10,
        high=86400,
    )
    rebuild: bool = setting(
        False,
        "Build the environment again, even when an image for its inputs exists or its setup failed before.",
    )
    setup_credentials: bool = setting(
        False,
        "Let setup see credentials embedded in the host's proxy and package index URLs.",
        from_repo=False,
    )
    temperature: float | None = setting(
        None, "Sampling temperature of the model (default: the provider's).", low=0, high=2, cli=False
    )
    candidates: int = setting(
        1,
        "Attempts run at once, each in its own worktree and sandbox; the tests choose the one applied.",
        low=1,
        high=16,
    )
    candidate_models: tuple[str, ...] | None = setting(
        None,
        "A model for the candidates (repeatable, cycled over them; default: --model).",
        flag="--candidate-model",
    )
    candidate_temperatures: tuple[float, ...] = setting(
        (0.0, 0.4, 0.8),
        "A sampling temperature for the candidates (repeatable, cycled over them).",
        flag="--candidate-temperature",
        low=0,
        high=2,
    )
    design_tests: bool = setting(
        False, "Before the candidates start, a test designer writes tests for the task; they help choose."
    )
    test_designer_model: str | None = setting(None, "Model of the test designer (default: --model).")
    keep_designed_tests: bool = setting(
        False, "Add the designed tests to the change applied (default: they stay in the run folder)."
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            problem = check_value(item, getattr(self, item.name))
            if problem:
                raise UsageError(f"{item.name} = {getattr(self, item.name)!r} is {problem}")

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory) or 0


FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(Settings)}


def spec_of(item: Field[Any]) -> Spec:
    return item.metadata["spec"]


NOT_FROM_REPO = tuple(name for name, f in FIELDS.items() if not spec_of(f).from_repo)


def value_type(item: Field[Any]) -> type:
    """The plain type of a setting (its annotation is a string under `from __future__`)."""
    kind = str(item.type).split("|")[0].strip()
    if kind.startswith("tuple"):
        return tuple
    return {"bool": bool, "int": int, "float": float, "Path": Path}.get(kind, str)


def item_type(item: Field[Any]) -> type:
    """The type of each value of a list setting: str, or float for `tuple[float, ...]`."""
    return float if str(item.type).startswith("tuple[float") else str


def flag_name(item: Field[Any]) -> str:
    spec = spec_of(item)
    if spec.flag:
        return spec.flag.split("/")[0]
    return "--" + item.name.replace("_", "-")


def parse_size(text: str) -> int | None:
    """Bytes in a size such as 512m or 4g; None when it is not one."""
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def check_value(item: Field[Any], value: Any) -> str | None:
    """Why a value is not acceptable for a setting, or None."""
    if value is None:
        return None if "None" in str(item.type) else "missing: a value is required"
    if item.name == "memory":
        size = parse_size(value)
        if size is None:
            return "not a size such as 512m or 4g (units k, m, g)"
        return "too small: the sandbox needs at least 64m" if size < MIN_MEMORY else None
    spec = spec_of(item)
    numbers = value if item_type(item) is float else [value] if value_type(item) in (int, float) else []
    if numbers and (spec.low is not None or spec.high is not None):
        low, high = spec.low, spec.high
        too_low = low is not None and any(n <= low if spec.above else n < low for n in numbers)
        too_high = high is not None and any(n > high for n in numbers)
        if too_low or too_high:
            return f"out of range: {_range_text(spec)}"
    return None


def _range_text(spec: Spec) -> str:
    low, high = _number(spec.low), _number(spec.high)
    if spec.above:
        return f"it must be above {low} and at most {high}"
    return f"it must be between {low} and {high}"


def _number(value: float | None) -> str:
    return "?" if value is None else format(value, ",.10g")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a raw value (a flag, an environment string, a TOML value) to the setting's type and
    check its range; a problem is one line naming the source."""
    item = FIELDS[name]
    kind = value_type(item)
    try:
        converted = _convert(kind, value, item_type(item))
    except (TypeError, ValueError):
        raise UsageError(f"{source}: {name} = {value!r} is not a valid {kind.__name__}") from None
    problem = check_value(item, converted)
    if problem:
        raise UsageError(f"{source}: {name} = {value!r} is {problem}")
    return converted


def _convert(kind: type, value: Any, each: type = str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is Path:
        return Path(value)  # literal: no ~ or $VAR expansion
    if kind is tuple and each is float:
        # Numbers: a list in TOML, repeated flags, or "0, 0.5" in an environment variable.
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not items:
            raise ValueError(value)
        return tuple(_convert(float, item) for item in items)
    if kind is tuple:
        # One command per line in an environment variable; a list (or one string) in TOML or flags.
        items = value.splitlines() if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
            raise ValueError(value)
        return tuple(item.strip() for item in items if item.strip())
    return kind(value)


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "actsmith" / "config.toml"


def _from_repo_toml(repo: Path) -> dict[str, Any]:
    path = repo / REPO_CONFIG
    try:  # the sandbox could have made it a link to any file of the user's
        text = read_text(repo, REPO_CONFIG, follow_inside=True) if path.is_file() else ""
    except OSError as error:
        raise UsageError(f"{path}: cannot read it: {error}") from None
    values = _from_toml(path, text)
    refused = sorted(set(values) & set(NOT_FROM_REPO))
    if refused:
        raise UsageError(
            f"{path}: {', '.join(refused)} cannot be set by a repository (it could send your API key or "
            "loosen the sandbox); set it with a flag, ACTSMITH_* or your user config instead"
        )
    return values


def _from_toml(path: Path, text: str | None = None) -> dict[str, Any]:
    """Settings from a TOML file (or its `text`, already read)."""
    if text is None:
        text = path.read_text() if path.is_file() else ""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise UsageError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(FIELDS))})")
        values[name] = _coerce(name, value, str(path))
    return values


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values = {}
    for name in FIELDS:
        variable = f"ACTSMITH_{name.upper()}"
        raw = environ.get(variable)
        if raw is not None and raw.strip() != "":
            values[name] = _coerce(name, raw, variable)
    return values


def _from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _coerce(name, value, flag_name(FIELDS[name]))
        for name, value in flags.items()
        if value is not None
    }


def load_settings(
    repo: Path | None, flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge every source; `flags` holds only the options the user actually passed (None = not given)."""
    merged: dict[str, Any] = {}
    merged.update(_from_toml(user_config_path()))
    if repo is not None:
        merged.update(_from_repo_toml(repo))
    merged.update(_from_environment(dict(os.environ if environ is None else environ)))
    merged.update(_from_flags(flags or {}))
    return replace(Settings(), **merged)


def setting_value(name: str, value: Any, source: str) -> Any:
    """A value for setting `name` from a source of the caller's own (a batch spec's field), converted
    and checked as flags and files are; a problem is one line naming `source`."""
    return _coerce(name, value, source)
