"""The `Model` seam: send chat messages, get one reply back with its token usage and cost.

Two implementations:

* `ReplayModel` (``--model replay:PATH``) returns canned replies from a YAML list, in order, whatever the
  prompt. Tests and demos drive the whole agent with it; no network involved.
* `LiteLLMModel` (any other ``--model NAME``) calls litellm. We own the retry policy (litellm's and the
  OpenAI SDK's own retries are switched off) so that every failure ends as one actionable line:
  `ModelError` for problems retrying cannot fix, `ModelStopped` when the API kept failing.

litellm is imported lazily, offline and quietly (see `_litellm`): it takes seconds to import, and by default
it would fetch a price map from GitHub and print debug hints to the user's terminal.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from agent_cli.errors import ModelError, ModelStopped, UsageError

REPLAY_PREFIX = "replay:"
NO_MODEL_MESSAGE = (
    "no model configured: pass --model NAME, set ACTSMITH_MODEL, or set model in .actsmith.toml"
)

# A server may ask for a long pause (Retry-After); a coding agent in a terminal should not hang for an hour.
MAX_RETRY_AFTER_S = 60.0
MAX_BACKOFF_S = 60.0
# 4xx statuses that are worth retrying: request timeout, conflict, rate limit. Every other 4xx is final.
RETRYABLE_4XX = frozenset({408, 409, 429})
# Providers whose credentials may come from somewhere validate_environment cannot see (a local default
# server, cloud profiles, instance roles): a missing environment variable proves nothing for them.
AMBIENT_CREDENTIAL_PROVIDERS = frozenset({"ollama", "ollama_chat", "bedrock", "sagemaker", "vertex_ai"})
# Providers for which validate_environment lists alternatives: any one of the keys is enough.
ANY_ONE_KEY_PROVIDERS = frozenset({"gemini"})
# The OpenAI SDK refuses to send a request without some key; OpenAI-compatible local servers ignore it.
PLACEHOLDER_API_KEY = "sk-no-key-needed"
MAX_ERROR_CHARS = 300
# Prompt caching. OpenAI-style providers cache a repeated prefix on their own; Anthropic's models (on
# its API, Bedrock or Vertex) cache only up to the blocks a request marks, at most 4 marks a request.
CACHE_MARKED_PROVIDERS = frozenset({"anthropic"})
CLAUDE_HOST_PROVIDERS = frozenset({"bedrock", "vertex_ai", "vertex_ai_beta"})
MAX_CACHE_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


@dataclass
class Usage:
    """Tokens and cost of one or more model calls. ``cost=None`` means unknown (model has no price).

    ``prompt_tokens`` counts every input token, those the provider read from its prompt cache
    (``cache_read_tokens``, billed at a tenth of the input price on Anthropic) and wrote to it
    (``cache_write_tokens``, billed a quarter above it) included, as litellm reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached_share(self) -> float:
        """The share of input tokens read from the provider's cache."""
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def add(self, other: Usage) -> None:
        """Accumulate ``other``; once any part of the cost is unknown, the total stays unknown."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost = None if self.cost is None or other.cost is None else self.cost + other.cost


@dataclass
class ModelReply:
    """One assistant reply. ``latency_s`` is the wall time of the whole call, retries included."""

    content: str
    usage: Usage
    model: str
    latency_s: float


@dataclass(frozen=True)
class Retry:
    """A failed request that will be tried again after `delay_s`."""

    model: str
    attempt: int  # the attempt that failed, from 1
    error: str
    delay_s: float


RetryHook = Callable[[Retry], None]


class ModelGate(Protocol):
    """What several sessions share about model calls (a batch runs many at once): a budget and the
    provider's rate limit. Every request goes through it; one session alone needs none."""

    def admit(self, model: str) -> None:
        """Before a request: wait while the provider asked everyone to slow down; raise LimitReached
        when the shared budget cannot take another call."""
        ...

    def settle(self, model: str, cost: float | None) -> None:
        """After a request that got an answer (cost None: unknown)."""
        ...

    def throttle(self, model: str, delay_s: float) -> None:
        """The provider rate-limited a request: every session using it waits `delay_s` (at least)."""
        ...


