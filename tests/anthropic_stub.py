"""A local stand-in of Anthropic's Messages API on 127.0.0.1, with Anthropic's prompt-cache accounting.

``POST /v1/messages`` answers the next scripted reply (or ``fallback`` once the script is spent) in the
documented response shape, and records each request body. Input is counted at four characters a token
over the prompt's blocks (the system blocks, then every message's content blocks, in order), and split
the way Anthropic reports it:

* ``cache_read_input_tokens``: the longest prefix of this request that ends where an earlier request
  had a ``cache_control`` breakpoint (a prefix Anthropic wrote to its cache), read only when this
  request marks a breakpoint at or after it (no marks: no cache is used);
* ``cache_creation_input_tokens``: from there to this request's last breakpoint, newly written;
* ``input_tokens``: the rest, after the last breakpoint.

A prefix is identified by its blocks' roles and contents (``cache_control`` itself excluded), so any
change before a breakpoint, even one character, is a miss from that block on, as with Anthropic. Not
modelled: the 5-minute lifetime of an entry, the minimum cacheable length (1,024 tokens on Sonnet),
the 20-block lookback. Standard library only, loopback only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MESSAGES_PATH = "/v1/messages"
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Block:
    """One block of the prompt as the cache sees it: who said it, its size, and whether it is marked."""

    key: str  # role and content, without the cache_control mark
    tokens: int
    marked: bool


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


@dataclass
class AnthropicStub:
    """The scripted server: ``script(...)`` queues reply texts; ``requests`` and ``usages`` record
    every request body and the usage it was answered with."""

    fallback: str | None = None  # answered once the script is spent (None: a 500)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    usages: list[CacheUsage] = field(default_factory=list)
    _queue: deque[str] = field(default_factory=deque)
    _cached: set[str] = field(default_factory=set)  # digests of the prefixes written to the cache
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def script(self, *replies: str) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def api_base(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> AnthropicStub:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="anthropic-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[str | None, CacheUsage]:
        """The next reply for this request and its usage; the request's breakpoints join the cache."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            usage = self._account(prompt_blocks(body))
            self.usages.append(usage)
            return (self._queue.popleft() if self._queue else self.fallback), usage

    def _account(self, blocks: list[Block]) -> CacheUsage:
        digests = _prefix_digests(blocks)
        marks = [index for index, block in enumerate(blocks) if block.marked]
        total = sum(block.tokens for block in blocks)
        if not marks:
            return CacheUsage(total, 0, 0)
        last_mark = marks[-1]
        hits = [index for index in range(last_mark + 1) if digests[index] in self._cached]
        read = sum(block.tokens for block in blocks[: hits[-1] + 1]) if hits else 0
        written = sum(block.tokens for block in blocks[: last_mark + 1]) - read
        self._cached.update(digests[index] for index in marks)
        return CacheUsage(total - read - written, written, read)


def prompt_blocks(body: dict[str, Any]) -> list[Block]:
    """The request's prompt as blocks, in the order the cache reads them: system, then messages."""
    blocks = [_block("system", item) for item in _content_blocks(body.get("system"))]
    for message in body.get("messages") or []:
        blocks += [_block(message.get("role", "?"), item) for item in _content_blocks(message.get("content"))]
    return blocks


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [item for item in content if isinstance(item, dict)]


def _block(role: str, item: dict[str, Any]) -> Block:
    unmarked = {key: value for key, value in item.items() if key != "cache_control"}
    text = item.get("text") if isinstance(item.get("text"), str) else json.dumps(unmarked)
    return Block(
        key=json.dumps([role, unmarked], sort_keys=True),
        tokens=count_tokens(text),
        marked=bool(item.get("cache_control")),
    )


def count_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _prefix_digests(blocks: list[Block]) -> list[str]:
    """For each block, a digest of every block up to and including it."""
    running = hashlib.sha256()
    digests = []
    for block in blocks:
        running.update(block.key.encode())
        running.update(b"\0")
        digests.append(running.copy().hexdigest())
    return digests


def _make_handler(server: AnthropicStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep pytest output clean."""

        def do_POST(self) -> None:
            if self.path.split("?")[0].rstrip("/") != MESSAGES_PATH:
                self._send(404, _error("not_found_error", f"no route {self.path}"))
                return
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, _error("invalid_request_error", "the body is not JSON"))
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            text, usage = server.answer(body, headers)
            if text is None:
                self._send(500, _error("api_error", "the stub has no scripted reply left"))
            else:
                self._send(200, _message(text, body.get("model", "claude-stub"), usage))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up; nothing to report

    return Handler


def _message(text: str, model: str, usage: CacheUsage) -> dict[str, Any]:
    """A Messages API response, as documented: content blocks, stop reason, usage with cache fields."""
    return {
        "id": "msg_stub",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": count_tokens(text),
        },
    }


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
