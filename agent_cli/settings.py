"""Settings, resolved in order: command-line flags > ACTSMITH_* environment > ./.actsmith.toml in the
repository > the user config file > defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from agent_cli.errors import UsageError

REPO_CONFIG = ".actsmith.toml"
# A repository is not trusted to choose where API keys are sent, what runs outside the sandbox's
# defaults, or where files are written on the host; the sandbox could also edit this file.
NOT_FROM_REPO = ("api_base", "image", "base_image", "network", "memory", "cpus", "pids", "trajectory")


@dataclass(frozen=True)
class Settings:
    model: str = ""
    api_base: str | None = None
    max_steps: int = 30
    max_cost: float = 2.0  # US dollars per run
    max_time: float = 1800.0  # seconds of wall time per run
    action_timeout: float = 120.0
    max_output_chars: int = 10_000
    image: str | None = None  # a ready sandbox image; by default one is built from sandboxes/
    base_image: str = "python:3.12-slim"
    memory: str = "4g"
    cpus: float = 2.0
    pids: int = 1024
    network: bool = False
    trajectory: Path | None = None
    commit: bool = False  # commit the run's changes when it finishes cleanly
    worktree: bool = False  # work in a new worktree on branch actsmith/<slug>, leaving the checkout alone
    test_cmd: str | None = None  # the test command; detected per ecosystem when unset
    tests: bool = True  # baseline + gate on finish(); --no-tests turns both off (run_tests() still works)
    max_test_rounds: int = 3  # test reports sent back on finish() before a failing finish() ends the run
    test_timeout: float = 600.0  # seconds per test run
    summary_model: str | None = None  # condenses long raw test output; default: the main model
    map_tokens: int = 1024  # budget of the repo map in the first prompt; 0 sends the short summary


FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "actsmith" / "config.toml"


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a config or environment value to the field's type, or say exactly which value is wrong."""
    kind = FIELD_TYPES[name]
    try:
        if "bool" in kind:
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if "Path" in kind:
            return Path(value).expanduser()
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: {name} = {value!r} is not a valid {kind.split(' ')[0]}") from None


def _from_repo_toml(path: Path) -> dict[str, Any]:
    values = _from_toml(path)
    refused = sorted(set(values) & set(NOT_FROM_REPO))
    if refused:
        raise UsageError(
            f"{path}: {', '.join(refused)} cannot be set by a repository (it could send your API key or "
            "loosen the sandbox); set it with a flag, ACTSMITH_* or your user config instead"
        )
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in FIELD_TYPES:
            raise UsageError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(FIELD_TYPES))})")
        values[name] = _coerce(name, value, str(path))
    return values


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values = {}
    for name in FIELD_TYPES:
        raw = environ.get(f"ACTSMITH_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, f"ACTSMITH_{name.upper()}")
    return values


def load_settings(
    repo: Path | None, flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge every source; `flags` holds only the options the user actually passed (None = not given)."""
    merged: dict[str, Any] = {}
    merged.update(_from_toml(user_config_path()))
    if repo is not None:
        merged.update(_from_repo_toml(repo / REPO_CONFIG))
    merged.update(_from_environment(dict(os.environ if environ is None else environ)))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    return replace(Settings(), **merged)
