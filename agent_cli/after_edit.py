"""The after-edit command: a linter or formatter the repository runs after each step that changed files.

It runs in the sandbox (no network, the model's limits) beside the interpreter; `{files}` expands to
the files the step changed, quoted for the shell. Its output, cut to fit, is shown in that step's
observation; a non-zero exit is shown, never fatal; what it rewrites is recorded as part of the step.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_cli.sandbox.kernel.common import cut_middle, decode_output, escape_unshowable

if TYPE_CHECKING:
    from agent_cli.cancel import CancelToken
    from agent_cli.sandbox import Sandbox

MAX_CHARS = 2_000


@dataclass(frozen=True)
class AfterEdit:
    command: str

    def argv(self, files: list[str]) -> list[str]:
        quoted = " ".join(shlex.quote(path) for path in files)
        return ["sh", "-c", self.command.replace("{files}", quoted)]

    def run(self, sandbox: Sandbox, files: list[str], timeout: float, cancel: CancelToken) -> str:
        """What to tell the model: the command, its exit code and its output."""
        result = sandbox.exec(self.argv(files), timeout=timeout, stdin=None, cancel=cancel)
        output = (decode_output(result.stdout)[0] + escape_unshowable(result.stderr)[0]).strip()
        if result.lost is not None:
            head = f"`{self.command}` did not complete: {result.lost}"
        else:
            head = f"`{self.command}` exited {result.exit_code}"
        shown, _ = cut_middle(output, MAX_CHARS) if output else ("", 0)
        return f"{head}{':' if shown else ', printing nothing'}\n{shown}".rstrip()
