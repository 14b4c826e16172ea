"""How the setup container is confined: it runs the repository's own code (a setup.py, an npm
script) as root with network, so it gets only what pip, npm and apt need.

- Capabilities: all dropped, then back only those apt and dpkg use as root (file ownership and
  modes, and switching to the `_apt` user): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETUID, SETGID.
  `no-new-privileges`; the sandbox's memory, CPU and process limits.
- Network: a bridge network of its own (`actsmith-setup`, containers on it cannot reach each
  other), in a network namespace held by a small gate container that makes the host's addresses
  unreachable from it: every Docker network's gateway, the host's own addresses when the daemon
  runs here, and the link-local range with the cloud metadata address (169.254.169.254). The
  registries stay reachable, directly or through the configured proxy (whose address is left open).
  The gate has CAP_NET_ADMIN and runs only gate_routes.py; the setup container, which has not,
  shares its namespace and cannot change its routes (see gate_routes.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent_cli.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker

    from agent_cli.sandbox import SandboxLimits

SETUP_NETWORK = "actsmith-setup"
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID")
LINK_LOCAL = "169.254.0.0/16"  # the cloud metadata address (169.254.169.254) lives here
NO_ICC = {"com.docker.network.bridge.enable_icc": "false"}
GATE_SOURCE = Path(__file__).with_name("gate_routes.py")
GATE_MEMORY = 64 << 20
GATE_READY_S = 30.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def setup_network(client: docker.DockerClient) -> dict[str, Any]:
    """The setup network (made on first use), as Docker describes it."""
    from docker.errors import APIError, NotFound

    from agent_cli.sandbox.identity import LABEL

    with contextlib.suppress(NotFound):
        return client.api.inspect_network(SETUP_NETWORK)
    with contextlib.suppress(APIError):  # another actsmith process made it in between
        client.api.create_network(
            SETUP_NETWORK, driver="bridge", options=NO_ICC, labels={LABEL: "setup"}, check_duplicate=True
        )
    try:
        return client.api.inspect_network(SETUP_NETWORK)
    except NotFound:
        raise EnvironmentProblem(
            f"could not create the Docker network {SETUP_NETWORK} for setup (are Docker's address pools "
            "exhausted? `docker network prune`), or use --no-setup"
        ) from None


def blocked_destinations(client: docker.DockerClient, environment: dict[str, str]) -> list[str]:
    """What setup may not reach: the host behind every Docker network and the metadata range, less
    the configured proxies' addresses (setup reaches the registries through them)."""
    # This machine's own addresses too: the daemon is usually local (and if not, they cost nothing).
    blocked = {LINK_LOCAL, *network_gateways(client), *host_addresses()}
    blocked -= proxy_addresses(environment)
    return sorted(blocked)


def network_gateways(client: docker.DockerClient) -> set[str]:
    """The gateway of every Docker network (the host's address on it). The default bridge may name
    none: its gateway is then the first address of its subnet."""
    gateways = set()
    for network in client.api.networks():
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                gateways.add(config["Gateway"].split("/")[0])
            elif config.get("Subnet"):
                with contextlib.suppress(ValueError, IndexError):
                    gateways.add(str(ipaddress.ip_network(config["Subnet"], strict=False)[1]))
    return gateways


def host_addresses(fib_trie: Path = Path("/proc/net/fib_trie")) -> set[str]:
    """This host's own IPv4 addresses (Linux), loopback aside: a service listening on all of them
    would otherwise be reachable from setup through any."""
    found: set[str] = set()
    try:
        lines = fib_trie.read_text().splitlines()
    except OSError:
        return found
    previous = ""
    for line in lines:
        words = line.split()
        if words[:1] == ["|--"] and len(words) == 2:
            previous = words[1]
        elif "/32 host LOCAL" in line and previous and not previous.startswith("127."):
            found.add(previous)
    return found


def proxy_addresses(environment: dict[str, str]) -> set[str]:
    addresses: set[str] = set()
    for name in PROXY_VARIABLES:
        host = urlsplit(environment.get(name) or "").hostname
        if not host:
            continue
        with contextlib.suppress(OSError):
            addresses |= {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    return addresses


@contextlib.contextmanager
def network_gate(client: docker.DockerClient, image: str, blocked: Iterable[str]) -> Iterator[str]:
    """A running gate container on the setup network with `blocked` unreachable; yields its id,
    whose network namespace the setup container joins (`network_mode=container:<id>`)."""
    from agent_cli.sandbox.identity import LABEL, OWNER_LABEL, owner_token

    setup_network(client)
    api = client.api
    gate = api.create_container(
        image,
        command=["python3", "-c", GATE_SOURCE.read_text(), *blocked],
        user="0:0",
        labels={LABEL: "setup", OWNER_LABEL: owner_token()},  # swept like a sandbox if we die
        host_config=api.create_host_config(
            network_mode=SETUP_NETWORK,
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN"],
            security_opt=["no-new-privileges"],
            mem_limit=GATE_MEMORY,
            memswap_limit=GATE_MEMORY,
            pids_limit=16,
            read_only=True,
        ),
    )["Id"]
    try:
        api.start(gate)
        _wait_ready(api, gate)
        yield gate
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(gate, force=True)


def _wait_ready(api: docker.APIClient, gate: str) -> None:
    deadline = time.monotonic() + GATE_READY_S
    while time.monotonic() < deadline:
        said = api.logs(gate, stdout=True, stderr=True).decode(errors="replace")
        if "ready" in said.split():
            return
        if not api.inspect_container(gate)["State"]["Running"]:
            last = said.strip().splitlines()[-1:] or ["no output"]
            raise EnvironmentProblem(
                f"setup could not be confined (its network gate failed: {last[0]}); "
                "setup needs a Docker engine that allows CAP_NET_ADMIN in a container, or use --no-setup"
            )
        time.sleep(0.05)
    raise EnvironmentProblem(
        f"setup could not be confined: its network gate did not start in {GATE_READY_S:g} s"
    )


def setup_host_config(
    client: docker.DockerClient, limits: SandboxLimits, gate: str, binds: list[str]
) -> dict[str, Any]:
    """The setup container's confinement: the gate's network, few capabilities, the sandbox's limits."""
    cpus = min(limits.cpus, float(client.info()["NCPU"]))  # the daemon refuses more CPUs than it has
    return client.api.create_host_config(
        binds=binds,
        network_mode=f"container:{gate}",
        cap_drop=["ALL"],
        cap_add=list(CAPABILITIES),
        security_opt=["no-new-privileges"],
        mem_limit=limits.memory_bytes,
        memswap_limit=limits.memory_bytes,
        nano_cpus=int(cpus * 1e9),
        pids_limit=limits.pids,
        init=True,
    )
