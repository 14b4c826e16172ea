"""Hostile actions against the real Docker sandbox.

Each must be contained (the sandbox and the host survive, within a bounded time), explained in the
observation (what the model is shown), and followed by an action that runs: in the same interpreter
with its variables when it could be stopped cleanly, in a restarted one (and the model told so) when not.
Most tests share one sandbox: recovering from the previous attack is part of what they check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_SANDBOXES, container_ids, limits, make_repo

from agent_cli.sandbox import Observation
from agent_cli.sandbox.docker_sandbox import DockerSandbox

pytestmark = pytest.mark.docker

LIMITS = limits(memory="256m", cpus=1.0, pids=128, max_output_chars=2000)
CANARY = "canary = 'set before the attack'"
# The next action: did the variables survive, and can it still start processes?
PROBE = "print('canary' in globals())\nsh('echo shell works')"


@pytest.fixture(scope="module")
def box(docker_client, sandbox_image, tmp_path_factory):
    sandbox = DockerSandbox(docker_client, sandbox_image, tmp_path_factory.mktemp("workspace"), LIMITS)
    sandbox.start()
    SHARED_SANDBOXES.append(sandbox)
    yield sandbox
    SHARED_SANDBOXES.remove(sandbox)
    sandbox.close()


@dataclass
class Attack:
    obs: Observation  # what the hostile action produced
    next: Observation  # the action after it

    @property
    def variables_kept(self) -> bool:
        return self.next.stdout.startswith("True\n")

    def next_ran(self) -> bool:
        return "shell works" in self.next.stdout and not self.next.restarted


def attack(box: DockerSandbox, code: str, timeout: float = 10) -> Attack:
    """Run a hostile action and then the probe. How long containment takes is measured by
    bench/hostile_actions.py, not asserted here."""
    assert box.run(CANARY, 10).error is None
    obs = box.run(code, timeout)
    return Attack(obs, box.run(PROBE, 10))


def assert_restarted(result: Attack, reason: str) -> None:
    """The interpreter was replaced, the model is told why, and the next action runs without variables."""
    assert result.obs.restarted, result.obs
    assert reason in result.obs.restart_reason
    assert result.next_ran(), result.next
    assert not result.variables_kept


def assert_interrupted(result: Attack, timeout: float) -> None:
    """The action was stopped at its timeout; the same interpreter, variables and all, runs the next one."""
    assert result.obs.timed_out and not result.obs.restarted, result.obs
    assert "KeyboardInterrupt" in result.obs.error
    assert result.next_ran() and result.variables_kept, result.next


# ------------------------------------------------------------------------------ stopped by an interrupt


def test_an_endless_loop_is_interrupted_and_the_variables_kept(box):
    assert_interrupted(attack(box, "while True:\n    pass", timeout=1), timeout=1)


@pytest.mark.parametrize(
    "code",
    [
        "import time\ntime.sleep(60)",
        "import ctypes\nctypes.CDLL(None).sleep(60)",
        "import os\nread_end, _ = os.pipe()\nos.read(read_end, 1)",
    ],
    ids=["time.sleep", "libc-sleep-through-ctypes", "blocking-read"],
)
def test_a_blocking_c_call_is_interrupted(box, code):
    assert_interrupted(attack(box, code, timeout=1), timeout=1)


def test_a_call_that_blocks_the_interrupt_gets_a_new_interpreter(box):
    code = "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])\ntime.sleep(60)"
    result = attack(box, code, timeout=1)
    assert result.obs.timed_out
    assert_restarted(result, "it did not stop after an interrupt")


def test_reading_stdin_gets_end_of_file_at_once(box):
    result = attack(box, "import sys\nprint(repr(sys.stdin.read()))\ninput()", timeout=10)
    assert not result.obs.timed_out  # nothing waited for input
    assert result.obs.stdout == "''\n" and "EOFError" in result.obs.error
    assert result.next_ran() and result.variables_kept


# -------------------------------------------------------------------------------------- resource bombs


def test_a_fork_bomb_is_stopped_and_every_process_it_started_killed(box):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass"
    result = attack(box, code, timeout=2)
    assert result.obs.timed_out and not result.obs.restarted
    assert "processes the action started were killed with it" in result.obs.stderr
    assert result.next_ran() and result.variables_kept  # sh() can fork again: the pids are free
    # Counted at once, not polled: the observation comes only when the killed processes are gone
    # (not merely sent SIGKILL), so the next action has the pids limit to itself.
    left = box.run("import os\nlen([p for p in os.listdir('/proc') if p.isdigit()])", 10)
    assert int(left.value) <= 4  # init, the supervisor, the interpreter (and a zombie at most)


def test_a_memory_bomb_kills_the_interpreter_not_the_sandbox(box):
    container = box.container
    result = attack(box, "hoard = []\nwhile True:\n    hoard.append(' ' * 10_000_000)", timeout=20)
    assert_restarted(result, "killed by the out-of-memory killer")
    assert "memory limit (256 MiB)" in result.obs.restart_reason
    assert not result.obs.timed_out  # killed, not left to run into its timeout
    assert box.container == container  # the supervisor survived: same container


def test_a_memory_bomb_in_a_subprocess_is_reported_and_the_interpreter_kept(box):
    result = attack(
        box, "r = sh('python3 -c \"x = bytearray(1 << 30); x[::4096] = b\\'x\\' * (1 << 18)\"')\nr"
    )
    assert not result.obs.restarted
    assert result.obs.value in ("<exit code 137>", "<exit code -9>")  # killed by SIGKILL
    assert "killed by the out-of-memory killer" in result.obs.stderr
    assert result.next_ran() and result.variables_kept


# ------------------------------------------------------------------------------ the interpreter dies


def test_os_exit_gets_a_new_interpreter(box):
    result = attack(box, "import os\nos._exit(3)")
    assert_restarted(result, "the interpreter exited with code 3")


def test_sigkill_of_the_interpreter_gets_a_new_one(box):
    result = attack(box, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert_restarted(result, "killed by SIGKILL")
    assert "out-of-memory" not in result.obs.restart_reason


def test_sigkill_of_the_supervisor_gets_a_new_sandbox(box, docker_client):
    old = box.container
    result = attack(box, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert_restarted(result, "the sandbox container stopped")
    assert box.container != old
    assert old not in container_ids(docker_client)


@pytest.mark.parametrize(
    "payload",
    ["b'this is not json\\n'", "b'x' * (80 << 20)"],
    ids=["garbage", "endless-line"],
)
def test_writing_into_the_host_channel_gets_a_new_sandbox_not_a_crash(box, payload):
    # The channel to the host is PID 1's stdout, which code running as the same user can open.
    code = f"import os\nfd = os.open('/proc/1/fd/1', os.O_WRONLY)\nos.write(fd, {payload})"
    result = attack(box, code, timeout=20)
    assert_restarted(result, "the sandbox container stopped")


def test_closing_its_stdio_gets_a_new_interpreter(box):
    result = attack(box, "import os\nos.close(1)\nos.close(2)")
    assert_restarted(result, "the action closed the interpreter's stdout or stderr")


def test_closed_or_replaced_std_streams_are_put_back(box):
    code = "import io, sys\nsys.stderr.close()\nsys.stdout = io.StringIO()\nsys.__stdout__.close()"
    result = attack(box, code)
    assert not result.obs.restarted and result.obs.error is None
    assert result.next_ran() and result.variables_kept
    assert box.run("import sys\nprint('out')\nprint('err', file=sys.stderr)", 10).stderr == "err\n"


def test_a_forked_child_that_returns_does_not_answer_for_the_interpreter(box):
    code = "import os\npid = os.fork()\nprint('parent' if pid else 'child')\nif pid:\n    os.waitpid(pid, 0)"
    result = attack(box, code)
    assert sorted(result.obs.stdout.split()) == ["child", "parent"]
    assert result.next_ran() and result.variables_kept
    assert box.run("print('clean')", 10).stdout == "clean\n"  # no second reply, no stray marker


# ----------------------------------------------------------------------------------------- output


def test_a_20_mb_print_is_cut_in_the_middle_with_a_note(box):
    result = attack(box, "print('x' * 20_000_000, end='')\nprint('END')")
    assert not result.obs.restarted and not result.obs.timed_out
    assert result.obs.truncated_chars > 19_990_000
    assert len(result.obs.stdout) < 2200
    assert "characters cut: output was too long" in result.obs.stdout
    assert result.obs.stdout.rstrip().endswith("END")
    assert result.next_ran() and result.variables_kept


def test_text_cut_inside_a_multibyte_character_is_not_called_binary(box):
    obs = box.run("print('é' * 10_000_000)", 10)
    assert "characters cut" in obs.stdout
    assert "\\x" not in obs.stdout and "escapes" not in obs.stdout


def test_binary_and_non_utf8_output_is_escaped_and_explained(box):
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)))\n"
        "print('\\x1b[2J\\x1b]0;title\\x07 done')\n"
        "sys.stderr.buffer.write(b'\\xff\\xfe latin-1: caf\\xe9\\n')\n"
        "raise ValueError('\\x1b[31mred')"
    )
    result = attack(box, code)
    obs = result.obs
    for text in (obs.stdout, obs.stderr, obs.error):
        assert "\x1b" not in text and "\x00" not in text  # nothing that could drive a terminal
    assert "\\x00\\x01" in obs.stdout and "\\x1b[2J" in obs.stdout and "done" in obs.stdout
    assert "shown as \\xNN escapes" in obs.stdout
    assert "caf\\xe9" in obs.stderr and "shown as \\xNN escapes" in obs.stderr
    assert "ValueError: \\x1b[31mred" in obs.error
    assert result.next_ran() and result.variables_kept


def test_deep_recursion_is_an_error_and_the_interpreter_kept(box):
    result = attack(box, "def down(n):\n    return down(n + 1)\ndown(0)")
    assert "RecursionError" in result.obs.error
    assert result.next_ran() and result.variables_kept


def test_unbounded_recursion_with_the_limit_lifted_is_contained(box):
    code = "import sys\nsys.setrecursionlimit(10**9)\ndef down(n):\n    return down(n + 1)\ndown(0)"
    result = attack(box, code, timeout=20)
    # Depending on the Python version the stack overflows (a signal), memory runs out, or the
    # interpreter's own C-stack guard raises: each must end the action and leave the sandbox usable.
    assert result.obs.restarted or "RecursionError" in (result.obs.error or ""), result.obs
    assert result.obs.restart_reason is None or "killed by" in result.obs.restart_reason
    assert result.next_ran()


# -------------------------------------------------------------------------- what the model is shown


def test_the_model_is_told_what_happened_and_that_its_variables_are_gone(run_agent):
    run = run_agent(
        [
            "<execute>\nkept = 1\nwhile True:\n    pass\n</execute>",
            "<execute>\nprint('kept' in globals())\nhoard = []\nwhile True:\n    hoard.append(' ' * 10**7)\n</execute>",
            "<execute>\nprint('kept' in globals())\n</execute>",
            "<execute>\nprint('\\x1b[2Jbinary\\xff')\n</execute>",
            "<execute>\nfinish('survived')\n</execute>",
        ],
        # Room for the memory bomb to reach the limit on a loaded machine before the timeout.
        "--action-timeout",
        "5",
        "--memory",
        "256m",
    )
    assert run.code == 0, run.stderr
    loop, bomb, after, binary = [e["text"] for e in run.events("observation")][:4]
    assert "stopped after 5 seconds" in loop and "KeyboardInterrupt" in loop
    assert "True" in bomb and "out-of-memory killer" in bomb and "256 MiB" in bomb
    assert "variables, imports and functions are gone" in bomb
    assert "False" in after
    assert "\\x1b[2Jbinary" in binary and "shown as \\xNN escapes" in binary


# ------------------------------------------------------------------------------- isolation from host


def test_a_host_secret_is_absent_from_the_container_and_from_the_trajectory(run_agent, tmp_path):
    secret = "s3cr3t-value-7f1c9e2b44d0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTSMITH_")}
    env.update(ACME_SERVICE_TOKEN=secret, OPENAI_API_KEY="sk-" + "k" * 40)
    run = run_agent(
        [
            "<execute>\nimport os\nprint(sorted(os.environ))\nprint(open('/proc/1/environ', 'rb').read())\n</execute>",
            # A secret that reaches an observation anyway (here the model itself echoes it).
            f"<execute>\nprint('leaked: {secret}')\n</execute>",
            "<execute>\nfinish('done')\n</execute>",
        ],
        env=env,
    )
    assert run.code == 0, run.stderr
    environment, leaked = [e["text"] for e in run.events("observation")][:2]
    assert "ACME_SERVICE_TOKEN" not in environment and "OPENAI_API_KEY" not in environment
    assert "ACTSMITH_SANDBOX" in environment  # the listing did run
    assert "leaked: [REDACTED:ACME_SERVICE_TOKEN]" in leaked
    recorded = (tmp_path / "trajectory.jsonl").read_text()
    assert secret not in recorded and "k" * 40 not in recorded


def test_limits_and_network_flags_reach_the_container(run_agent):
    show = (
        "import socket\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
        "read = lambda p: open('/sys/fs/cgroup/' + p).read().split()[0]\n"
        "print(read('memory/memory.limit_in_bytes'), read('cpu/cpu.cfs_quota_us'), read('pids/pids.max'))"
    )
    if not os.path.exists("/sys/fs/cgroup/memory"):  # cgroup v2
        show = show.replace("memory/memory.limit_in_bytes", "memory.max")
        show = show.replace("cpu/cpu.cfs_quota_us", "cpu.max").replace("pids/pids.max", "pids.max")
    run = run_agent(
        [f"<execute>\n{show}\n</execute>", "<execute>finish('ok')</execute>"],
        *("--network", "--memory", "300m", "--cpus", "0.5", "--pids", "100"),
    )
    assert run.code == 0, run.stderr
    interfaces, limits = run.events("observation")[0]["text"].split("stdout:\n")[1].splitlines()[:2]
    assert interfaces != "['lo']" and "'lo'" in interfaces
    assert limits.split() == [str(300 << 20), "50000", "100"]


def test_invalid_limits_are_one_clear_line(run_agent):
    for flag, value, message in [
        ("--memory", "4x", "is not a size such as 512m or 4g"),
        ("--memory", "10m", "the sandbox needs at least 64m"),
        ("--cpus", "0", "cpus = 0.0 is out of range: it must be above 0"),
        ("--pids", "5", "pids = 5 is out of range: it must be between 32 and"),
    ]:
        run = run_agent(["<execute>finish('never')</execute>"], flag, value)
        assert run.code == 2, (flag, value, run.stderr)
        assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_files_created_in_the_workspace_belong_to_the_host_user(docker_client, sandbox_image, tmp_path):
    workspace = tmp_path / "owned"
    workspace.mkdir()
    if os.geteuid() == 0:  # as root, prove it with a uid that is not ours
        os.chown(workspace, 4321, 4322)
    owner = (workspace.stat().st_uid, workspace.stat().st_gid)
    with DockerSandbox(docker_client, sandbox_image, workspace, LIMITS) as sandbox:
        obs = sandbox.run(
            "import os\nos.makedirs('pkg/sub')\nopen('pkg/sub/made.py', 'w').write('x')\n"
            "sh('echo shell > by_shell.txt')\nos.getuid(), os.getgid()",
            10,
        )
    assert obs.value == repr(owner)
    for path in ("pkg", "pkg/sub", "pkg/sub/made.py", "by_shell.txt"):
        stat = (workspace / path).stat()
        assert (stat.st_uid, stat.st_gid) == owner, path


def test_nothing_but_the_workspace_is_mounted(docker_client, sandbox_image, tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.py": "A = 1\n"})
    with DockerSandbox(docker_client, sandbox_image, repo, LIMITS) as sandbox:
        mounts = docker_client.api.inspect_container(sandbox.container)["Mounts"]
        obs = sandbox.run(
            "import os\nprint([p for p in ('/var/run/docker.sock', '/run/docker.sock') if os.path.exists(p)])\n"
            "print(sorted(line.split()[4] for line in open('/proc/self/mountinfo')))",
            10,
        )
    config_copy = next(m["Source"] for m in mounts if m["Destination"] == "/workspace/.git/config")
    assert {(m["Source"], m["Destination"], m["RW"]) for m in mounts} == {
        (str(repo), "/workspace", True),
        (str(repo / ".git"), "/workspace/.git", False),
        (config_copy, "/workspace/.git/config", False),  # the git config, without credentials
    }
    assert "/actsmith-sandbox-" in config_copy and not Path(config_copy).exists()  # gone with the sandbox
    sockets, points = obs.stdout.splitlines()
    assert sockets == "[]" and "docker.sock" not in points


def test_the_container_runs_with_every_hardening_option(box, docker_client):
    config = docker_client.api.inspect_container(box.container)["HostConfig"]
    assert config["CapDrop"] == ["ALL"] and not config["CapAdd"]
    assert config["SecurityOpt"] == ["no-new-privileges"]
    assert not config["Privileged"] and not config["Devices"]
    assert config["NetworkMode"] == "none"
    assert config["Memory"] == config["MemorySwap"] == 256 << 20
    assert config["NanoCpus"] == 10**9 and config["PidsLimit"] == 128
