"""The Docker sandbox on its own: hardening, ownership, environment, cleanup, sweeping of orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import container_ids, limits, wait_until

from agent_cli.errors import UsageError
from agent_cli.sandbox.docker_sandbox import DockerSandbox
from agent_cli.sandbox.identity import LABEL, OWNER_LABEL, sweep_leftovers
from agent_cli.settings import load_settings

pytestmark = pytest.mark.docker


@pytest.fixture
def sandbox(docker_client, sandbox_image, tmp_path):
    box = DockerSandbox(docker_client, sandbox_image, tmp_path, limits(max_output_chars=4000))
    box.start()
    yield box
    box.close()


def test_host_secrets_never_enter_the_container(docker_client, sandbox_image, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-should-not-leak-000")
    with DockerSandbox(docker_client, sandbox_image, tmp_path, limits()) as box:
        obs = box.run("import os\nprint(sorted(os.environ))\nprint(open('/proc/1/environ','rb').read())", 10)
    assert "OPENAI_API_KEY" not in obs.stdout
    assert "sk-host-secret" not in obs.stdout


def test_no_network_interface_but_loopback(sandbox):
    obs = sandbox.run("import socket\nprint(sorted(name for _, name in socket.if_nameindex()))", 10)
    assert obs.stdout.strip() == "['lo']"


def test_runs_unprivileged_with_capabilities_dropped(sandbox):
    obs = sandbox.run(
        "status = open('/proc/self/status').read()\n"
        "print([l for l in status.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])",
        10,
    )
    assert "CapEff:\\t0000000000000000" in obs.stdout
    assert "NoNewPrivs:\\t1" in obs.stdout


def test_files_written_in_the_workspace_belong_to_the_repository_owner(sandbox, tmp_path):
    sandbox.run("open('made-in-sandbox.txt', 'w').write('x')", 10)
    made = tmp_path / "made-in-sandbox.txt"
    assert made.read_text() == "x"
    assert (made.stat().st_uid, made.stat().st_gid) == (tmp_path.stat().st_uid, tmp_path.stat().st_gid)


def test_working_directory_is_the_repository_and_it_is_importable(sandbox, tmp_path):
    (tmp_path / "mymod.py").write_text("VALUE = 7\n")
    obs = sandbox.run("import os, mymod\nprint(os.getcwd(), mymod.VALUE)", 10)
    assert obs.stdout.strip() == "/workspace 7"


def test_value_of_a_final_expression_is_echoed_like_a_repl(sandbox):
    assert sandbox.run("x = [1, 2]\nx + [3]", 10).value == "[1, 2, 3]"
    assert sandbox.run("None", 10).value is None


def test_restart_loses_variables_but_keeps_files(sandbox, tmp_path):
    sandbox.run("v = 1\nopen('f.txt', 'w').write('kept')", 10)
    sandbox.restart()
    obs = sandbox.run("print('v' in globals(), open('f.txt').read())", 10)
    assert obs.stdout.strip() == "False kept"


def test_an_interrupt_resistant_loop_is_killed_and_the_interpreter_restarted(sandbox):
    obs = sandbox.run("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", 1)
    assert obs.timed_out and obs.restarted
    assert "did not stop" in obs.restart_reason
    assert sandbox.run("print('next')", 10).stdout == "next\n"


def test_helpers_edit_files_with_clear_errors(sandbox, tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    return 1\n\ndef g():\n    return 1\n")
    ambiguous = sandbox.run("replace('m.py', 'return 1', 'return 2')", 10)
    assert "occurs 2 times (lines 2, 5)" in ambiguous.error
    missing = sandbox.run("replace('m.py', 'def  f():', 'def h():')", 10)
    assert "not found" in missing.error and "line 1: def f():" in missing.error
    sandbox.run("replace('m.py', 'def g():\\n    return 1', 'def g():\\n    return 2')", 10)
    assert (tmp_path / "m.py").read_text().endswith("def g():\n    return 2\n")
    found = sandbox.run("find_symbol('g')", 10)
    assert "m.py:4: def g():" in found.stdout


def test_the_container_is_removed_on_close(docker_client, sandbox_image, tmp_path):
    box = DockerSandbox(docker_client, sandbox_image, tmp_path, limits())
    box.start()
    container_id = box.container
    box.close()
    assert container_id not in container_ids(docker_client)


def test_a_container_removes_itself_when_its_owner_is_killed(docker_client, sandbox_image, tmp_path):
    # The owner is SIGKILLed, so none of its cleanup runs: the kernel sees its stdin close and exits,
    # and Docker's auto-remove deletes the container.
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from agent_cli.sandbox.docker_sandbox import DockerSandbox\n"
        "from agent_cli.sandbox.identity import docker_client\n"
        "from agent_cli.sandbox import SandboxLimits\nfrom agent_cli.settings import Settings\n"
        "box = DockerSandbox(docker_client(), sys.argv[1], Path(sys.argv[2]), SandboxLimits.from_settings(Settings()))\n"
        "box.start()\nprint(box.container, flush=True)\ntime.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, sandbox_image, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    container_id = child.stdout.readline().strip()
    assert container_id in container_ids(docker_client, label=LABEL)
    child.kill()
    child.wait()
    wait_until(
        lambda: container_id not in container_ids(docker_client, label=LABEL),
        20,
        "the removal of the orphaned sandbox container",
    )


def test_sweep_spares_containers_of_live_runs(docker_client, sandbox, tmp_path):
    assert sweep_leftovers(docker_client) == []
    assert sandbox.run("print('still mine')", 10).stdout == "still mine\n"


def test_a_container_of_a_dead_owner_is_swept(docker_client, sandbox_image):
    dead_owner = f"{os.uname().nodename}:999999:0"
    container = docker_client.containers.create(
        sandbox_image, ["sleep", "600"], labels={LABEL: "1", OWNER_LABEL: dead_owner}
    )
    removed = sweep_leftovers(docker_client)
    assert container.name in removed


def test_sh_returns_when_the_shell_exits_even_if_a_background_job_holds_the_pipe(sandbox):
    obs = sandbox.run("r = sh('echo started; sleep 60 &')\nr.returncode, r.output", 20)
    assert not obs.timed_out
    assert obs.value == "(0, 'started\\n')"


def test_a_helper_error_shows_the_action_line_and_the_message_not_kernel_frames(sandbox):
    obs = sandbox.run("replace('missing.py', 'a', 'b')", 10)
    assert "<action-" in obs.error
    assert "missing.py: no such file" in obs.error
    assert "/opt/actsmith" not in obs.error


def test_a_repository_helpers_module_does_not_break_the_kernel(docker_client, sandbox_image, tmp_path):
    (tmp_path / "helpers.py").write_text("OWN = 'the repository module'\n")
    (tmp_path / "common.py").write_text("OWN = 'also ours'\n")
    with DockerSandbox(docker_client, sandbox_image, tmp_path, limits()) as box:
        obs = box.run("import helpers, common\nprint(helpers.OWN, '|', common.OWN)\nview('helpers.py')", 10)
    assert "the repository module | also ours" in obs.stdout
    assert "1| OWN = " in obs.stdout


def test_output_just_under_the_limit_is_whole_and_prompt(sandbox):
    for size in (3940, 3960, 3975, 3990, 3999):
        obs = sandbox.run(f"print('a' * {size})", 10)
        assert obs.stdout == "a" * size + "\n"
        assert obs.truncated_chars == 0


def test_a_huge_error_message_and_finish_summary_are_capped(sandbox):
    obs = sandbox.run("raise ValueError('x' * 5_000_000)", 20)
    assert "characters cut" in obs.error and len(obs.error) < 5000
    assert not obs.restarted
    assert len(sandbox.run("finish('y' * 100_000)", 10).control.summary) < 5000


def live_sleepers(seconds: int, *, until_found: bool = False) -> str:
    """An action listing the processes (zombies aside) running `sleep <seconds>` in the sandbox;
    with `until_found`, it polls (up to 10 s) until one has started."""
    listing = f"[p for p in os.listdir('/proc') if p.isdigit() and command(p) == b'sleep\\x00{seconds}\\x00' and alive(p)]"
    wait = f"import time\nfor _ in range(200):\n    if {listing}:\n        break\n    time.sleep(0.05)\n"
    return (
        "import os\n"
        "def alive(p):\n"
        "    try:\n"
        "        return open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'\n"
        "    except OSError:\n"
        "        return False\n"
        "def command(p):\n"
        "    try:\n"
        "        return open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        return b''\n" + (wait if until_found else "") + listing
    )


def test_a_timed_out_sh_stops_everything_it_started(sandbox, tmp_path):
    obs = sandbox.run('sh("(sleep 31; touch late.txt) & wait", timeout=0.5)', 10)
    assert "timed out" in obs.error
    assert sandbox.run(live_sleepers(31), 10).value == "[]"


def test_a_restart_kills_what_the_old_interpreter_left_running(sandbox, tmp_path):
    sandbox.run(
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 32; touch orphan.txt'], start_new_session=True)",
        10,
    )
    assert sandbox.run(live_sleepers(32, until_found=True), 20).value != "[]"  # the probe sees it alive
    obs = sandbox.run("import os\nos._exit(1)", 10)
    assert obs.restarted
    assert sandbox.run(live_sleepers(32), 10).value == "[]"


def test_an_interpreter_that_dies_between_actions_is_replaced_and_the_model_told(sandbox):
    sandbox.run(
        "x = 1\nimport os, threading, time\nthreading.Thread(target=lambda: (time.sleep(0.3), os._exit(7))).start()",
        10,
    )
    wait_until(lambda: _worker_count(sandbox) == 0, 10, "the interpreter's death")
    obs = sandbox.run("print('x' in globals())", 10)
    assert obs.restarted and "exited with code 7" in obs.restart_reason
    assert obs.stdout == "False\n"


def test_a_cpu_limit_above_the_hosts_count_means_all_of_its_cpus(docker_client, sandbox_image, tmp_path):
    with DockerSandbox(docker_client, sandbox_image, tmp_path, limits(cpus=512)) as box:
        obs = box.run(
            "import os\nv1 = '/sys/fs/cgroup/cpu/cpu.cfs_quota_us'\n"
            "int((open(v1) if os.path.exists(v1) else open('/sys/fs/cgroup/cpu.max')).read().split()[0])",
            10,
        )
    assert int(obs.value) == docker_client.info()["NCPU"] * 100_000


@pytest.mark.parametrize("key, value", [("memory", '"1000g"'), ("cpus", "64"), ("pids", "1000000")])
def test_a_repository_cannot_raise_the_sandbox_limits(tmp_path, monkeypatch, key, value):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-user-config"))
    (tmp_path / ".actsmith.toml").write_text(f"{key} = {value}\n")
    with pytest.raises(UsageError, match=f"{key} cannot be set by a repository"):
        load_settings(tmp_path, {}, environ={})


def _framed(payload: bytes) -> bytes:
    """Docker's multiplexed stream: a stdout frame as the attach socket delivers it."""
    import struct

    return b"\x01\x00\x00\x00" + struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (b'{"id": 1, "ok"\n', "malformed"),
        (b"[1, 2]\n", "malformed"),
        (b"x" * (65 << 20), "over 64 MiB"),  # no newline, ever: the host must not buffer it all
    ],
)
def test_the_host_refuses_a_malformed_or_endless_message_instead_of_crashing(sent, said):
    import socket
    import threading

    from agent_cli.sandbox.channel import AttachChannel

    host, sandbox = socket.socketpair()
    writer = threading.Thread(target=lambda: _send_quietly(sandbox, _framed(sent)), daemon=True)
    writer.start()
    channel = AttachChannel(host)
    with pytest.raises(ConnectionError, match=said):
        channel.receive(time.monotonic() + 30)
    channel.close()
    sandbox.close()