@runtime_checkable
class Model(Protocol):
    """What the agent loop needs from a model: a name for logs and one call. `timeout` bounds the
    whole call, retries included (the run's time left); None leaves it to the model's own limits."""

    name: str

    def complete(self, messages: list[dict[str, str]], *, timeout: float | None = None) -> ModelReply: ...


# --------------------------------------------------------------------------------------------- factory


def make_model(spec: str, **kwargs: Any) -> Model:
    """Build the model a ``--model`` value names: ``replay:PATH`` or any litellm model name.

    Keyword arguments go to `LiteLLMModel` (api_base, api_key, temperature, timeout, ...); a replay model
    ignores them, so callers can pass their settings unconditionally.
    """
    spec = (spec or "").strip()
    if not spec:
        raise UsageError(NO_MODEL_MESSAGE)
    if spec.startswith(REPLAY_PREFIX):
        return ReplayModel(_replay_path(spec))
    return LiteLLMModel(spec, **kwargs)


def summary_model_for(model: Model, configured: Model | None) -> Model | None:
    """The model that writes summaries (the condenser's, the test summariser's diagnoses): the configured
    `summary_model`, else the main model, but never a replay's replies. Those are the coder's script,
    consumed in order: a summary taking one would shift every later action. None: no model summarises,
    the harness's own digest (or the raw output) stands in."""
    if configured is not None:
        return configured
    return None if model.name.startswith(REPLAY_PREFIX) else model


def check_credentials(spec: str, *, api_base: str | None = None, api_key: str | None = None) -> None:
    """Fail before the run starts, with one line, when the model cannot possibly be called.

    Catches a model name whose provider litellm cannot tell, and a provider key missing from the
    environment. With an ``api_base`` (Ollama, vLLM, any local OpenAI-compatible server) or an explicit
    ``api_key``, keys are not required: such servers often need none.
    """
    spec = (spec or "").strip()
    if not spec:
        raise UsageError(NO_MODEL_MESSAGE)
    if spec.startswith(REPLAY_PREFIX):
        return
    provider = _provider_of(spec, api_base)
    if api_base or api_key or provider in AMBIENT_CREDENTIAL_PROVIDERS:
        return
    missing = list(import_litellm().validate_environment(model=spec).get("missing_keys") or [])
    if missing:
        keys = (" or " if provider in ANY_ONE_KEY_PROVIDERS else " and ").join(missing)
        raise ModelError(f"model {spec} needs {keys} in the environment; set it or choose another --model")


# ---------------------------------------------------------------------------------------------- replay


