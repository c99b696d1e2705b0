"""`python -m gateway`: serve the public API (optionally N processes on one port)."""

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys

import uvloop
from aiohttp import web

from gateway.app import init_app
from gateway.config import GatewayConfig
from gateway.http_server import GatewayRunner
from weftcore.config import ConfigError
from weftcore.heap import freeze_startup_heap
from weftcore.logs import setup_logging
from weftcore.tracing import setup_tracing

log = logging.getLogger(__name__)


async def _serve(config: GatewayConfig, sock: socket.socket) -> None:
    runner = GatewayRunner(
        init_app(config),
        access_log=None,
        shutdown_timeout=config.grace_seconds,
        # Also bounds how long a request head may take to arrive (gateway.http_server).
        keepalive_timeout=config.idle_timeout_seconds,
    )
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    freeze_startup_heap()
    log.info("gateway listening", extra={"host": config.host, "port": config.port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway stopping")
    await runner.cleanup()


def _listen(config: GatewayConfig) -> socket.socket:
    # SO_REUSEPORT lets several processes (or replicas on one host) share the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, config.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _worker(config: GatewayConfig) -> None:
    setup_logging("gateway", config.log_level)
    setup_tracing("gateway")
    uvloop.run(_serve(config, _listen(config)))


def main() -> None:
    try:
        config = GatewayConfig.from_env()
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if config.processes <= 1:
        _worker(config)
        return
    procs = [
        multiprocessing.get_context("fork").Process(target=_worker, args=(config,))
        for _ in range(config.processes)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.pid:
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
