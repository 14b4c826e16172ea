"""The checkout's `origin`, from the host side only: fetch where a run starts, push where its work
goes. The token travels in git's environment (GIT_CONFIG_*), never on a command line (other
processes can read those) or in a file the sandbox mounts. It replaces whatever header a checkout
left in .git/config for that URL, so the token the workflow gave actsmith is the one that pushes
(an App's token makes the pull request run CI; the checkout's default token would not).
Pushes are plain fast-forwards: never a force push.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import ActsmithError, UsageError
from agent_cli.gitops import GitError, git

if TYPE_CHECKING:
    from agent_cli.trajectory import Redactor
    from agent_cli.workspace import Workspace


class PushError(ActsmithError):
    """origin refused the push or could not be reached."""


@dataclass(frozen=True)
class Origin:
    root: Path
    url: str
    env: dict[str, str]
    redactor: Redactor

    @classmethod
    def of(cls, workspace: Workspace, token: str, redactor: Redactor) -> Origin:
        try:
            url = git(workspace.root, "remote", "get-url", "origin").decode().strip()
        except GitError:
            raise UsageError(
                f"{workspace.root} has no `origin` remote to push to (check out the repository first)"
            ) from None
        return cls(workspace.root, url, authenticated(url, token), redactor)

    def fetch(self, ref: str) -> str | None:
        """The commit `ref` names on origin, fetched; None when origin has no such ref."""
        listed = self._git("ls-remote", "origin", ref).decode().split()
        if not listed:
            return None
        self._git("fetch", "--quiet", "--no-tags", "origin", ref)
        return git(self.root, "rev-parse", "FETCH_HEAD^{commit}").decode().strip()

    def push(self, local: str, branch: str) -> None:
        try:
            self._git("push", "--quiet", "origin", f"refs/heads/{local}:refs/heads/{branch}")
        except GitError as error:
            raise PushError(
                f"pushing {branch} to origin failed ({error}); the work is on the local branch {local}"
            ) from None

    def _git(self, *args: str) -> bytes:
        try:
            return git(self.root, *args, env=self.env, exact=False)
        except GitError as error:
            raise GitError(self.redactor.text(str(error))) from None


def authenticated(url: str, token: str) -> dict[str, str]:
    """git's environment for talking to `url` with `token`: an empty extraheader first clears what a
    checkout configured for the same URL, then the token's. Only for http(s): ssh and local paths
    authenticate their own way."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if not url.startswith(("https://", "http://")):
        return env
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    key = f"http.{url}.extraheader"
    return {
        **env,
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key,
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": f"AUTHORIZATION: basic {basic}",
    }


def prepare_branch(workspace: Workspace, local: str, start: str | None) -> None:
    """Make `local` the branch a run works on, at `start` (what origin has) or HEAD. A local branch
    of that name is moved only forward: one holding commits origin lacks is kept as it is, and one
    that went another way stops the run rather than lose them."""
    root = workspace.root
    ref = f"refs/heads/{local}"
    try:
        current = git(root, "rev-parse", "--verify", "-q", ref).decode().strip()
    except GitError:
        git(root, "update-ref", ref, start or "HEAD", "")
        return
    if start is None or current == start or _is_ancestor(root, start, current):
        return
    if not _is_ancestor(root, current, start):
        raise UsageError(
            f"the local branch {local} and origin's have diverged; delete the local one or push it first"
        )
    git(root, "update-ref", ref, start, current)


def _is_ancestor(root: Path, older: str, newer: str) -> bool:
    try:
        git(root, "merge-base", "--is-ancestor", older, newer)
    except GitError:
        return False
    return True
