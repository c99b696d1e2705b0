"""The shape of every service process: `python -m services.<name> [serve|migrate]`.

`serve` runs the gRPC server until SIGTERM; `migrate` applies the service's SQL
migrations and exits (the local stack and the Kubernetes migration Job call it).
"""

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import uvloop

from weftcore.background import BackgroundTasks
from weftcore.config import ConfigError, ServiceConfig
from weftcore.db import migrate
from weftcore.grpc_server import GrpcServer
from weftcore.heap import freeze_startup_heap
from weftcore.logs import setup_logging
from weftcore.metrics import MetricsServer
from weftcore.tracing import setup_tracing

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]
# Wires the service into the server and returns its readiness checks; resources it opens
# go on the exit stack so they close after the server stopped.
Wiring = Callable[[ServiceConfig, GrpcServer, AsyncExitStack], Awaitable[dict[str, Check]]]


async def watch_dependencies(server: GrpcServer, checks: dict[str, Check], interval: float) -> None:
    """Report NOT_SERVING while any dependency (database, NATS, S3) is unreachable; each
    dependency's own state too, as health service `weft.dependency.<name>` (the
    gateway's /readyz reads storage's `s3` there)."""
    serving = True
    known: dict[str, bool] = {}
    while True:
        results = {name: await check() for name, check in checks.items()}
        for name, good in results.items():
            if known.get(name) is not good:
                await server.set_dependency(name, good)
                known[name] = good
        ok = all(results.values())
        if ok != serving:
            failing = sorted(name for name, good in results.items() if not good)
            log.warning("readiness changed", extra={"serving": ok, "failing": failing})
            await server.set_serving(ok)
            serving = ok
        await asyncio.sleep(interval)


async def serve(
    name: str, grpc_service_names: list[str], config: ServiceConfig, wiring: Wiring
) -> None:
    async with AsyncExitStack() as stack:
        server = GrpcServer(grpc_service_names, config.grpc_bind, config.grace_seconds)
        metrics = MetricsServer(config.metrics)
        metrics.start()
        stack.push_async_callback(metrics.close)
        checks = await wiring(config, server, stack)
        tasks = BackgroundTasks()
        stack.push_async_callback(tasks.close)  # first to close: before what wiring opened
        await server.start()
        freeze_startup_heap()
        tasks.start("readiness", lambda: watch_dependencies(server, checks, 1.0))
        await server.wait_for_signal()
    log.info("stopped", extra={"service": name})


def main(
    name: str,
    grpc_service_names: list[str],
    default_bind: str,
    migrations_dir: Path,
    wiring: Wiring,
) -> None:
    """Entry point shared by `python -m services.<name>`."""
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    try:
        config = ServiceConfig.from_env(default_bind)
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(name, config.log_level)
    setup_tracing(name)
    if command == "migrate":
        applied = uvloop.run(migrate(config.database_url, name, migrations_dir))
        log.info("migrations done", extra={"applied": applied})
    elif command == "serve":
        try:
            uvloop.run(serve(name, grpc_service_names, config, wiring))
        except ConfigError as exc:
            # A service's own settings, read by its wiring before it opens anything.
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        print(f"usage: python -m services.{name} [serve|migrate]", file=sys.stderr)
        raise SystemExit(2)