class ReplayModel:
    """Returns the replies of a YAML file (a list of strings) verbatim, in order, whatever the prompt."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = f"{REPLAY_PREFIX}{path}"
        self.replies = _load_replies(self.path)
        self._next = 0

    def complete(self, messages: list[dict[str, str]], *, timeout: float | None = None) -> ModelReply:
        if self._next >= len(self.replies):
            raise ModelStopped(f"replay file {self.path} has no reply left after {len(self.replies)} replies")
        content = self.replies[self._next]
        self._next += 1
        prompt_chars = sum(len(str(message.get("content") or "")) for message in messages)
        usage = Usage(_rough_tokens(prompt_chars), _rough_tokens(len(content)), 0.0)
        return ModelReply(content=content, usage=usage, model=self.name, latency_s=0.0)


def _replay_path(spec: str) -> str:
    path = spec[len(REPLAY_PREFIX) :].strip()
    if not path:
        raise UsageError("--model replay:PATH needs a path to a YAML list of replies")
    return path


def _load_replies(path: Path) -> list[str]:
    """Read and validate a replay file; every problem becomes one `UsageError` line."""
    import yaml  # lazy: only replay runs need it

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"replay file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read replay file {path}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise UsageError(f"replay file {path} is not valid YAML: {problem}{where}") from None
    if not isinstance(data, list):
        raise UsageError(
            f"replay file {path} must hold a YAML list of strings (one assistant reply each), "
            f"not {_kind(data)}"
        )
    for number, item in enumerate(data, start=1):
        if not isinstance(item, str):
            raise UsageError(f"replay file {path}: reply {number} is {_kind(item)}, not a string")
    return data


def _kind(value: object) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def _rough_tokens(chars: int) -> int:
    """About four characters per token: good enough for replay budgets and reports."""
    return (chars + 3) // 4


# --------------------------------------------------------------------------------------------- litellm


class _BadReply(Exception):
    """A 200 whose body holds no usable reply: treated like a server error and retried."""


class LiteLLMModel:
    """Any litellm model, with our own bounded retries and one-line errors."""

    def __init__(
        self,
        name: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        timeout: float = 180.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        extra: dict | None = None,
        on_retry: RetryHook | None = None,
        gate: ModelGate | None = None,
        prompt_caching: bool = False,
    ) -> None:
        self.name = name
        self.api_base = api_base
        self.api_key = api_key
        self.temperature = temperature
        self.timeout = timeout  # one request; the caller's `timeout` bounds the whole call
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.extra: dict[str, Any] = dict(extra or {})
        self.on_retry = on_retry
        self.gate = gate
        self.prompt_caching = prompt_caching  # mark cache breakpoints where the provider needs them
        self._marks_cache: bool | None = None  # asked of litellm at the first request (its import is slow)

    def complete(self, messages: list[dict[str, str]], *, timeout: float | None = None) -> ModelReply:
        """One reply, retrying transient failures (429, 5xx, timeouts, connection errors, bad bodies),
        each request and the whole call bounded by `timeout` when given."""
        litellm = import_litellm()
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        last_error: Exception | None = None
        out_of_time = False
        for attempt in range(self.max_retries + 1):
            request_timeout = self.timeout
            if deadline is not None:
                request_timeout = min(request_timeout, deadline - time.monotonic())
                if out_of_time := request_timeout <= 0:
                    break
            if self.gate is not None:
                self.gate.admit(self.name)
            try:
                response = litellm.completion(**self._request(messages, request_timeout))
                content = _content_of(response)
            except Exception as exc:  # every failure is classified below; none escapes as a traceback
                if not _is_retryable(exc):
                    raise ModelError(self._fatal_message(exc)) from exc
                last_error = exc
                if attempt == self.max_retries:
                    break
                delay = self._delay(attempt, exc)
                if self.gate is not None and getattr(exc, "status_code", None) == 429:
                    self.gate.throttle(self.name, delay)
                if deadline is not None and (out_of_time := time.monotonic() + delay >= deadline):
                    break
                if self.on_retry is not None:
                    self.on_retry(Retry(self.name, attempt + 1, self._describe(exc), round(delay, 2)))
                time.sleep(delay)
                continue
            usage = _usage_of(litellm, response)
            if self.gate is not None:
                self.gate.settle(self.name, usage.cost)
            return ModelReply(content, usage, self.name, time.monotonic() - started)
        if out_of_time:
            raise ModelStopped(
                f"model {self.name} gave no answer within the {timeout:.0f} s left; "
                f"last error: {self._describe(last_error)}"
            ) from last_error
        raise ModelStopped(
            f"model {self.name} kept failing after {self.max_retries} retries; "
            f"last error: {self._describe(last_error)}"
        ) from last_error

    def _request(self, messages: list[dict[str, str]], timeout: float) -> dict[str, Any]:
        """Arguments for litellm.completion. Retries are off on both litellm's and the SDK's side."""
        request: dict[str, Any] = {
            **self.extra,
            "model": self.name,
            "messages": with_cache_breakpoints(messages) if self._marks_breakpoints() else messages,
            "timeout": timeout,
            "num_retries": 0,
            "max_retries": 0,
        }
        if self.api_base:
            request["api_base"] = self.api_base
        api_key = self.api_key or self._placeholder_key()
        if api_key:
            request["api_key"] = api_key
        if self.temperature is not None:
            request["temperature"] = self.temperature
        return request

    def _marks_breakpoints(self) -> bool:
        if self._marks_cache is None:
            self._marks_cache = self.prompt_caching and needs_cache_breakpoints(self.name, self.api_base)
        return self._marks_cache

    def _placeholder_key(self) -> str | None:
        """A dummy key for ``openai/...`` models on a custom api_base when no OpenAI key is set.

        The OpenAI SDK refuses to send a request without a key, yet local OpenAI-compatible servers
        (Ollama, llama.cpp, vLLM) need none. A server that does want a key answers 401: a clear ModelError.
        """
        if self.api_base and self.name.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            return PLACEHOLDER_API_KEY
        return None

    def _delay(self, attempt: int, error: Exception) -> float:
        """Seconds before the next attempt: the server's Retry-After (capped) or exponential backoff."""
        retry_after = _retry_after_s(error)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        backoff = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
        return backoff * random.uniform(0.5, 1.0)  # jitter: parallel batch jobs must not retry in lockstep

    def _fatal_message(self, error: Exception) -> str:
        status = getattr(error, "status_code", None)
        detail = self._describe(error)
        if status in (401, 403) or _looks_like_missing_credentials(error):
            return f"model {self.name}: authentication failed ({detail}); check the API key"
        if status == 404:
            return f"model {self.name} not found ({detail}); check the model name and --api-base"
        return f"model {self.name} refused the request: {detail}"

    def _describe(self, error: Exception | None) -> str:
        text = _one_line(error)
        return text.replace(self.api_key, "***") if self.api_key else text


