"""The whole Weft system on one machine: backing servers, services, workers, gateways.

Used by `weft-stack up` (the dev stack, fixed well-known ports, data in .weft/) and by
the integration tests (free ports, data in a temp dir), so both exercise the same wiring.
"""

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devstack.nats import ClusterNode, NatsServer
from devstack.ports import free_port
from devstack.postgres import PostgresServer, PostgresStandby
from devstack.processes import Process, PythonProcess
from devstack.seaweed import SeaweedS3

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth", "billing", "storage", "runs")
S3_BUCKET = "weft-attachments"
S3_ACCESS_KEY = "weftdev"
S3_SECRET_KEY = "weftdev-secret-key"


@dataclass(frozen=True)
class Ports:
    postgres: int
    nats: int
    s3: int
    llm: int
    fake_llm: int
    services: dict[str, int]  # auth, billing, storage, runs
    workers: list[int]  # gRPC health port of each worker
    gateways: list[int]
    # /metrics of each service and worker by process name (auth, ..., worker, worker2);
    # the gateways serve theirs on their HTTP port.
    metrics: dict[str, int] = field(default_factory=dict)
    # HA mode: the other two NATS nodes' client ports, every node's route port, and the
    # PostgreSQL standby's port (empty / 0 without HA).
    nats_more: list[int] = field(default_factory=list)
    nats_routes: list[int] = field(default_factory=list)
    postgres_standby: int = 0

    @classmethod
    def free(cls, gateways: int = 1, workers: int = 1, ha: bool = False) -> "Ports":
        return cls(
            postgres=free_port(),
            nats=free_port(),
            s3=free_port(),
            llm=free_port(),
            fake_llm=free_port(),
            services={name: free_port() for name in SERVICES},
            workers=[free_port() for _ in range(workers)],
            gateways=[free_port() for _ in range(gateways)],
            metrics={name: free_port() for name in _metered(workers)},
            nats_more=[free_port() for _ in range(2)] if ha else [],
            nats_routes=[free_port() for _ in range(3)] if ha else [],
            postgres_standby=free_port() if ha else 0,
        )

    @classmethod
    def well_known(cls, gateways: int = 1, workers: int = 1, ha: bool = False) -> "Ports":
        """The dev stack's ports: the defaults every service and weft-admin assume."""
        return cls(
            postgres=55432,
            nats=4222,
            s3=8333,
            llm=8089,
            fake_llm=8088,
            services={"auth": 7101, "runs": 7102, "storage": 7103, "billing": 7104},
            workers=[7110 + i for i in range(workers)],
            gateways=[8080 + i for i in range(gateways)],
            metrics={name: 9101 + i for i, name in enumerate(_metered(workers))},
            nats_more=[4223, 4224] if ha else [],
            nats_routes=[6222, 6223, 6224] if ha else [],
            postgres_standby=55433 if ha else 0,
        )


def worker_name(i: int) -> str:
    return "worker" if i == 0 else f"worker{i + 1}"


def _metered(workers: int) -> list[str]:
    """The processes that serve /metrics on a port of their own."""
    return [*SERVICES, *(worker_name(i) for i in range(workers))]


@dataclass
class StackOptions:
    root: Path  # data and logs live under it
    ports: Ports
    # "embedded": the real local model (ARCHITECTURE.md); "none": no local model.
    llm: str = "embedded"
    # A scripted OpenAI-compatible server as provider "fake" (tests).
    fake_llm: bool = False
    # Where the joined 1.1 GB model file is cached (shared by dev stacks and tests).
    model_cache: Path = PROJECT_ROOT / ".weft" / "models"
    extra_env: dict[str, str] = field(default_factory=dict)
    # PostgreSQL settings over the dev tuning (devstack/postgres.py), e.g. the benchmarks'
    # synchronous_commit=on: figures must be what production's durability gives.
    postgres_settings: dict[str, str] = field(default_factory=dict)
    # HA mode (Ports made with ha=True): a NATS cluster of 3 with Weft's streams at 3
    # replicas, and a PostgreSQL streaming standby the services fail over to.
    ha: bool = False


