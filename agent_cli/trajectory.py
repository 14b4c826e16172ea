"""The trajectory: one JSON object per line for every event of a run, secrets redacted."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TextIO

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
# Shapes of well-known credentials, caught even when they did not come from our environment.
_SECRET_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[baprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_\-]{30,})"
)
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces the values of secret-looking environment variables, and credential shapes, in any text."""

    def __init__(self, environ: dict[str, str] | None = None):
        environ = dict(os.environ if environ is None else environ)
        secrets = {
            value: name
            for name, value in environ.items()
            if _SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
        }
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(secrets.items(), key=lambda item: -len(item[0]))

    def text(self, text: str) -> str:
        for value, name in self._secrets:
            if value in text:
                text = text.replace(value, f"[REDACTED:{name}]")
        return _SECRET_SHAPES.sub("[REDACTED]", text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if is_dataclass(value) and not isinstance(value, type):
            return self.value(asdict(value))
        if isinstance(value, Path):
            return str(value)
        return value


class Trajectory:
    """Appends events to a JSON Lines file, flushing each so a killed run still leaves its record."""

    def __init__(self, path: Path, redactor: Redactor | None = None):
        self.path = path
        self.redactor = redactor or Redactor()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = path.open("a", encoding="utf-8", errors="replace")

    def event(self, kind: str, **data: Any) -> None:
        if self._file is None:
            return
        record = {"event": kind, "time": round(time.time(), 3), **self.redactor.value(data)}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_trajectory(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