def import_litellm() -> ModuleType:
    """Import litellm offline and quiet.

    Lazy because the import takes seconds (``actsmith --help`` must not pay it). The environment variables
    must be set before the import: without them litellm fetches its price map from GitHub at import time
    and other catalogs later. ``setdefault`` leaves a user's explicit choice alone.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on every exception
    litellm.telemetry = False  # older releases had opt-out telemetry; harmless where the flag is gone
    if "LITELLM_LOG" not in os.environ:  # LITELLM_LOG=DEBUG still works for someone debugging a provider
        for name in _LITELLM_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def _provider_of(spec: str, api_base: str | None) -> str:
    """The litellm provider serving ``spec``; an unknown one is a `ModelError` naming the fix."""
    try:
        _, provider, _, _ = import_litellm().get_llm_provider(model=spec, api_base=api_base)
    except Exception:
        raise ModelError(
            f"unknown model {spec}: litellm cannot tell which provider serves it; "
            f"prefix the provider, e.g. openai/{spec} or anthropic/{spec}"
        ) from None
    return str(provider)


def needs_cache_breakpoints(spec: str, api_base: str | None = None) -> bool:
    """Whether the provider caches a prompt only up to the blocks marked with ``cache_control``:
    Anthropic's API, and Claude on Bedrock or Vertex AI (litellm turns the marks into theirs)."""
    try:
        provider = _provider_of(spec, api_base)
    except ModelError:
        return False
    if provider in CACHE_MARKED_PROVIDERS:
        return True
    return provider in CLAUDE_HOST_PROVIDERS and "claude" in spec.lower()


