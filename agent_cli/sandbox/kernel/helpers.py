"""Helpers preloaded into every action's namespace. Stdlib only.

Every public function listed in __all__ is documented to the model in the system prompt, which is built
from these signatures and docstrings, so keep each docstring short, exact and written for the model.
"""

import os
import re
import selectors
import signal
import subprocess
import sys
import time

__all__ = ["create", "find_symbol", "finish", "insert", "replace", "run_tests", "search", "sh", "view"]

VIEW_WINDOW = 400
MAX_MATCHES = 100
SKIP_DIRS = {
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".actsmith",
}
_control = None


class HelperError(Exception):
    """A helper was used wrongly; the message says how to fix the call."""


def _read(path):
    if not os.path.isfile(path):
        raise HelperError("%s: no such file (paths are relative to the repository root)" % path)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


def _write(path, text):
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write(text)


def view(path, start=1, end=None):
    """Print lines start..end (1-based, inclusive) of a file with line numbers; at most 400 lines at once."""
    lines = _read(path).splitlines()
    if end is None:
        end = min(len(lines), start + VIEW_WINDOW - 1)
    end = min(end, len(lines), start + VIEW_WINDOW - 1)
    width = len(str(end))
    for number in range(max(start, 1), end + 1):
        print("%*d| %s" % (width, number, lines[number - 1]))
    if end < len(lines):
        print("[%d more lines: view(%r, %d)]" % (len(lines) - end, path, end + 1))


def create(path, content, overwrite=False):
    """Create a file with this content (parent folders too). Refuses to replace an existing file unless overwrite=True."""
    if os.path.exists(path) and not overwrite:
        raise HelperError(
            "%s already exists: use replace() to edit it, or create(..., overwrite=True)" % path
        )
    _write(path, content)
    print("created %s (%d lines)" % (path, content.count("\n") + (0 if content.endswith("\n") else 1)))


def _near_misses(text, old):
    """Lines of the file most like the first line of `old`, to show why an exact match failed."""
    import difflib  # only on a failed match: importing it costs every interpreter start ~6 ms

    lines = text.splitlines()
    probe = old.strip().splitlines()[0] if old.strip() else old
    close = difflib.get_close_matches(probe, [line.strip() for line in lines], n=3, cutoff=0.6)
    hits = []
    for candidate in close:
        for number, line in enumerate(lines, 1):
            if line.strip() == candidate:
                hits.append("  line %d: %s" % (number, line))
                break
    return hits


def replace(path, old, new):
    """Replace the exact text `old` with `new` in a file. `old` must occur exactly once (include more context if it is not unique)."""
    text = _read(path)
    count = text.count(old) if old else 0
    if count == 1:
        _write(path, text.replace(old, new, 1))
        line = text[: text.index(old)].count("\n") + 1
        print("replaced 1 occurrence in %s at line %d" % (path, line))
        return
    if count > 1:
        lines = [str(text[: m.start()].count("\n") + 1) for m in re.finditer(re.escape(old), text)]
        raise HelperError(
            "%s: `old` occurs %d times (lines %s); add surrounding lines to make it unique"
            % (path, count, ", ".join(lines[:20]))
        )
    hint = _near_misses(text, old) if old else []
    message = "%s: `old` was not found (it must match exactly, whitespace included)" % path
    if hint:
        message += "; closest lines:\n" + "\n".join(hint)
    raise HelperError(message)


def insert(path, line, text):
    """Insert text after line number `line` (0 inserts at the top of the file)."""
    content = _read(path)
    lines = content.splitlines(True)
    if not 0 <= line <= len(lines):
        raise HelperError("%s has %d lines; line must be between 0 and %d" % (path, len(lines), len(lines)))
    if not text.endswith("\n"):
        text += "\n"
    if line > 0 and not lines[line - 1].endswith("\n"):
        lines[line - 1] += "\n"
    lines.insert(line, text)
    _write(path, "".join(lines))
    print("inserted %d lines after line %d of %s" % (text.count("\n"), line, path))


def _walk_files(path):
    if os.path.isfile(path):
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            yield os.path.normpath(os.path.join(root, name))


