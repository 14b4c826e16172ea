"""The kernel's supervisor, driven over its stdio as the host drives it (no Docker: the kernel is
stdlib-only and runs as a plain subprocess here)."""

from __future__ import annotations

import json
import subprocess
import sys

from agent_cli.sandbox.local import KERNEL


def test_an_interrupt_arriving_in_the_same_read_as_its_action_stops_it_at_once(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-u", str(KERNEL)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        run = {"id": 1, "op": "run", "code": "import time\ntime.sleep(60)", "timeout": 60, "max_output": 1000}
        # One write, so the supervisor reads both lines at once: Ctrl-C right as the action is sent.
        proc.stdin.write((json.dumps(run) + "\n" + json.dumps({"op": "interrupt", "id": 1}) + "\n").encode())
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        # Not run at all: without this, the action slept its 60 s and came back uninterrupted.
        assert reply["id"] == 1 and reply.get("interrupted") is True, reply
        follow = {"id": 2, "op": "run", "code": "print('next')", "timeout": 10, "max_output": 1000}
        proc.stdin.write((json.dumps(follow) + "\n").encode())
        proc.stdin.flush()
        assert "next" in json.loads(proc.stdout.readline())["stdout"]
    finally:
        proc.kill()
        proc.wait()