def with_cache_breakpoints(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The messages with ``cache_control`` breakpoints, in the content-block form litellm passes on.

    Marked: the system prompt, and the latest stable message (the one before the last: the last
    message carries the state block, which changes at every step) together with the one before it
    (the previous request's mark), so each request reads its prefix up to the previous mark from the
    cache without relying on the provider's lookback, and writes what was added since.
    """
    marked = _breakpoints(messages)
    return [
        _with_mark(message) if index in marked else dict(message) for index, message in enumerate(messages)
    ]


def _breakpoints(messages: list[dict[str, str]]) -> set[int]:
    system = [index for index, message in enumerate(messages) if message["role"] == "system"][:1]
    stable = [index for index in range(len(messages) - 1) if messages[index]["role"] != "system"]
    latest = stable[-1:]
    previous = [index - 2 for index in latest if index - 2 in stable]
    return set([*system, *latest, *previous][:MAX_CACHE_BREAKPOINTS])


def _with_mark(message: dict[str, str]) -> dict[str, Any]:
    return {**message, "content": [{"type": "text", "text": message["content"], "cache_control": EPHEMERAL}]}


def _content_of(response: Any) -> str:
    """The reply text, or `_BadReply` when the body has none (empty, None, or not a chat completion)."""
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise _BadReply(f"malformed reply body ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, str) or not content.strip():
        raise _BadReply("the model returned an empty reply")
    return content


def _usage_of(litellm: ModuleType, response: Any) -> Usage:
    return Usage(*_tokens_of(response), cost=_cost_of(litellm, response), **_cache_tokens_of(response))


def _tokens_of(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None) or 0
    completion = getattr(usage, "completion_tokens", None) or 0
    return int(prompt), int(completion)


def _cache_tokens_of(response: Any) -> dict[str, int]:
    """Input tokens read from and written to the provider's prompt cache. litellm reports reads as
    ``prompt_tokens_details.cached_tokens`` for every provider (Anthropic's ``cache_read_input_tokens``
    too) and writes as ``cache_creation_input_tokens`` (Anthropic's own name)."""
    usage = getattr(response, "usage", None)
    details = getattr(usage, "prompt_tokens_details", None)
    read = getattr(details, "cached_tokens", None) or getattr(usage, "cache_read_input_tokens", None)
    written = getattr(usage, "cache_creation_input_tokens", None) or getattr(
        details, "cache_creation_tokens", None
    )
    return {"cache_read_tokens": int(read or 0), "cache_write_tokens": int(written or 0)}


def _cost_of(litellm: ModuleType, response: Any) -> float | None:
    """Cost in USD, or None when litellm has no price for the model (or fails for any other reason)."""
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        return None
    return float(cost) if cost is not None else None


def _is_retryable(error: Exception) -> bool:
    """Retry rate limits, timeouts, connection and server errors, bad bodies; not auth or bad requests.

    litellm maps provider failures to exceptions carrying ``status_code`` (timeouts 408, connection
    errors and malformed bodies 500); anything without one is treated as transient too.
    """
    if isinstance(error, _BadReply):
        return True
    if _looks_like_missing_credentials(error):
        return False  # the OpenAI SDK's missing-key error arrives as a 500 from litellm
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status in RETRYABLE_4XX
    return True


def _looks_like_missing_credentials(error: Exception) -> bool:
    return "missing credentials" in str(error).lower()


def _retry_after_s(error: Exception) -> float | None:
    """The server's requested pause, from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    headers = _response_headers(error)
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _response_headers(error: Exception) -> dict[str, str]:
    """Lower-cased HTTP response headers litellm kept on the exception, if any."""
    candidates = (
        getattr(error, "litellm_response_headers", None),
        getattr(getattr(error, "response", None), "headers", None),
    )
    for headers in candidates:
        if headers:
            try:
                return {str(key).lower(): str(value) for key, value in headers.items()}
            except (AttributeError, TypeError):
                continue
    return {}


_LITELLM_PREFIX = re.compile(r"^litellm\.(\w+): \1: ")


def _one_line(error: Exception | None) -> str:
    """A short single-line description of an exception, without litellm's repeated class prefix."""
    if error is None:
        return "unknown error"
    text = str(error).split(", Received response - ")[0]  # litellm appends a repr of the raw response
    text = " ".join(text.split()) or type(error).__name__
    text = _LITELLM_PREFIX.sub(r"\1: ", text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


__all__ = [
    "LiteLLMModel",
    "Model",
    "ModelReply",
    "ReplayModel",
    "Usage",
    "check_credentials",
    "make_model",
    "needs_cache_breakpoints",
    "summary_model_for",
    "with_cache_breakpoints",
]
