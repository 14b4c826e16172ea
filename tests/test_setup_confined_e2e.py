"""Setup as a hostile repository would use it, end to end: real Docker, git and the real CLI.

Environment images are keyed by repository (a second repository with byte-identical manifests
builds its own), the setup container cannot reach the host behind the Docker gateway nor the cloud
metadata address, runs with few capabilities and the sandbox's limits, and its log never follows a
link the sandbox planted. The apt and pip installs here go to the package registries (through the
host's proxy and CA, as every test here that installs anything).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import threading

import pytest
from conftest import clean_env, git, make_repo, run_cli

from agent_cli.setup.confine import SETUP_NETWORK, setup_network

pytestmark = pytest.mark.docker

# The test session's folder in the command: no earlier session's image can be the one reused.
SETUP_TOML = 'setup = ["echo preparing  # {}"]\n'


def env_image(run) -> str:
    return run.stdout.strip().splitlines()[-1]


def test_a_second_repository_with_the_same_manifests_builds_its_own_environment(tmp_path, sandbox_image):
    manifests = {"requirements.txt": "six==1.16.0\n", ".actsmith.toml": SETUP_TOML.format(tmp_path)}
    first = make_repo(tmp_path / "first", {**manifests, "README.md": "the first project\n"})
    git(first, "remote", "add", "origin", "https://github.com/example/first.git")
    second = make_repo(tmp_path / "second", {**manifests, "README.md": "another project\n"})

    built_first = run_cli(["sandbox", "setup"], first)
    assert built_first.code == 0, built_first.stderr
    assert "for this repository" in built_first.stderr and "reus" not in built_first.stderr
    built_second = run_cli(["sandbox", "setup"], second)
    assert built_second.code == 0, built_second.stderr
    assert env_image(built_second) != env_image(built_first) and "reus" not in built_second.stderr

    again = run_cli(["sandbox", "setup"], first)
    assert env_image(again) == env_image(built_first)
    assert f"setup: reusing {env_image(built_first)} (" in again.stderr
    # A fresh copy of the first repository, elsewhere, with credentials in its origin URL: the same
    # repository, so the same environment.
    copy = tmp_path / "elsewhere" / "first"
    shutil.copytree(first, copy)
    git(
        copy, "remote", "set-url", "origin", "https://x-access-token:ghp_n0tReal@github.com/example/first.git"
    )
    copied = run_cli(["sandbox", "setup"], copy)
    assert env_image(copied) == env_image(built_first) and "reusing" in copied.stderr
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", env_image(built_first)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert "github.com/example/first.git" in labels["actsmith.env.identity"]
    assert "ghp_n0tReal" not in json.dumps(labels)


def test_an_image_under_the_tag_but_not_made_for_these_inputs_is_not_reused(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {".actsmith.toml": SETUP_TOML.format(tmp_path), "app.py": "x = 1\n"})
    built = run_cli(["sandbox", "setup"], repo)
    assert built.code == 0, built.stderr
    tag = env_image(built)
    # Someone else's image now holds the tag (a collision, or another repository's setup).
    subprocess.run(["docker", "tag", sandbox_image, tag], check=True)
    again = run_cli(["sandbox", "setup"], repo)
    assert again.code == 0, again.stderr
    assert f"setup: building {tag} for this repository" in again.stderr and "reusing" not in again.stderr
    labels = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag], capture_output=True, text=True
    ).stdout
    assert "actsmith.env.identity" in labels  # the tag is ours again


# ------------------------------------------------------------------------------- a confined setup

PROBE = """\
import socket, sys, time
for name, host, port in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    started = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        print(f"probe {name}: CONNECTED")
    except OSError as error:
        print(f"probe {name}: refused ({error}) in {time.monotonic() - started:.1f}s")
status = open("/proc/self/status").read()
print("probe caps", [line.split()[1] for line in status.splitlines() if line.startswith("CapEff")][0])
print("probe no_new_privs", [line.split()[1] for line in status.splitlines() if line.startswith("NoNewPrivs")][0])
# cgroup v2 names, then v1's
for name, paths in {
    "memory": ("memory.max", "memory/memory.limit_in_bytes"),
    "pids": ("pids.max", "pids/pids.max"),
    "cpu": ("cpu.max", "cpu/cpu.cfs_quota_us"),
}.items():
    for path in paths:
        try:
            print("probe", name, open(f"/sys/fs/cgroup/{path}").read().split()[0])
            break
        except OSError:
            pass