def _send_quietly(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the host hung up once it had seen enough


def _worker_count(sandbox) -> int:
    """Live interpreter processes in the container, seen from the host (docker top)."""
    processes = sandbox.client.api.top(sandbox.container, ps_args="-o pid,stat,args").get("Processes") or []
    return sum(1 for pid, stat, args in processes if "worker.py" in args and not stat.startswith("Z"))


@pytest.mark.parametrize("where", ["in place", "worktree"])
def test_credentials_a_checkout_leaves_in_git_config_never_reach_the_sandbox(
    docker_client, sandbox_image, tmp_path, where
):
    from conftest import add_submodule, git, make_repo

    from agent_cli.workspace import Workspace

    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    library = make_repo(tmp_path / "library", {"lib.py": "v = 1\n"})
    add_submodule(repo, library, "lib")
    token = "ghs_checkoutTokenThatMustStayOnTheHost123"
    git(repo, "remote", "add", "origin", f"https://x-access-token:{token}@github.example/o/r.git")
    # What actions/checkout writes unless told persist-credentials: false, for `submodules: true` too.
    git(repo, "config", "http.https://github.example/.extraheader", f"AUTHORIZATION: basic {token}")
    git(repo / "lib", "config", "http.https://github.example/.extraheader", f"AUTHORIZATION: basic {token}")
    root = repo if where == "in place" else Workspace.open(repo).create_worktree("look")[0].root
    with DockerSandbox(docker_client, sandbox_image, root, limits()) as box:
        obs = box.run(
            "common = sh('git rev-parse --path-format=absolute --git-common-dir').output.strip()\n"
            "sh(f'grep -r -I -l -e ghs_ -e AUTHORIZATION /workspace {common} /etc 2>/dev/null; echo searched')\n"
            "sh('git config --list; git remote -v; git log --oneline -1')",
            60,
        )
    assert token not in obs.stdout + obs.stderr
    assert "github.example/o/r.git" in obs.stdout  # the remote is still there, without the token
    assert "submodule" in obs.stdout  # git still works in the sandbox
    assert token in (repo / ".git" / "config").read_text()  # the host's config is untouched
    assert token in (repo / ".git" / "modules" / "lib" / "config").read_text()
