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

CHECK_TIMEOUT = 1.5


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _service(request: web.Request, name: str) -> str:
    try:
        reply = (
            await request.app[SERVICES]
            .health(name)
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=CHECK_TIMEOUT)
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


async def readyz(request: web.Request) -> web.Response:
    """200 when every service, the database and NATS answer; else 503 naming what failed."""
    names = ["auth", "runs", "storage", "billing"]
    results = await asyncio.gather(
        *(_service(request, n) for n in names), _database(request), _nats(request)
    )
    checks = dict(zip([*names, "database", "nats"], results, strict=True))
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        body = error_body(Unavailable("Not ready: " + ", ".join(failing) + "."))
        return json_response({"status": "unavailable", "checks": checks, **body}, status=503)
    return json_response({"status": "ready", "checks": checks})
