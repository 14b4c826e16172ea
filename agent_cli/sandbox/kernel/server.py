"""Supervisor of the persistent interpreter; the main process of a sandbox container.

It speaks newline-delimited JSON with the host over its own stdin/stdout (the container's attached
stdio, so no network is needed) and runs a worker interpreter (worker.py) as a child process. Keeping
the worker separate lets the supervisor cut an action off at its timeout, collect everything the action
printed (subprocesses included) with bounded memory, and replace a worker that died or hung in a few
tens of milliseconds without restarting the container.

Stdlib only: this file runs in any image that has python3.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid

from common import MIN_KEEP, cut_middle, with_cut_note

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.py")
INTERRUPT_GRACE_S = 2.0
OUTPUT_SETTLE_S = 1.0
DEFAULT_MAX_OUTPUT = 10000


class HeadTail:
    """Keeps the first `keep` bytes and the last `keep` bytes of a stream (the two may overlap), so
    memory stays bounded whatever an action prints and the end-of-action marker, always written
    last, is whole in `tail`."""

    def __init__(self, keep):
        self.keep = max(keep, MIN_KEEP)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.eof = False  # the writer closed its end: the worker can no longer report output

    def add(self, data):
        self.total += len(data)
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.tail += data
        if len(self.tail) > self.keep:
            del self.tail[: len(self.tail) - self.keep]

    def has(self, marker):
        return self.tail.find(marker) >= 0

    def remove(self, marker):
        """Cut the marker out of the stream, from whichever of head and tail hold its bytes."""
        idx = self.tail.rfind(marker)
        if idx < 0:
            return
        start = self.total - len(self.tail) + idx
        del self.head[start : start + len(marker)]
        del self.tail[idx : idx + len(marker)]
        self.total -= len(marker)

    def text(self, max_chars):
        """Decoded output within `max_chars`, cut in the middle with a note saying how much was cut."""
        tail_start = self.total - len(self.tail)
        if tail_start <= len(self.head):
            return cut_middle(
                (self.head + self.tail[len(self.head) - tail_start :]).decode("utf-8", "replace"), max_chars
            )
        half = max(max_chars // 2, 1)
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        cut = tail_start - len(self.head) + max(len(head) - half, 0) + max(len(tail) - half, 0)
        return with_cut_note(head[:half], tail[-half:], cut)


class Worker:
    """One worker interpreter process with its control pipes and output pipes."""

    def __init__(self):
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env = dict(os.environ)
        env["ACTSMITH_CONTROL_FDS"] = "%d,%d" % (req_r, resp_w)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", WORKER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(req_r, resp_w),
            env=env,
            start_new_session=True,
        )
        os.close(req_r)
        os.close(resp_w)
        self.req = os.fdopen(req_w, "w", buffering=1)
        self.resp_fd = resp_r
        self.resp_buf = b""
        for fd in (self.resp_fd, self.proc.stdout.fileno(), self.proc.stderr.fileno()):
            os.set_blocking(fd, False)
        ready = self.read_message(timeout=30.0)
        if not ready or ready.get("event") != "ready":
            raise RuntimeError("worker interpreter failed to start")

    def read_message(self, timeout):
        """Read one JSON line from the worker's control pipe, or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.resp_buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sel = selectors.DefaultSelector()
            sel.register(self.resp_fd, selectors.EVENT_READ)
            events = sel.select(remaining)
            sel.close()
            if not events:
                return None
            chunk = os.read(self.resp_fd, 65536)
            if not chunk:
                return None
            self.resp_buf += chunk
        line, _, self.resp_buf = self.resp_buf.partition(b"\n")
        return json.loads(line)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.req, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.close(self.resp_fd)
        except OSError:
            pass


def kill_strays():
    """In our container, kill every process but init and us: whatever a dead worker started
    (servers, sh() jobs in their own sessions) must not outlive it. Never outside a sandbox."""
    if os.environ.get("ACTSMITH_SANDBOX") != "1":
        return
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, os.getpid()):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
    while True:  # reap what we can; init reaps the rest
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


def wait_for_exit(proc):
    try:
        return proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return None


def describe_exit(code):
    if code is None:
        return "the interpreter stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        hint = " (likely out of memory)" if name == "SIGKILL" else ""
        return "the interpreter was killed by %s%s" % (name, hint)
    return "the interpreter exited with code %d" % code


