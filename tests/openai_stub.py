"""A tiny OpenAI-compatible chat server on 127.0.0.1 for exercising litellm's real HTTP path.

Each test scripts a queue of behaviours (a normal reply, a 429, a 500, a hang, a malformed body, a 401);
every POST to ``/v1/chat/completions`` (or ``/chat/completions``) pops the next one and records the
request body, so tests can assert how many requests arrived and exactly which messages were sent.
Standard library only, loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass
class Reply:
    """A normal 200 chat completion."""

    content: str | None = "ok"
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0  # of the prompt tokens, those OpenAI's automatic prompt cache served


@dataclass
class RateLimited:
    """A 429, with a Retry-After header (seconds) unless it is None."""

    retry_after: str | None = "0"


@dataclass
class ServerError:
    """A 5xx with an OpenAI-style error body."""

    status: int = 500


@dataclass
class Hang:
    """Hold the request without answering for ``seconds`` (or until the server stops), then drop it."""

    seconds: float = 5.0


@dataclass
class Malformed:
    """A 200 whose body is not valid JSON."""

    body: bytes = b'{"id": "chatcmpl-broken", "choices": [ {"mess'


@dataclass
class Unauthorized:
    """A 401 with OpenAI's invalid-key error body."""


Behaviour = Reply | RateLimited | ServerError | Hang | Malformed | Unauthorized


@dataclass
class StubServer:
    """The scripted server: ``script(...)`` queues behaviours; ``requests``, ``headers`` record traffic."""

    _queue: deque[Behaviour] = field(default_factory=deque)
    reply_delay: float = 0.0  # seconds every request is held before its answer (model latency)
    fallback: Behaviour | None = None  # answered when the queue is empty (None: a 500)
    _storm_s: float = 0.0  # a rate-limit storm armed: its length, from the first request it meets
    _storm_retry_after: str = "1"
    _storm_until: float | None = None
    storm_answers: int = 0  # 429s the storm answered
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.perf_counter() of each request
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, answered one per request in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def storm(self, seconds: float, retry_after: str = "1") -> None:
        """From the next request on, answer every request for `seconds` with a 429 (the provider is
        over its limit, whoever asks), without using up the queue."""
        with self._lock:
            self._storm_s, self._storm_retry_after, self._storm_until = seconds, retry_after, None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases any handler parked in a Hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Behaviour | None:
        with self._lock:
            now = time.perf_counter()
            self.arrivals.append(now)
            self.requests.append(body)
            self.headers.append(headers)
            if self._storm_s and self._storm_until is None:
                self._storm_until = now + self._storm_s
            if self._storm_until is not None and now < self._storm_until:
                self.storm_answers += 1
                return RateLimited(self._storm_retry_after)
            return self._queue.popleft() if self._queue else self.fallback


def _make_handler(server: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep pytest output clean."""

        def do_POST(self) -> None:
            if self.path.split("?")[0] not in CHAT_PATHS:
                self._send_json(404, _error("not found", "invalid_request_error"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            behaviour = server._next(body, {key.lower(): value for key, value in self.headers.items()})
            if server.reply_delay and isinstance(behaviour, Reply):
                server._stopping.wait(server.reply_delay)
            self._act(behaviour, body)

        def _act(self, behaviour: Behaviour | None, body: dict[str, Any]) -> None:
            if behaviour is None:
                self._send_json(500, _error("stub has no scripted behaviour left", "server_error"))
            elif isinstance(behaviour, Reply):
                self._send_json(200, _completion(behaviour, body.get("model", "stub-model")))
            elif isinstance(behaviour, RateLimited):
                headers = {} if behaviour.retry_after is None else {"Retry-After": behaviour.retry_after}
                self._send_json(429, _error("Rate limit reached", "rate_limit_exceeded"), headers)
            elif isinstance(behaviour, ServerError):
                self._send_json(behaviour.status, _error("The server had an error", "server_error"))
            elif isinstance(behaviour, Hang):
                server._stopping.wait(behaviour.seconds)
                self.close_connection = True
            elif isinstance(behaviour, Malformed):
                self._send_raw(200, behaviour.body, "application/json")
            elif isinstance(behaviour, Unauthorized):
                self._send_json(401, _error("Incorrect API key provided", "invalid_api_key"))

        def _send_json(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

        def _send_raw(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to report

    return Handler


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        },
    }


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}
