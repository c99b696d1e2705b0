"""The aiohttp application factory: routes, middleware and owned resources."""

from collections.abc import AsyncIterator

from aiohttp import web

from console.app import PREFIX as CONSOLE_PREFIX
from console.app import init_console
from console.config import ConsoleConfig
from gateway import cors, health, mcp, metrics
from gateway.clients import connect_services
from gateway.config import GatewayConfig
from gateway.keys import CONFIG, SERVICES
from gateway.middleware import make_middleware
from gateway.routes import ROUTE_MODULES


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = connect_services(app[CONFIG])
    app[SERVICES] = services
    yield
    await services.close()


def init_app(config: GatewayConfig) -> web.Application:
    app = web.Application(
        middlewares=[make_middleware(config)],
        client_max_size=config.max_json_bytes,
    )
    app[CONFIG] = config
    cors.setup(app, config.cors_origins)
    app.cleanup_ctx.append(_services_ctx)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics.metrics_handler)
    for module in ROUTE_MODULES:
        module.setup(app)
    mcp.setup(app)
    # The console: pages for people, on the same origin and services as the API.
    console = init_console(app, ConsoleConfig.from_env(config.public_base_url))
    app.add_subapp(CONSOLE_PREFIX, console)
    return app