class Supervisor:
    def __init__(self, out):
        self.out = out
        self.worker = Worker()
        self.host_buf = b""
        self.host_eof = False
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)

    def send(self, message):
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def restart_worker(self):
        self.worker.kill()
        kill_strays()
        self.worker = Worker()

    def read_host_messages(self):
        """Drain whatever the host sent; returns complete messages (interrupts arrive mid-action)."""
        messages = []
        try:
            chunk = os.read(self.stdin_fd, 65536)
        except BlockingIOError:
            return messages
        if not chunk:
            self.host_eof = True
            return messages
        self.host_buf += chunk
        while b"\n" in self.host_buf:
            line, _, self.host_buf = self.host_buf.partition(b"\n")
            if line.strip():
                messages.append(json.loads(line))
        return messages

    def serve(self):
        self.send({"event": "ready", "pid": os.getpid()})
        sel = selectors.DefaultSelector()
        sel.register(self.stdin_fd, selectors.EVENT_READ)
        pending = []
        while not self.host_eof:
            if not pending:
                sel.select()
                pending.extend(self.read_host_messages())
                continue
            message = pending.pop(0)
            op = message.get("op")
            if op == "run":
                self.send(self.run_action(message, pending))
            elif op == "restart":
                self.restart_worker()
                self.send({"id": message.get("id"), "ok": True, "restarted": True})
            elif op == "ping":
                self.send({"id": message.get("id"), "ok": True})
            # An interrupt that arrives between actions has nothing to stop.

    def run_action(self, message, pending):
        max_output = int(message.get("max_output") or DEFAULT_MAX_OUTPUT)
        timeout = float(message.get("timeout") or 60)
        nonce = uuid.uuid4().hex
        marker = ("\x00actsmith-end-%s\x00" % nonce).encode()
        out, err = HeadTail(max_output), HeadTail(max_output)
        started = time.monotonic()
        request = {"code": message["code"], "marker": marker.decode(), "max_output": max_output}
        lost = self.ensure_worker_alive()
        worker = self.worker
        try:
            worker.req.write(json.dumps(request) + "\n")
        except BrokenPipeError:
            lost = describe_exit(wait_for_exit(worker.proc)) + " before the action started"
            self.restart_worker()
            worker = self.worker
            worker.req.write(json.dumps(request) + "\n")

        streams = {worker.proc.stdout.fileno(): out, worker.proc.stderr.fileno(): err}
        sel = selectors.DefaultSelector()
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        sel.register(worker.resp_fd, selectors.EVENT_READ)
        sel.register(self.stdin_fd, selectors.EVENT_READ)

        result, timed_out, interrupted_at, reason = None, False, None, None
        deadline = started + timeout
        while result is None and reason is None:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                timed_out = True
                interrupted_at = self.interrupt_worker(now)
            if interrupted_at is not None and now >= interrupted_at + INTERRUPT_GRACE_S:
                reason = "it did not stop after an interrupt"
                break
            wait_until = interrupted_at + INTERRUPT_GRACE_S if interrupted_at else deadline
            for key, _ in sel.select(max(wait_until - now, 0.001)):
                fd = key.fd
                if fd == self.stdin_fd:
                    for msg in self.read_host_messages():
                        if msg.get("op") == "interrupt" and interrupted_at is None:
                            interrupted_at = self.interrupt_worker(time.monotonic())
                        else:
                            pending.append(msg)
                    if self.host_eof:
                        sel.unregister(fd)
                elif fd == worker.resp_fd:
                    result = worker.read_message(timeout=10.0)
                    if result is None:
                        reason = describe_exit(wait_for_exit(worker.proc))
                        sel.unregister(fd)
                else:
                    chunk = self.read_chunk(fd)
                    if chunk:
                        streams[fd].add(chunk)
                    elif chunk == b"":
                        streams[fd].eof = True
                        sel.unregister(fd)
        sel.close()

        restarted = False
        if result is None:
            self.drain(streams, marker=None)
            result = {}
        else:
            self.drain(streams, marker=marker)
            if any(buf.eof for buf in streams.values()):
                reason = "the action closed the interpreter's stdout or stderr"
        if reason is not None:
            self.restart_worker()
            restarted = True
        elif lost is not None:
            reason, restarted = lost, True

        stdout, cut_out = out.text(max_output)
        stderr, cut_err = err.text(max_output)
        reply = {
            "id": message.get("id"),
            "ok": True,
            "stdout": stdout,
            "stderr": stderr,
            "value": result.get("value"),
            "error": result.get("error"),
            "finished": result.get("finished"),
            "timed_out": timed_out,
            "interrupted": interrupted_at is not None,
            "restarted": restarted,
            "restart_reason": reason if restarted else None,
            "truncated_chars": cut_out + cut_err + int(result.get("truncated_chars") or 0),
            "duration_s": round(time.monotonic() - started, 4),
        }
        return reply

    def ensure_worker_alive(self):
        """Replace a worker that died between actions; say why, since its variables are gone."""
        code = self.worker.proc.poll()
        if code is None:
            return None
        self.restart_worker()
        return describe_exit(code) + " after the previous action"

    def interrupt_worker(self, now):
        try:
            os.kill(self.worker.proc.pid, signal.SIGINT)
        except OSError:
            pass
        return now

    @staticmethod
    def read_chunk(fd):
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def drain(self, streams, marker):
        """Collect output still in the pipes; with a marker, wait until both streams reached it."""
        waiting = dict(streams)
        deadline = time.monotonic() + (OUTPUT_SETTLE_S if marker else 0.05)
        while waiting and time.monotonic() < deadline:
            if marker:
                for fd in list(waiting):
                    if waiting[fd].has(marker):
                        waiting.pop(fd)
                if not waiting:
                    break
            sel = selectors.DefaultSelector()
            for fd in waiting:
                sel.register(fd, selectors.EVENT_READ)
            events = sel.select(max(deadline - time.monotonic(), 0))
            sel.close()
            if not events:
                break
            for key, _ in events:
                chunk = self.read_chunk(key.fd)
                if chunk:
                    waiting[key.fd].add(chunk)
                elif chunk == b"":
                    waiting.pop(key.fd).eof = True
        if marker:
            for buf in streams.values():
                buf.remove(marker)


def main():
    # Our stdout is the protocol channel; nothing else may write to it.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    supervisor = Supervisor(out)
    try:
        supervisor.serve()
    finally:
        supervisor.worker.kill()


if __name__ == "__main__":
    main()
