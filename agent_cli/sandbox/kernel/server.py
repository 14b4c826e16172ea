"""Supervisor of the persistent interpreter; the main process of a sandbox container.

It speaks newline-delimited JSON with the host over its own stdin/stdout (the container's attached
stdio, so no network is needed) and runs a worker interpreter (worker.py) as a child process. Keeping
the worker separate lets the supervisor cut an action off at its timeout, collect everything the action
printed (subprocesses included) with bounded memory, and replace a worker that died or hung in a few
tens of milliseconds without restarting the container.

Stdlib only: this file runs in any image that has python3.
"""

import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid

from common import MIN_KEEP, cut_middle, decode_output, with_cut_note

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.py")
INTERRUPT_GRACE_S = 2.0
REINTERRUPT_EVERY_S = 0.2
ACTION_NICENESS = 10
OUTPUT_SETTLE_S = 1.0
KILL_SETTLE_S = 5.0
KILL_POLL_S = 0.005
DEFAULT_MAX_OUTPUT = 10000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ESCAPED_NOTE = "\n[control characters or bytes that are not UTF-8 are shown as \\xNN escapes]"


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
        """Output as safe text within `max_chars`, cut in the middle with a note saying how much was
        cut, and whether control characters or undecodable bytes had to be escaped."""
        tail_start = self.total - len(self.tail)
        if tail_start <= len(self.head):
            whole, escaped = decode_output(bytes(self.head + self.tail[len(self.head) - tail_start :]))
            return cut_middle(whole, max_chars) + (escaped > 0,)
        half = max(max_chars // 2, 1)
        head, head_escaped = decode_output(whole_chars_at_end(bytes(self.head)))
        tail, tail_escaped = decode_output(whole_chars_at_start(bytes(self.tail)))
        cut = tail_start - len(self.head) + max(len(head) - half, 0) + max(len(tail) - half, 0)
        return with_cut_note(head[:half], tail[-half:], cut) + (head_escaped + tail_escaped > 0,)


def whole_chars_at_end(data):
    """`data` without a UTF-8 character cut in two at its end (where the head of a stream was cut)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last character
            length = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
            return data[:-back] if length > back else data
    return data


def whole_chars_at_start(data):
    """`data` without the continuation bytes of a character whose start was cut off."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return data[skip:]


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
        # Actions run a little below the supervisor's priority (their children inherit it): however
        # much CPU they burn, the supervisor still gets enough to stop them on time.
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, ACTION_NICENESS)
        except OSError:
            pass
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


def in_sandbox():
    """Killing processes by the container-wide rules below is only safe inside our own container."""
    return os.environ.get("ACTSMITH_SANDBOX") == "1"


# One line of /proc/<pid>/stat, in the fields we need; `start` is in clock ticks since boot.
Process = collections.namedtuple("Process", "pid state ppid start")


def boot_ticks():
    """Now, in the clock ticks since boot that /proc/<pid>/stat gives process start times in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS)


def processes_started_since(ticks, spare):
    """Every process but `spare` started at or after `ticks`, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spare:
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "X" and int(fields[19]) >= ticks:
            found.append(Process(int(entry), fields[0], int(fields[1]), fields[19]))
    return found


def is_alive(process):
    return process.state not in "ZX"


def lingers(process, reaper):
    """Whether a killed process still holds its pid: alive (a SIGKILL takes effect only once the
    process is scheduled, and a fork bomb's are at niceness 19 on a busy machine), or a zombie that
    init has not collected yet. `reaper`'s own zombies are left to it: it reaps them itself."""
    return is_alive(process) or process.ppid != reaper


