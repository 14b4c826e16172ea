"""Run one test command inside the sandbox container; print its outcome as one JSON line.

The host starts this through the sandbox's exec (`python3 -I -c <this file> <job as JSON>`), beside
the model's interpreter, so it runs under the same limits, user and mounts. Stdlib only, written for
any python3 an image may have. For a baseline, the repository as it was before the run arrives as a
tar on stdin. When the host closes stdin (it gave up, or the session was cancelled), the command is
killed: a test run never outlives the one who asked for it.
"""

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

INTERRUPT_GRACE_S = 5.0  # after SIGINT: pytest still writes its JUnit report and shows where it hung
SETTLE_S = 0.5  # output of background jobs the command left behind, after it exited
MAX_REPORT_BYTES = 20_000_000


class Kept:
    """The first `head` and last `tail` bytes of a stream: bounded memory whatever a suite prints."""

    def __init__(self, head, tail):
        self.head_size, self.tail_size = head, tail
        self.head, self.tail = bytearray(), bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.head_size - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        del self.tail[: max(len(self.tail) - self.tail_size, 0)]

    def text(self):
        cut = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        if cut <= 0:
            return head + tail, 0
        return f"{head}\n[... {cut} bytes of output cut ...]\n{tail}", cut


def extract_snapshot(target):
    """Unpack the tar on stdin (made by the host's git from the pre-run tree) into a fresh folder."""
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
        if hasattr(tarfile, "tar_filter"):
            archive.extractall(target, filter="tar")  # paths stay inside target; symlinks kept
        else:
            archive.extractall(target)


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


def relay(proc, kept, deadline):
    """Collect the output until the command ends. Past the deadline: SIGINT to its whole process
    group, then SIGKILL after a grace period. Returns whether the deadline was hit."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    interrupted_at = exited_at = None
    eof = killed = False
    while True:
        now = time.monotonic()
        if interrupted_at is None and now >= deadline:
            interrupted_at = now
            signal_group(proc, signal.SIGINT)
        if interrupted_at is not None and not killed and now >= interrupted_at + INTERRUPT_GRACE_S:
            killed = True
            signal_group(proc, signal.SIGKILL)
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and (eof or now >= exited_at + SETTLE_S):
            break
        if eof:
            time.sleep(0.05)
            continue
        for _ in selector.select(0.1):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                kept.add(chunk)
            else:
                eof = True
                selector.unregister(fd)
    selector.close()
    return interrupted_at is not None


def stop_when_stdin_closes(proc, host_gone):
    """Kill the command's process group once the host closes our stdin."""

    def watch():
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except (OSError, ValueError):
            pass
        host_gone.set()
        signal_group(proc, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def read_reports(folder):
    reports = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                reports[name] = f.read(MAX_REPORT_BYTES).decode("utf-8", "replace")
    return reports


def editable_paths(workspace):
    """Folders under `workspace` that an editable install puts on Python's path (a path line in a
    .pth file, or a package mapped by setuptools' editable finder), relative to it."""
    import glob
    import re
    import site

    found = []
    prefix = workspace.rstrip("/") + "/"
    for folder in site.getsitepackages():
        for path in glob.glob(os.path.join(folder, "*.pth")) + glob.glob(
            os.path.join(folder, "__editable__*.py")
        ):
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            if path.endswith(".pth"):
                candidates = [line.strip() for line in text.splitlines() if not line.startswith("import")]
            else:  # {'package': '/workspace/src/package'}: the package's parent goes on the path
                candidates = [os.path.dirname(p) for p in re.findall(r"['\"](/[^'\"]+)['\"]", text)]
            for candidate in candidates:
                if candidate == workspace or candidate.startswith(prefix):
                    relative = os.path.relpath(candidate, workspace)
                    if relative not in found:
                        found.append(relative)
    return found


def run(job):
    if job.get("snapshot"):
        extract_snapshot(job["cwd"])
    reports = job["reports"]
    shutil.rmtree(reports, ignore_errors=True)
    os.makedirs(reports)
    env = dict(os.environ)
    env.update(job.get("env") or {})
    if job.get("shadow"):
        # A copy of the repository (the baseline) must import its own code, not the live tree that
        # editable installs point at: its folders go first on the path.
        paths = [os.path.normpath(os.path.join(job["cwd"], p)) for p in editable_paths(job["shadow"])]
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    started = time.monotonic()
    # Its own session: a timeout stops everything the suite started, servers included.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", job["command"]],
        cwd=job["cwd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    host_gone = threading.Event()
    stop_when_stdin_closes(proc, host_gone)
    kept = Kept(job.get("keep_head", 20000), job.get("keep_tail", 80000))
    timed_out = relay(proc, kept, started + float(job["timeout"]))
    if host_gone.is_set():
        return {"error": "the host stopped waiting"}
    signal_group(proc, signal.SIGKILL)  # background processes the suite left running
    proc.wait()
    output, cut = kept.text()
    result = {
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 3),
        "output": output,
        "output_cut": cut,
        "reports": read_reports(reports),
    }
    shutil.rmtree(reports, ignore_errors=True)
    return result


def main():
    try:
        result = run(json.loads(sys.argv[1]))
    except Exception as error:  # the host shows this instead of a result
        result = {"error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