def _text_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read(2_000_000)
    except OSError:
        return []
    if b"\0" in data[:8192]:
        return []
    return data.decode("utf-8", "replace").splitlines()


def search(pattern, path=".", regex=False):
    """Print `file:line: text` for lines containing `pattern` (a regular expression if regex=True) under path."""
    matcher = re.compile(pattern if regex else re.escape(pattern))
    found = 0
    for file in _walk_files(path):
        for number, line in enumerate(_text_lines(file), 1):
            if matcher.search(line):
                found += 1
                if found <= MAX_MATCHES:
                    print("%s:%d: %s" % (file, number, line.strip()[:200]))
    if found > MAX_MATCHES:
        print("[%d more matches not shown: narrow the pattern or the path]" % (found - MAX_MATCHES))
    if not found:
        print("no matches for %r under %s" % (pattern, path))
    return found


_DEFINITION = (
    r"^\s*(?:export\s+)?(?:async\s+)?(?:def|class|function|func|fn|struct|interface|type|enum|trait)\s+%s\b"
)


def find_symbol(name, path="."):
    """Print where a function, class or type called `name` is defined (Python, JS/TS, Go, Rust, Java...)."""
    definition = re.compile(_DEFINITION % re.escape(name))
    method = re.compile(r"^\s*func\s+\([^)]*\)\s+%s\b" % re.escape(name))
    found = 0
    for file in _walk_files(path):
        for number, line in enumerate(_text_lines(file), 1):
            if definition.search(line) or method.search(line):
                found += 1
                print("%s:%d: %s" % (file, number, line.strip()[:200]))
    if not found:
        print("no definition of %r found under %s" % (name, path))
    return found


class ShellResult:
    """Outcome of sh(): its output was already printed; truthy when the command succeeded."""

    def __init__(self, returncode, output):
        self.returncode = returncode
        self.output = output

    def __bool__(self):
        return self.returncode == 0

    def __repr__(self):
        return "<exit code %d>" % self.returncode


def sh(cmd, timeout=None):
    """Run a shell command in the repository root; prints its output (stdout and stderr) and returns a result with .returncode and .output (last 64 KB). Start background jobs with their output sent to a file: `sh("server > server.log 2>&1 &")`."""
    sys.stdout.flush()
    # Its own process group, so an interrupt or a timeout stops everything the command started.
    proc = subprocess.Popen(
        cmd,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        kept = _relay_output(proc, timeout)
        returncode = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    sys.stdout.flush()
    return ShellResult(returncode, kept.decode("utf-8", "replace"))


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def _relay_output(proc, timeout):
    """Print the command's output as it comes; stop shortly after the shell exits even if a
    background job it started still holds the pipe open."""
    deadline = None if timeout is None else time.monotonic() + timeout
    kept = bytearray()
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                return kept
            if selector.select(0.05):
                chunk = os.read(fd, 65536)
                if not chunk:
                    return kept
                sys.stdout.buffer.write(chunk)
                kept += chunk
                del kept[:-65536]
    finally:
        selector.close()


def run_tests(cmd=None, timeout=None):
    """Run the repository's tests (or the shell command `cmd`) when this action ends. Your next observation is a report: failures with their assertion and traceback, compared with the tests before your first edit. Code after run_tests() in the same action does not run."""
    if cmd is not None and not isinstance(cmd, str):
        raise HelperError(
            "run_tests(cmd): cmd is a shell command as one string, or None for the project's tests"
        )
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise HelperError("run_tests(timeout=...): a number of seconds above 0, or None")
    raise _control({"kind": "run_tests", "command": cmd, "timeout": timeout})


def finish(summary):
    """End the task. `summary` says what you changed and why. Code after finish() in the same action does not run. The tests run first: if tests that passed before your first edit fail, you get their report instead and the task goes on."""
    raise _control({"kind": "finish", "summary": str(summary)})


def install(namespace, control_exception):
    """Bind the helpers into an action namespace; `control_exception` ends an action with a control
    value for the harness (see worker.Control)."""
    global _control
    _control = control_exception
    for name in __all__:
        namespace[name] = globals()[name]
