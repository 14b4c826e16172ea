"""The GitHub Actions job around `actsmith ci`: the standard GITHUB_* variables it reads, the two
files it writes back (the step summary and the step outputs), and its log, where workflow commands
are turned off while the run prints."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_cli.errors import UsageError

REQUIRED = ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY")


@dataclass(frozen=True)
class ActionsEnv:
    event_name: str
    event_path: Path
    repository: str  # owner/name
    api_url: str
    server_url: str
    token: str | None
    run_id: str
    run_attempt: str
    step_summary: Path | None
    output: Path | None
    workspace: Path  # the checkout

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> ActionsEnv:
        missing = [name for name in REQUIRED if not environ.get(name)]
        if missing:
            raise UsageError(
                f"actsmith ci runs inside a GitHub Actions job: {', '.join(missing)} not set "
                "(use `actsmith run` elsewhere)"
            )
        repository = environ["GITHUB_REPOSITORY"]
        if repository.count("/") != 1:
            raise UsageError(f"GITHUB_REPOSITORY = {repository!r} is not owner/name")
        return cls(
            event_name=environ["GITHUB_EVENT_NAME"],
            event_path=Path(environ["GITHUB_EVENT_PATH"]),
            repository=repository,
            api_url=environ.get("GITHUB_API_URL") or "https://api.github.com",
            server_url=environ.get("GITHUB_SERVER_URL") or "https://github.com",
            token=environ.get("GITHUB_TOKEN") or None,
            run_id=environ.get("GITHUB_RUN_ID") or "local",
            run_attempt=environ.get("GITHUB_RUN_ATTEMPT") or "1",
            step_summary=_path(environ.get("GITHUB_STEP_SUMMARY")),
            output=_path(environ.get("GITHUB_OUTPUT")),
            workspace=Path(os.path.abspath(environ.get("GITHUB_WORKSPACE") or os.getcwd())),
        )

    @property
    def run_url(self) -> str:
        return f"{self.server_url.rstrip('/')}/{self.repository}/actions/runs/{self.run_id}"

    @property
    def artifact(self) -> str:
        """The artifact action.yml uploads the run's folder as (named the same way there)."""
        return f"actsmith-{self.run_id}-{self.run_attempt}"

    def event(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.event_path.read_text(encoding="utf-8"))
        except OSError as error:
            raise UsageError(f"cannot read the event payload {self.event_path}: {error.strerror}") from None
        except ValueError:
            raise UsageError(f"the event payload {self.event_path} is not JSON") from None
        if not isinstance(payload, dict):
            raise UsageError(f"the event payload {self.event_path} is not a JSON object")
        return payload

    def append_summary(self, markdown: str) -> None:
        if self.step_summary is not None:
            with self.step_summary.open("a", encoding="utf-8") as file:
                file.write(markdown.rstrip("\n") + "\n")

    def write_outputs(self, values: dict[str, str]) -> None:
        """`name=value` lines, as GitHub reads them; a value never spans lines, so none can forge
        another output."""
        if self.output is None:
            return
        with self.output.open("a", encoding="utf-8") as file:
            for name, value in values.items():
                file.write(f"{name}={' '.join(value.split())}\n")


@contextlib.contextmanager
def workflow_commands_stopped(environ: dict[str, str]) -> Iterator[None]:
    """In Actions, the runner obeys any line of a step's output that starts with `::` (set an output,
    mask, add a path, an annotation); the run prints what the model and the repository's code print.
    `::stop-commands::<token>` makes the runner ignore them until `::<token>::`, and the token is
    random, printed only here: nothing the run prints can guess it to turn commands back on."""
    if environ.get("GITHUB_ACTIONS") != "true":
        yield
        return
    token = secrets.token_hex(16)
    sys.stderr.flush()
    print(f"::stop-commands::{token}", flush=True)
    try:
        yield
    finally:
        sys.stderr.flush()
        print(f"::{token}::", flush=True)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
