"""JSON Lines consumers of the event stream, secrets redacted: the trajectory file, and `--json`
output on stdout. Both write exactly `Event.record()`, one object per line, flushed at once so a
killed run still leaves its record."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import IO, Any, TextIO

from agent_cli.events import Event
from agent_cli.safe_paths import open_path

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
# Shapes of well-known credentials, caught even when they did not come from our environment.
_SECRET_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[baprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_\-]{30,})"
)
# user:password@ in a URL (a proxy or a package index with credentials).
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces the values of secret-looking environment variables, the credentials in the host's
    proxy and package index settings, secrets named to it, credential shapes and credentials inside
    URLs, in any text."""

    def __init__(self, environ: dict[str, str] | None = None):
        from agent_cli.setup.network import host_network

        environ = dict(os.environ if environ is None else environ)
        self._secrets: list[tuple[str, str]] = []
        for name, value in environ.items():
            if _SECRET_NAME.search(name):
                self.add(value, name)
        # `user:password` from HTTPS_PROXY, PIP_INDEX_URL, pip.conf...: the password alone too, as a
        # tool may print it apart from its URL.
        for credentials in host_network(environ).secrets:
            self.add(credentials, "network credentials")
            self.add(credentials.partition(":")[2], "network credentials")

    def add(self, value: str | None, name: str) -> None:
        """Redact `value` wherever it appears (a token handed over in code rather than the environment)."""
        if value and len(value) >= MIN_SECRET_LENGTH and all(value != known for known, _ in self._secrets):
            self._secrets.append((value, name))
            self._secrets.sort(key=lambda item: -len(item[0]))  # a secret containing another goes whole

    def text(self, text: str) -> str:
        for value, name in self._secrets:
            if value in text:
                text = text.replace(value, f"[REDACTED:{name}]")
        text = _URL_CREDENTIALS.sub("[REDACTED]@", text)
        return _SECRET_SHAPES.sub("[REDACTED]", text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class RedactedStream:
    """A text stream that redacts what is written through it: a console's file, when its output
    goes to a log other people read (a CI job's)."""

    def __init__(self, stream: TextIO, redactor: Redactor):
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.text(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return self._stream.encoding


class JsonLines:
    """Writes each event as one redacted JSON object per line."""

    def __init__(self, stream: IO[str], redactor: Redactor | None = None):
        self.stream: IO[str] | None = stream
        self.redactor = redactor or Redactor()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        line = json.dumps(self.redactor.value(event.record()), ensure_ascii=False) + "\n"
        with self._lock:
            if self.stream is not None:
                self.stream.write(line)
                self.stream.flush()

    def close(self) -> None:
        self.stream = None


class Trajectory(JsonLines):
    """The session's record on disk (appended to, so a resumed conversation stays one file). Inside
    the repository `root`, where the sandbox writes too, it is opened without following any link."""

    def __init__(self, path: Path, redactor: Redactor | None = None, root: Path | None = None):
        self.path = path
        self._file = open_path(path, "a", root, errors="replace")
        super().__init__(self._file, redactor)

    def close(self) -> None:
        super().close()
        self._file.close()


def stdout_json(redactor: Redactor | None = None) -> JsonLines:
    """`--json`: the same events as the trajectory, on stdout, for scripts."""
    return JsonLines(sys.stdout, redactor)


def read_trajectory(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
