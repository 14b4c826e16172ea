"""The host's side of the line to a kernel supervisor: JSON messages, one per line.

`AttachChannel` speaks over a Docker attach (or exec) socket, whose stream frames it demultiplexes;
`LineChannel` over a plain pipe (the local sandbox). Both write through a `Writer`, which an interrupt
may use from a signal handler or another thread while a request is half sent.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Writer:
    """Writes whole messages. An urgent one (an interrupt) never blocks: if a message is being
    written (perhaps by the very frame a signal handler interrupted), it goes right after it."""

    def __init__(self, write: Callable[[bytes], Any]):
        self.write = write
        self._lock = threading.Lock()
        self._deferred: list[bytes] = []

    def send(self, data: bytes, *, urgent: bool = False) -> None:
        if urgent:
            self._deferred.append(data)
            self._flush_if_free()
            return
        with self._lock:
            self.write(data)
            self._flush_deferred()
        self._flush_if_free()  # an urgent message that arrived as the lock was released

    def _flush_if_free(self) -> None:
        if self._deferred and self._lock.acquire(blocking=False):
            try:
                self._flush_deferred()
            finally:
                self._lock.release()

    def _flush_deferred(self) -> None:
        while self._deferred:
            self.write(self._deferred.pop(0))


MAX_MESSAGE_BYTES = 64 << 20  # far above any reply (output is capped inside), far below harm


class AttachChannel:
    """JSON lines over a container's attached stdio, demultiplexing Docker's stream frames."""

    def __init__(self, sock: Any):
        self.sock: socket.socket = getattr(sock, "_sock", sock)
        self.writer = Writer(self.sock.sendall)
        # bytearrays, consumed from the front in one go: a long reply costs linear time, not quadratic.
        self.frames = bytearray()
        self.stdout = bytearray()
        self.searched = 0  # how much of stdout is known to hold no newline
        self.stderr_tail = b""

    def send(self, message: dict, *, urgent: bool = False) -> None:
        self.writer.send(json.dumps(message).encode() + b"\n", urgent=urgent)

    def receive(self, deadline: float) -> dict | None:
        """The next JSON message from the supervisor's stdout; None at the deadline or on EOF."""
        while (end := self.stdout.find(b"\n", self.searched)) < 0:
            self.searched = len(self.stdout)
            more = self._read(deadline)
            if more is None:
                return None
            if not more:
                raise ConnectionError("the sandbox closed its channel")
        line = bytes(self.stdout[:end])
        del self.stdout[: end + 1]
        self.searched = 0
        try:
            message = json.loads(line)
        except ValueError:
            raise ConnectionError("the sandbox sent a malformed message") from None
        if not isinstance(message, dict):
            raise ConnectionError("the sandbox sent a malformed message")
        return message

    def read_all(self, deadline: float) -> bytes | None:
        """Everything on stdout until the other end closes it; None at the deadline."""
        while (more := self._read(deadline)) is not None:
            if not more:
                return bytes(self.stdout)
        return None

    def _read(self, deadline: float) -> bool | None:
        """Read what the socket has (True), or see it closed (False); None at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            return None
        if not chunk:
            return False
        self.frames += chunk
        self._demultiplex()
        if len(self.frames) + len(self.stdout) > MAX_MESSAGE_BYTES:
            # Code in the sandbox can write to this channel too; it must not exhaust the host.
            raise ConnectionError(f"the sandbox sent a message over {MAX_MESSAGE_BYTES >> 20} MiB")
        return True

    def _demultiplex(self) -> None:
        offset = 0
        while len(self.frames) - offset >= 8:
            kind, size = self.frames[offset], struct.unpack_from(">I", self.frames, offset + 4)[0]
            if len(self.frames) - offset - 8 < size:
                break
            payload = self.frames[offset + 8 : offset + 8 + size]
            offset += 8 + size
            if kind == 2:
                self.stderr_tail = (self.stderr_tail + payload)[-4000:]
            else:
                self.stdout += payload
        del self.frames[:offset]

    def close(self) -> None:
        try:
            # shutdown, not just close: the Docker client keeps its own reference to this connection,
            # and a daemon still writing into it (a sandbox flooding its output) would hang removal.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class LineChannel:
    """JSON lines over a pair of pipes."""

    def __init__(self, read_fd: int, write: Callable[[bytes], Any]):
        self.fd = read_fd
        self.buffer = bytearray()
        self.writer = Writer(write)
        os.set_blocking(read_fd, False)

    def send(self, message: dict[str, Any], *, urgent: bool = False) -> None:
        self.writer.send(json.dumps(message).encode() + b"\n", urgent=urgent)

    def receive(self, deadline: float) -> dict[str, Any] | None:
        while (end := self.buffer.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with selectors.DefaultSelector() as selector:
                selector.register(self.fd, selectors.EVENT_READ)
                if not selector.select(remaining):
                    return None
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("the interpreter closed its channel")
            self.buffer += chunk
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            raise ConnectionError("the interpreter sent a malformed message") from None
        if not isinstance(message, dict):
            raise ConnectionError("the interpreter sent a malformed message")
        return message


class Channel(Protocol):
    def send(self, message: dict[str, Any], *, urgent: bool = False) -> None: ...

    def receive(self, deadline: float) -> dict[str, Any] | None: ...


class Requests:
    """Numbered requests to a kernel supervisor. An interrupt names the action in flight, or the one
    about to be sent: a cancel may come between the loop deciding to run an action and the request
    reaching the supervisor, which then answers that action as interrupted before it started."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.next_id = 0
        self.running: int | None = None  # the id of the action in flight

    def run(self, code: str, timeout: float, max_output: int, deadline: float) -> dict[str, Any] | None:
        """The supervisor's reply to an action; None at the deadline. ConnectionError or OSError
        when the channel broke."""
        # In this order: an interrupt() landing anywhere in between names this action.
        self.running = self.next_id + 1
        self.next_id += 1
        try:
            request = {
                "id": self.next_id,
                "op": "run",
                "code": code,
                "timeout": timeout,
                "max_output": max_output,
            }
            self.channel.send(request)
            return self.reply(self.next_id, deadline)
        finally:
            self.running = None

    def restart(self, deadline: float) -> bool:
        """A new interpreter (the supervisor stays); False when it did not answer."""
        self.next_id += 1
        self.channel.send({"id": self.next_id, "op": "restart"})
        return self.reply(self.next_id, deadline) is not None

    def interrupt(self) -> None:
        target = self.running if self.running is not None else self.next_id + 1
        self.channel.send({"op": "interrupt", "id": target}, urgent=True)

    def reply(self, request_id: int, deadline: float) -> dict[str, Any] | None:
        while True:
            message = self.channel.receive(deadline)
            if message is None or message.get("id") == request_id:
                return message