class Stack:
    """Starts and stops everything in dependency order; lets tests stop/restart one part."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        ports = options.ports
        root = options.root
        settings = dict(options.postgres_settings)
        if options.ha:
            settings["synchronous_commit"] = "on"  # with the standby: no lost commit
        self.postgres = PostgresServer(root / "postgres", ports.postgres, settings=settings)
        self.standby: PostgresStandby | None = None
        if options.ha:
            self.standby = PostgresStandby(
                root / "postgres-standby", ports.postgres_standby, self.postgres
            )
            client_ports = [ports.nats, *ports.nats_more]
            routes = tuple(ports.nats_routes)
            self.nats_nodes = [
                NatsServer(
                    root / f"nats{i + 1}",
                    port,
                    cluster=ClusterNode(nats_name(i), routes[i], routes),
                )
                for i, port in enumerate(client_ports)
            ]
        else:
            self.nats_nodes = [NatsServer(root / "nats", ports.nats)]
        self.nats = self.nats_nodes[0]
        self.s3 = SeaweedS3(
            root / "s3", ports.s3, S3_ACCESS_KEY, S3_SECRET_KEY, buckets=[S3_BUCKET]
        )
        self.processes: dict[str, Process] = {
            "postgres": self.postgres,
            **{nats_name(i): node for i, node in enumerate(self.nats_nodes)},
            "s3": self.s3,
        }
        if self.standby is not None:
            self.processes["postgres-standby"] = self.standby
        self.llm: Process | None = None
        if options.llm == "embedded":
            from devstack.llm import EmbeddedLLM, ensure_model

            model = ensure_model(options.model_cache)
            llm = EmbeddedLLM(root / "llm", ports.llm, model)
            self.processes["llm"] = llm
            self.llm = llm
        self.env = self._env()
        logs = root / "logs"
        for name in SERVICES:
            self.processes[name] = PythonProcess(
                name,
                logs,
                ["-m", f"services.{name}", "serve"],
                {
                    **self.env,
                    "WEFT_GRPC_BIND": f"127.0.0.1:{ports.services[name]}",
                    **self._metrics_env(name),
                },
                grpc_addr=f"127.0.0.1:{ports.services[name]}",
                cwd=PROJECT_ROOT,
            )
        for i, port in enumerate(ports.workers):
            name = worker_name(i)
            self.processes[name] = PythonProcess(
                name,
                logs,
                ["-m", "services.runs.worker"],
                {
                    **self.env,
                    "WEFT_GRPC_BIND": f"127.0.0.1:{port}",
                    "WEFT_WORKER_ID": name,
                    **self._metrics_env(name),
                },
                grpc_addr=f"127.0.0.1:{port}",
                cwd=PROJECT_ROOT,
            )
        if options.fake_llm:
            self.processes["fake_llm"] = PythonProcess(
                "fake_llm",
                logs,
                ["-m", "tests.support.fake_llm", "--port", str(ports.fake_llm)],
                self.env,
                http_url=f"http://127.0.0.1:{ports.fake_llm}/health",
                cwd=PROJECT_ROOT,
            )
        for i, port in enumerate(ports.gateways):
            name = "gateway" if i == 0 else f"gateway{i + 1}"
            self.processes[name] = PythonProcess(
                name,
                logs,
                ["-m", "gateway"],
                {
                    **self.env,
                    "WEFT_HTTP_PORT": str(port),
                    "WEFT_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                },
                http_url=f"http://127.0.0.1:{port}/healthz",
                cwd=PROJECT_ROOT,
            )

    def _metrics_env(self, name: str) -> dict[str, str]:
        port = self.options.ports.metrics.get(name)
        return {"WEFT_METRICS_BIND": f"127.0.0.1:{port}" if port else ""}

    # -- addresses -----------------------------------------------------------------

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Each process's /metrics (the gateways' on their HTTP port)."""
        urls = {
            name: f"http://127.0.0.1:{port}/metrics"
            for name, port in self.options.ports.metrics.items()
        }
        for i, url in enumerate(self.gateway_urls):
            urls["gateway" if i == 0 else f"gateway{i + 1}"] = f"{url}/metrics"
        return urls

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.options.ports.gateways[0]}"

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.options.ports.gateways]

    @property
    def dsn(self) -> str:
        """The primary's DSN; in HA mode both servers', the read-write one chosen."""
        if self.standby is None:
            return self.postgres.dsn
        hosts = f"127.0.0.1:{self.postgres.port},127.0.0.1:{self.standby.port}"
        primary = self.postgres.dsn
        return primary.replace(f"127.0.0.1:{self.postgres.port}", hosts) + (
            "?target_session_attrs=read-write"
        )

    @property
    def nats_url(self) -> str:
        """Every NATS node's URL, comma-separated (clients fail over between them)."""
        return ",".join(node.url for node in self.nats_nodes)

    def _env(self) -> dict[str, str]:
        ports = self.options.ports
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            "WEFT_DATABASE_URL": self.dsn,
            "WEFT_NATS_URL": self.nats_url,
            "WEFT_S3_ENDPOINT": self.s3.endpoint,
            "WEFT_S3_ACCESS_KEY": S3_ACCESS_KEY,
            "WEFT_S3_SECRET_KEY": S3_SECRET_KEY,
            "WEFT_S3_BUCKET": S3_BUCKET,
            "WEFT_S3_SECURE": "false",
            "WEFT_LLM_LOCAL_BASE_URL": f"http://127.0.0.1:{ports.llm}/v1",
            "WEFT_LLM_FAKE_BASE_URL": f"http://127.0.0.1:{ports.fake_llm}/v1",
            "WEFT_GRACE_SECONDS": "5",
            "WEFT_NATS_STREAM_REPLICAS": "3" if self.options.ha else "1",
            # Every gateway process signs public endpoints' run tokens with this key.
            "WEFT_RUN_TOKEN_SECRET": secrets.token_hex(32),
            # Development: webhooks to receivers on this machine (http://localhost...).
            "WEFT_WEBHOOK_ALLOW_LOOPBACK": "true",
            # The runs service puts links in webhook bodies; each gateway sets its own.
            "WEFT_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.gateways[0]}",
        }
        for name, port in ports.services.items():
            env[f"WEFT_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
        env.update(self.options.extra_env)
        return env

    # -- lifecycle -----------------------------------------------------------------

    def start(self, name: str | None = None) -> dict[str, float]:
        """Start everything (or just `name`, waiting for it to be ready again).

        Answers how long each phase took, in seconds."""
        if name is not None:
            began = time.monotonic()
            self.processes[name].start()
            return {name: time.monotonic() - began}
        timings: dict[str, float] = {}
        began = time.monotonic()
        backing: list[Process] = [self.postgres, *self.nats_nodes, self.s3]
        if self.llm is not None:
            backing.append(self.llm)
        if "fake_llm" in self.processes:
            backing.append(self.processes["fake_llm"])
        try:
            _parallel([p.start for p in backing])
            if self.standby is not None:
                self.standby.start()  # a copy of the running primary
                self.postgres.require_sync_standby()
            timings["backing_servers"] = time.monotonic() - began
            mark = time.monotonic()
            self.migrate()
            timings["migrations"] = time.monotonic() - mark
            mark = time.monotonic()
            self._start_python([n for n in self.processes if _is_app(n)])
            timings["services"] = time.monotonic() - mark
        except BaseException:
            self.stop()
            raise
        timings["total"] = time.monotonic() - began
        return timings

    def migrate(self) -> None:
        def run(name: str) -> None:
            result = subprocess.run(
                [sys.executable, "-m", f"services.{name}", "migrate"],
                env=self.env,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode != 0:
                raise RuntimeError(f"migrations of {name} failed:\n{result.stderr[-4000:]}")

        _parallel([lambda n=name: run(n) for name in SERVICES])  # type: ignore[misc]

    def _start_python(self, names: list[str]) -> None:
        procs = [self.processes[n] for n in names]
        for p in procs:
            assert isinstance(p, PythonProcess)
            p.spawn()
        for p in procs:
            assert isinstance(p, PythonProcess)
            p.wait_ready()

    def stop(self, name: str | None = None) -> None:
        """Stop everything (or just `name`): gateways first, the database last, so
        nothing in flight is cut off."""
        if name is not None:
            self.processes[name].stop()
            return
        apps = [p for n, p in self.processes.items() if _is_app(n)]
        _parallel([p.stop for p in apps])
        backing = [p for n, p in self.processes.items() if not _is_app(n)]
        _parallel([p.stop for p in backing])

    def kill(self, name: str) -> None:
        """SIGKILL a process and its group, as a crash would; `start(name)` brings it
        back."""
        process = self.processes[name]
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.stop()  # reap it and clean up after it

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `weft-admin` against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "admin", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )


def nats_name(i: int) -> str:
    return "nats" if i == 0 else f"nats{i + 1}"


def _is_app(name: str) -> bool:
    return name not in ("postgres", "postgres-standby", "s3", "llm", "fake_llm") and not (
        name.startswith("nats")
    )


def _parallel(calls: list[Callable[[], None]]) -> None:
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
