"""The persistent interpreter: runs code actions in one namespace, like a REPL.

Started by server.py, which owns our stdout/stderr pipes and reads requests/replies on the control
file descriptors named in ACTSMITH_CONTROL_FDS. Stdlib only.
"""

import ast
import builtins
import json
import linecache
import os
import signal
import sys
import traceback

from common import cut_middle, escape_unshowable

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Control(BaseException):
    """Raised by finish() and run_tests() to end the action and tell the harness what to do next
    (`control` is a JSON-ready dict with a "kind"). A BaseException so that `except Exception` in an
    action cannot swallow it."""

    def __init__(self, control):
        super().__init__(control.get("kind"))
        self.control = control


def compile_action(code, filename):
    """Compile like a REPL: a trailing expression is evaluated so its value can be echoed."""
    tree = ast.parse(code, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec")
    tail = compile(last, filename, "eval") if last is not None else None
    return body, tail


def format_error(exc, filename):
    """A traceback of the action's own code: kernel frames (this file, the helpers) are left out."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(KERNEL_DIR)]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


class Kernel:
    def __init__(self, helpers):
        self.namespace = {"__name__": "__main__", "__builtins__": builtins}
        self.count = 0
        helpers.install(self.namespace, Control)

    def run(self, code, max_output):
        self.count += 1
        filename = "<action-%d>" % self.count
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        reply = {"value": None, "error": None, "control": None, "truncated_chars": 0}

        def capped(key, text):
            reply[key], cut = cut_middle(escape_unshowable(text)[0], max_output)
            reply["truncated_chars"] += cut

        try:
            body, tail = compile_action(code, filename)
            exec(body, self.namespace)
            if tail is not None:
                value = eval(tail, self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    capped("value", repr(value))
        except Control as done:
            control = dict(done.control)
            if "summary" in control:
                control["summary"], cut = cut_middle(
                    escape_unshowable(str(control["summary"]))[0], max_output
                )
                reply["truncated_chars"] += cut
            reply["control"] = control
        except KeyboardInterrupt:
            reply["error"] = "KeyboardInterrupt: the action was interrupted"
        except BaseException as exc:  # an action may raise anything, SystemExit included
            capped("error", format_error(exc, filename))
        return reply


class StdStreams:
    """The interpreter's own sys.stdout and sys.stderr. An action may close or replace them; after it,
    they are put back (reopened on the same pipes if closed), so the next action's output is seen."""

    def __init__(self):
        self.out, self.err = sys.stdout, sys.stderr

    def restore(self):
        if self.out.closed:
            self.out = reopen(1)
        if self.err.closed:
            self.err = reopen(2)
        sys.stdout, sys.stderr = self.out, self.err


def reopen(fd):
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def flush_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # an action may have closed or replaced them
            pass


def flush_with_marker(marker):
    """Flush our streams, then write the marker the supervisor waits for on each pipe."""
    flush_streams()
    for fd in (1, 2):
        try:
            os.write(fd, marker.encode())
        except OSError:
            pass


def load_kernel_modules():
    """Import our modules, then hide them: the repository's own `helpers` or `common` must win, and
    the repository root takes the place of this directory at the front of sys.path."""
    import helpers

    for name in ("helpers", "common"):
        sys.modules.pop(name, None)
    sys.path[0] = os.getcwd()
    return helpers


def volunteer_for_oom_killer():
    """Make us (and whatever an action starts) the out-of-memory killer's first choice, so a memory
    bomb kills this interpreter, never the supervisor. Raising the score needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def detach_forks_from(resp_fd):
    """A process an action forks must not hold our reply pipe: the supervisor learns that we died
    from that pipe's end of file. /dev/null takes its place, so the number is never reused."""

    def in_child():
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, resp_fd, inheritable=False)
        os.close(devnull)

    os.register_at_fork(after_in_child=in_child)


def reap(pids):
    """Collect our children that the supervisor killed after an interrupt: zombies count against the
    container's pids limit. They were sent SIGKILL, so waiting for them is short."""
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not ours: init reaps it
            pass


def run_request(kernel, request):
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return kernel.run(request["code"], int(request.get("max_output") or 10000))
    except KeyboardInterrupt:
        return {"error": "KeyboardInterrupt: the action was interrupted"}
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main():
    req_fd, resp_fd = (int(x) for x in os.environ.pop("ACTSMITH_CONTROL_FDS").split(","))
    os.set_inheritable(req_fd, False)
    os.set_inheritable(resp_fd, False)
    requests = os.fdopen(req_fd, "r")
    replies = os.fdopen(resp_fd, "w", buffering=1)
    volunteer_for_oom_killer()
    detach_forks_from(resp_fd)
    kernel = Kernel(load_kernel_modules())
    streams = StdStreams()
    me = os.getpid()
    replies.write(json.dumps({"event": "ready"}) + "\n")
    # SIGINT is how the supervisor stops a running action; between actions it must not kill us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in requests:
        request = json.loads(line)
        reap(request.get("reap") or ())
        reply = run_request(kernel, request)
        streams.restore()
        if os.getpid() != me:
            # A process the action forked (os.fork() with no exit in the child) got here: only the
            # interpreter itself may answer, or the next action would read this one's reply.
            flush_streams()
            os._exit(0)
        flush_with_marker(request["marker"])
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
