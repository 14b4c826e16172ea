"""Locate data directories that live at the repository top level and ship inside the wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return `prompts` or `sandboxes`: inside the installed package, or beside it in a source checkout."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"actsmith data directory {name!r} is missing from this installation")