"""


class Listener:
    """A TCP listener on one of the host's addresses that counts who connects."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_server((address, 0))
        self.sock.settimeout(0.2)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.connections.append(peer)
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


def gateway_of(attrs: dict) -> str:
    """A Docker network's gateway, from its IPAM config (the default bridge may name only its
    subnet: its gateway is the subnet's first address)."""
    config = attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])


def test_setup_cannot_reach_the_docker_gateway_or_metadata_and_runs_with_few_rights(
    tmp_path, sandbox_image, docker_client
):
    bridge = Listener(gateway_of(docker_client.api.inspect_network("bridge")))
    ours = Listener(gateway_of(setup_network(docker_client)))
    try:
        # The listener is reachable from an ordinary container on the setup network: what setup
        # cannot reach below, it is kept from, not merely missing.
        reach = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)"
        control = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                SETUP_NETWORK,
                sandbox_image,
                "python3",
                "-c",
                reach,
                ours.address,
                str(ours.port),
            ],
            capture_output=True,
            text=True,
        )
        assert control.returncode == 0, control.stderr
        seen_by_control = len(ours.connections)
        assert seen_by_control == 1
        targets = [
            ("bridge-gateway", bridge.address, bridge.port),
            ("setup-gateway", ours.address, ours.port),
            ("metadata", "169.254.169.254", 80),
        ]
        arguments = " ".join(f"{name} {host} {port}" for name, host, port in targets)
        setup = [
            f"python3 probe.py {arguments}",
            "actsmith_need jq jq && jq --version",  # apt-get install, as root, confined
            "python -m pip install -q six==1.16.0 && python -c 'import six; print(\"probe six\", six.__version__)'",
        ]
        repo = make_repo(
            tmp_path / "r", {"probe.py": PROBE, ".actsmith.toml": f"setup = {json.dumps(setup)}\n"}
        )
        limited = clean_env(
            ACTSMITH_MEMORY="1g", ACTSMITH_PIDS="300", ACTSMITH_CPUS="0.5"
        )  # the sandbox's limits apply
        run = run_cli(["sandbox", "setup"], repo, env=limited, timeout=600)
        assert run.code == 0, run.stdout + run.stderr
    finally:
        bridge.close()
        ours.close()
    assert bridge.connections == [] and len(ours.connections) == seen_by_control  # nothing from setup
    log = next((repo / ".actsmith" / "setup").glob("*.log")).read_text()
    for name, _, _ in targets:
        assert f"probe {name}: refused" in log, log
    assert "CONNECTED" not in log
    capabilities = int(log.split("probe caps ")[1].split()[0], 16)
    assert capabilities == sum(
        1 << bit for bit in (0, 1, 3, 4, 6, 7)
    )  # CHOWN DAC_OVERRIDE FOWNER FSETID SETGID SETUID
    assert "probe no_new_privs 1" in log
    assert f"probe memory {1 << 30}" in log and "probe pids 300" in log and "probe cpu 50000" in log
    assert "jq-1." in log and "probe six 1.16.0" in log


def test_the_setup_log_never_follows_a_link_planted_in_the_checkout(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {".actsmith.toml": SETUP_TOML.format(tmp_path), "app.py": "x = 1\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / ".actsmith").mkdir()
    (repo / ".actsmith" / "setup").symlink_to(outside, target_is_directory=True)  # as the sandbox could
    first = run_cli(["sandbox", "setup"], repo)
    assert first.code == 0, first.stderr
    assert list(outside.iterdir()) == [] and "was a symbolic link" in first.stderr
    (log,) = (repo / ".actsmith" / "setup").glob("*.log")
    assert "preparing" in log.read_text()
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    log.unlink()
    log.symlink_to(victim)  # the next log's name is known: plant it
    again = run_cli(["sandbox", "setup", "--rebuild"], repo)
    assert again.code == 0, again.stderr
    assert victim.read_text() == "the user's own file\n"
    assert not log.is_symlink() and "preparing" in log.read_text()