def kill_until_gone(ticks, spare, reaper, reap_own=lambda: None):
    """Kill every process but `spare` started since `ticks`, and wait until they are gone, so that the
    next action gets their pids (the container's pids limit) and their CPU back. A process with
    SIGKILL pending cannot complete a fork, so each round finds only the children made before their
    parent was killed, until a round finds none. Gives up waiting after KILL_SETTLE_S. Returns the
    pids killed and how many processes were still exiting then."""
    if not in_sandbox():
        return [], 0
    killed = set()
    deadline = time.monotonic() + KILL_SETTLE_S
    while True:
        reap_own()
        found = processes_started_since(ticks, spare)
        fresh = [p for p in found if is_alive(p) and (p.pid, p.start) not in killed]
        for process in fresh:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except OSError:
                pass
        killed.update((p.pid, p.start) for p in fresh)
        lingering = [p for p in found if lingers(p, reaper)]
        if not lingering or time.monotonic() >= deadline:
            return sorted(pid for pid, _ in killed), len(lingering)
        if not fresh:
            time.sleep(KILL_POLL_S)


def reap_our_children():
    """Collect our zombies that are ready, without waiting; init reaps the rest."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                return
        except ChildProcessError:
            return


def kill_strays():
    """In our container, kill every process but init and us and wait until they are gone: whatever a
    dead worker started (servers, sh() jobs in their own sessions, a fork bomb) must not outlive it.
    kill(-1) signals them all at once, so nothing can fork its way past us."""
    if not in_sandbox():
        return
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    kill_until_gone(0, (1, os.getpid()), reaper=os.getpid(), reap_own=reap_our_children)


def deprioritise_processes_started_since(ticks, spare):
    """Nice 19 for every process but `spare` started since `ticks` (raising niceness needs no
    privilege): the scheduler then gives the interpreter and the supervisor nearly all the CPU."""
    if not in_sandbox():
        return
    for process in processes_started_since(ticks, spare):
        if is_alive(process):
            try:
                os.setpriority(os.PRIO_PROCESS, process.pid, 19)
            except OSError:
                pass


def read_cgroup_value(paths, key=None):
    """The first readable value among cgroup v2 and v1 files: a one-value file, or the `key` line's."""
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.strip().rpartition(" ")
                    if key is None or name == key:
                        return value
        except OSError:
            continue
    return None


def oom_kills():
    """How many processes the kernel's out-of-memory killer has killed in this container so far."""
    value = read_cgroup_value(
        ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"), key="oom_kill"
    )
    return int(value) if value and value.isdigit() else None


