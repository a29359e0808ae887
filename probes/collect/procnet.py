"""Listening TCP ports from the text of /proc/net/tcp{,6}, read from the host itself."""

from __future__ import annotations

import ipaddress
import socket
import struct


def past_listeners(proc_net_tcp: bytes) -> bool:
    """Whether this start of /proc/net/tcp{,6} holds a complete line for a socket that is not
    listening. The kernel lists the listening sockets first (its iterator walks the listening hash
    before the established one), so from there on nothing listens: a DB host with thousands of
    client connections is read for its few dozen listeners, not its whole socket table."""
    end = proc_net_tcp.rfind(b"\n")
    for line in proc_net_tcp[:end].split(b"\n")[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[3] != b"0A":
            return True
    return False


def listening_ports(proc_net_tcp: str, address: str) -> set[int]:
    """Ports in LISTEN state (0A) bound to `address` or to any address, from /proc/net/tcp text."""
    want = {address}
    out: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        hexaddr, _, hexport = parts[1].partition(":")
        try:
            if len(hexaddr) == 8:
                ip = socket.inet_ntoa(struct.pack("<I", int(hexaddr, 16)))
                anyaddr = ip == "0.0.0.0"
            else:
                raw = bytes.fromhex(hexaddr)
                ip6 = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
                ip = str(ip6.ipv4_mapped) if ip6.ipv4_mapped else str(ip6)
                anyaddr = ip6 == ipaddress.IPv6Address("::")
            if anyaddr or ip in want:
                out.add(int(hexport, 16))
        except ValueError:
            continue
    return out
