"""Errors a user can act on, each carrying the process exit code the README documents for it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_TESTS_FAIL = 1
EXIT_USAGE = 2
EXIT_LIMIT = 3
EXIT_INTERRUPTED = 130


class ActsmithError(Exception):
    """A failure reported to the user as one actionable line."""

    exit_code = EXIT_USAGE


class UsageError(ActsmithError):
    """Bad options, missing configuration, not a git repository."""


class EnvironmentProblem(ActsmithError):
    """Something on the host is missing or unreachable (Docker, an API key, debootstrap)."""


class ModelError(ActsmithError):
    """The model API failed in a way retrying will not fix (auth, unknown model)."""


class ModelStopped(ActsmithError):
    """The model cannot go on: replies ran out, or the API kept failing after retries."""

    exit_code = EXIT_LIMIT


class LimitReached(ActsmithError):
    """A step, cost or wall-time limit ended the run."""

    exit_code = EXIT_LIMIT