def memory_limit_text():
    value = read_cgroup_value(("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    if not value or not value.isdigit() or int(value) >= 1 << 60:
        return "the sandbox's memory limit"
    mib = int(value) / (1 << 20)
    return "the sandbox's memory limit (%s)" % (
        "%g GiB" % round(mib / 1024, 1) if mib >= 1024 else "%d MiB" % mib
    )


class OomWatch:
    """Tells a kill by the out-of-memory killer from any other SIGKILL, by its counter in the cgroup."""

    def __init__(self):
        self.seen = oom_kills()

    def fired(self):
        """Whether the OOM killer struck since the last call."""
        now = oom_kills()
        fired = now is not None and self.seen is not None and now > self.seen
        self.seen = now
        return fired


def wait_for_exit(proc):
    try:
        return proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return None


def describe_exit(code, out_of_memory=False):
    if out_of_memory:
        return "the interpreter was killed by the out-of-memory killer: the action went past %s" % (
            memory_limit_text()
        )
    if code is None:
        return "the interpreter stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        return "the interpreter was killed by %s" % name
    return "the interpreter exited with code %d" % code


class Action:
    """One action in flight: its request, the output collected so far, and how it is ending."""

    def __init__(self, message, worker):
        self.id = message.get("id")
        self.max_output = int(message.get("max_output") or DEFAULT_MAX_OUTPUT)
        self.started = time.monotonic()
        self.deadline = self.started + float(message.get("timeout") or 60)
        self.started_ticks = boot_ticks()
        self.marker = ("\x00actsmith-end-%s\x00" % uuid.uuid4().hex).encode()
        self.out, self.err = HeadTail(self.max_output), HeadTail(self.max_output)
        self.worker = worker
        self.streams = {worker.proc.stdout.fileno(): self.out, worker.proc.stderr.fileno(): self.err}
        self.result = None
        self.timed_out = False
        self.interrupted_at = None
        self.reinterrupt_at = 0.0
        self.killed = set()  # pids of processes it started that were killed when it was stopped
        self.reason = None  # why the worker must be replaced

    def request(self, code, reap):
        return {"code": code, "marker": self.marker.decode(), "max_output": self.max_output, "reap": reap}


class Supervisor:
    def __init__(self, out):
        self.out = out
        self.worker = Worker()
        self.oom = OomWatch()
        self.reap = []  # pids the worker should reap: its children we killed after an interrupt
        self.host_buf = b""
        self.host_eof = False
        self.interrupt_next = None  # the id of an action interrupted before it arrived
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)

    def send(self, message):
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def restart_worker(self):
        self.worker.kill()
        kill_strays()
        self.reap = []
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
            elif op == "interrupt":
                # Between actions: it names the action the host is about to send (its interrupt
                # raced the request); that one is not run. An older id has nothing left to stop.
                self.interrupt_next = message.get("id")

    def run_action(self, message, pending):
        if message.get("id") is not None and message.get("id") == self.interrupt_next:
            return self.interrupted_before_start(message)
        # Its interrupt may have come in the same read as the request, so be waiting right behind it.
        aimed = [m for m in pending if m.get("op") == "interrupt" and m.get("id") == message.get("id")]
        if message.get("id") is not None and aimed:
            pending[:] = [m for m in pending if m not in aimed]
            return self.interrupted_before_start(message)
        lost = self.ensure_worker_alive()
        action = Action(message, self.worker)
        try:
            self.worker.req.write(json.dumps(action.request(message["code"], self.reap)) + "\n")
        except BrokenPipeError:
            lost = (
                describe_exit(wait_for_exit(self.worker.proc), self.oom.fired())
                + " before the action started"
            )
            self.restart_worker()
            action = Action(message, self.worker)
            self.worker.req.write(json.dumps(action.request(message["code"], [])) + "\n")
        self.reap = []
        self.collect(action, pending)
        notes = self.settle(action)
        restarted = action.reason is not None or lost is not None
        return self.reply(action, restarted, action.reason or lost, notes)

    def collect(self, action, pending):
        """Gather the action's output until the worker answers, dies, or ignores an interrupt."""
        worker = action.worker
        sel = selectors.DefaultSelector()
        for fd in action.streams:
            sel.register(fd, selectors.EVENT_READ)
        sel.register(worker.resp_fd, selectors.EVENT_READ)
        sel.register(self.stdin_fd, selectors.EVENT_READ)
        while action.result is None and action.reason is None:
            now = time.monotonic()
            if action.interrupted_at is None and now >= action.deadline:
                action.timed_out = True
                self.interrupt(action, now)
            if action.interrupted_at is not None and now >= action.interrupted_at + INTERRUPT_GRACE_S:
                action.reason = "it did not stop after an interrupt"
                break
            if action.interrupted_at is not None and now >= action.reinterrupt_at:
                # Code that catches BaseException in a loop swallows one KeyboardInterrupt; the next
                # lands elsewhere in the loop. Repeating keeps the interpreter (and its variables).
                self.interrupt(action, now)
            wait_until = (
                min(action.interrupted_at + INTERRUPT_GRACE_S, action.reinterrupt_at)
                if action.interrupted_at
                else action.deadline
            )
            for key, _ in sel.select(max(wait_until - now, 0.001)):
                self.on_ready(key.fd, action, sel, pending)
        sel.close()

    def on_ready(self, fd, action, sel, pending):
        worker = action.worker
        if fd == self.stdin_fd:
            for msg in self.read_host_messages():
                if msg.get("op") != "interrupt":
                    pending.append(msg)
                elif msg.get("id") in (None, action.id) and action.interrupted_at is None:
                    self.interrupt(action, time.monotonic())
                elif msg.get("id") is not None and msg.get("id") != action.id:
                    self.interrupt_next = msg.get("id")
            if self.host_eof:
                sel.unregister(fd)
        elif fd == worker.resp_fd:
            action.result = worker.read_message(timeout=10.0)
            if action.result is None:
                action.reason = describe_exit(wait_for_exit(worker.proc), self.oom.fired())
                sel.unregister(fd)
        else:
            chunk = self.read_chunk(fd)
            if chunk:
                action.streams[fd].add(chunk)
            elif chunk == b"":
                action.streams[fd].eof = True
                sel.unregister(fd)

    def settle(self, action):
        """After the worker answered or gave up: collect the rest of the output, clean up what an
        interrupted action left running, replace a broken worker. Returns notes for the model."""
        notes = []
        if action.result is None:
            self.drain(action.streams, marker=None)
            action.result = {}
        else:
            self.drain(action.streams, marker=action.marker)
            if any(buf.eof for buf in action.streams.values()):
                action.reason = "the action closed the interpreter's stdout or stderr"
        if action.reason is not None:
            self.restart_worker()
        elif action.interrupted_at is not None:
            lingering = self.kill_what_it_started(action)
            self.reap = sorted(action.killed)
            if self.reap:
                notes.append("[%d processes the action started were killed with it]" % len(self.reap))
            if lingering:
                notes.append("[%d of them had not exited %g s later]" % (lingering, KILL_SETTLE_S))
        if self.oom.fired():
            notes.append(
                "[a process was killed by the out-of-memory killer: it went past %s]" % memory_limit_text()
            )
        return notes

    def interrupted_before_start(self, message):
        return {
            "id": message.get("id"),
            "ok": True,
            "error": "KeyboardInterrupt: the action was interrupted before it started",
            "interrupted": True,
            "duration_s": 0.0,
        }

    def reply(self, action, restarted, reason, notes):
        stdout, cut_out, escaped_out = action.out.text(action.max_output)
        stderr, cut_err, escaped_err = action.err.text(action.max_output)
        result = action.result
        return {
            "id": action.id,
            "ok": True,
            "stdout": stdout + (ESCAPED_NOTE if escaped_out else ""),
            "stderr": "\n".join(filter(None, [stderr + (ESCAPED_NOTE if escaped_err else ""), *notes])),
            "value": result.get("value"),
            "error": result.get("error"),
            "control": result.get("control"),
            "timed_out": action.timed_out,
            "interrupted": action.interrupted_at is not None,
            "restarted": restarted,
            "restart_reason": reason if restarted else None,
            "truncated_chars": cut_out + cut_err + int(result.get("truncated_chars") or 0),
            "duration_s": round(time.monotonic() - action.started, 4),
        }

    def ensure_worker_alive(self):
        """Replace a worker that died between actions; say why, since its variables are gone."""
        code = self.worker.proc.poll()
        if code is None:
            return None
        reason = describe_exit(code, self.oom.fired()) + " after the previous action"
        self.restart_worker()
        return reason

    def interrupt(self, action, now):
        """Stop an action: the interpreter gets SIGINT, again every REINTERRUPT_EVERY_S until it
        answers or the grace runs out; whatever the action started is put at the lowest priority
        first, so that a fork bomb cannot starve the interpreter (and us) of the CPU it needs to
        raise KeyboardInterrupt. settle() kills those processes."""
        if action.interrupted_at is None:
            action.interrupted_at = now
        action.reinterrupt_at = now + REINTERRUPT_EVERY_S
        spare = (1, os.getpid(), self.worker.proc.pid)
        deprioritise_processes_started_since(action.started_ticks, spare)
        self.interrupt_worker(now)

    def kill_what_it_started(self, action):
        """Kill what the action left running; the interpreter reaps its own children (the killed
        pids are sent with the next request). Returns how many were still exiting."""
        spare = (1, os.getpid(), self.worker.proc.pid)
        killed, lingering = kill_until_gone(action.started_ticks, spare, reaper=self.worker.proc.pid)
        action.killed.update(killed)
        return lingering

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
