"""The setup network gate: runs inside the gate container (stdlib only, any image with python3).

It makes each destination named on its command line (`ADDRESS[/PREFIX]`) unreachable in the network
namespace it shares with the setup container, says `ready`, then holds that namespace until it is
stopped. Routes are enough: the gateway stays the next hop of the default route (reached by ARP, not
by a route lookup), while a connection *to* it fails at once with "No route to host". Only this
container has CAP_NET_ADMIN, and it runs nothing of the repository's; the setup container has no
such capability, so it cannot take the routes back.
"""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
import struct
import sys

RTM_NEWROUTE = 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE = 254, 4, 0, 7
RTA_DST = 1


def add_unreachable(sock: socket.socket, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    address = network.network_address.packed
    body = struct.pack(
        "=BBBBBBBBI",
        family,
        network.prefixlen,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        RT_SCOPE_UNIVERSE,
        RTN_UNREACHABLE,
        0,
    )
    body += struct.pack("=HH", 4 + len(address), RTA_DST) + address
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    sock.send(struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, flags, 1, 0) + body)
    reply = sock.recv(65536)
    kind = struct.unpack("=H", reply[4:6])[0]
    code = -struct.unpack("=i", reply[16:20])[0] if kind == NLMSG_ERROR else 0
    if code not in (0, errno.EEXIST):
        raise OSError(code, f"{network}: {errno.errorcode.get(code, code)}")


def main(destinations: list[str]) -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        for destination in destinations:
            add_unreachable(sock, ipaddress.ip_network(destination, strict=False))
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main(sys.argv[1:])
