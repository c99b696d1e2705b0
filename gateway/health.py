"""Liveness and readiness: /healthz (this process) and /readyz (every dependency)."""

import asyncio
import json
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from grpc_health.v1 import health_pb2

from gateway.http import error_body, json_response
from gateway.keys import CONFIG, SERVICES
from weftcore.errors import Unavailable
from weftcore.grpc_server import DEPENDENCY_HEALTH_PREFIX
from weftcore.liveness import any_worker_alive

CHECK_TIMEOUT = 1.5


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _service(request: web.Request, name: str, health_name: str = "") -> str:
    try:
        reply = (
            await request.app[SERVICES]
            .health(name)
            .Check(health_pb2.HealthCheckRequest(service=health_name), timeout=CHECK_TIMEOUT)
        )
    except Exception:
        return "unreachable"
    return "ok" if reply.status == health_pb2.HealthCheckResponse.SERVING else "not_serving"


async def _database(request: web.Request) -> str:
    try:
        conn = await asyncpg.connect(request.app[CONFIG].database_url, timeout=CHECK_TIMEOUT)
    except Exception:
        return "unreachable"
    try:
        await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
        return "ok"
    except Exception:
        return "unreachable"
    finally:
        await conn.close(timeout=CHECK_TIMEOUT)


async def _nats(request: web.Request) -> str:
    """NATS answers its INFO greeting with JetStream enabled.

    A raw probe: nats-py's connect() retries a refused initial connection forever.
    """
    url = urlsplit(request.app[CONFIG].nats_url)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            reader, writer = await asyncio.open_connection(url.hostname, url.port or 4222)
            try:
                greeting = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return "unreachable"
    if not greeting.startswith(b"INFO "):
        return "unreachable"
    info = json.loads(greeting[5:])
    return "ok" if info.get("jetstream") else "jetstream_unavailable"


async def _object_storage(request: web.Request) -> str:
    """The storage service's own S3 probe (weftcore.service.watch_dependencies), read from
    its health service: the gateway holds no S3 credentials."""
    return await _service(request, "storage", DEPENDENCY_HEALTH_PREFIX + "s3")


async def _workers(request: web.Request) -> str:
    """At least one worker answers a ping on core NATS (weftcore.liveness)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT * 2):
            alive = await any_worker_alive(request.app[CONFIG].nats_url, CHECK_TIMEOUT)
    except Exception:
        return "unreachable"
    return "ok" if alive else "none_alive"


async def readyz(request: web.Request) -> web.Response:
    """200 when every service, the database, NATS, object storage and at least one worker
    answer; else 503 naming what failed."""
    names = ["auth", "runs", "storage", "billing"]
    results = await asyncio.gather(
        *(_service(request, n) for n in names),
        _database(request),
        _nats(request),
        _object_storage(request),
        _workers(request),
    )
    checks = dict(
        zip([*names, "database", "nats", "object_storage", "workers"], results, strict=True)
    )
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        body = error_body(Unavailable("Not ready: " + ", ".join(failing) + "."))
        return json_response({"status": "unavailable", "checks": checks, **body}, status=503)
    return json_response({"status": "ready", "checks": checks})
