"""Free TCP ports on 127.0.0.1 for the servers of one or several stacks side by side."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"

_port_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """First port of the kernel's ephemeral (outgoing source port) range."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """Whether a server could bind ``port`` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # No SO_REUSEADDR on purpose: a port with TIME_WAIT sockets counts as busy.
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_ports(offsets: Sequence[int] = (0,)) -> int:
    """Pick a base port P such that P + offset is free on 127.0.0.1 for every offset.

    Why not ``bind(0)``: the kernel hands out ports from the ephemeral range, which
    outgoing connections (the servers talk to each other) also use as source ports, so a
    port that was free a moment ago can be grabbed before the server binds it. We pick
    from below the ephemeral range instead, and never hand the same port out twice in
    one process.
    """
    high = _ephemeral_low() - max(offsets)
    low = 15000
    with _port_lock:
        if high - low >= 1000:
            for _ in range(2000):
                base = random.randrange(low, high)
                ports = [base + o for o in offsets]
                if any(p in _handed_out for p in ports):
                    continue
                if all(bindable(p) for p in ports):
                    _handed_out.update(ports)
                    return base
        # Odd kernel port range: fall back to asking the kernel.
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, 0))
                base = int(s.getsockname()[1])
            ports = [base + o for o in offsets]
            if all(p < 65536 and p not in _handed_out for p in ports) and all(
                bindable(p) for p in ports
            ):
                _handed_out.update(ports)
                return base
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def free_port() -> int:
    """A TCP port that is currently free on 127.0.0.1 (and not handed out before)."""
    return pick_ports((0,))


def tcp_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0
