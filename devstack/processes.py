"""Weft's own processes (services, worker, gateway) managed like the backing servers."""

import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.managed import ManagedProcess


class Process(Protocol):
    """What the stack needs of anything it runs (backing servers, the LLM, our services)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def log_path(self) -> Path: ...

    def is_running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def grpc_serving(addr: str, timeout: float = 0.5) -> bool:
    """True when the gRPC health service at `addr` answers SERVING."""
    with grpc.insecure_channel(addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, timeout: float = 0.5) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bool(response.status == 200)


class PythonProcess(ManagedProcess):
    """`python -m <module> ...` with its own environment; ready when `probe` says so."""

    stop_timeout = 15.0
    start_timeout = 60.0

    def __init__(
        self,
        name: str,
        data_dir: Path,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        grpc_addr: str | None = None,
        http_url: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.name = name
        self.argv = [sys.executable, *argv]
        self.env = dict(env)
        self.grpc_addr = grpc_addr
        self.http_url = http_url
        self.cwd = cwd

    def spawn(self) -> None:
        """Start without waiting (several processes can then warm up in parallel)."""
        self._spawn(self.argv, env=self.env, cwd=self.cwd)

    def wait_ready(self) -> None:
        if self.grpc_addr is not None:
            addr = self.grpc_addr
            self._wait_ready(lambda: grpc_serving(addr), f"gRPC health SERVING at {addr}")
        elif self.http_url is not None:
            url = self.http_url
            self._wait_ready(lambda: http_ok(url), f"HTTP 200 from {url}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()
