"""The console sub-application, mounted by the gateway at /app."""

from pathlib import Path

from aiohttp import web

from console.config import ConsoleConfig
from console.keys import CONSOLE_CONFIG, TEMPLATES
from console.middleware import console_edge
from console.render import environment
from console.views import keys, runs, signin, usage, workflows
from gateway.keys import CONFIG, SERVICES

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/app"


async def home(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": f"{PREFIX}/runs"})


def init_console(parent: web.Application, config: ConsoleConfig) -> web.Application:
    """The console app; `parent` (the gateway) owns the gRPC stubs it shares."""
    app = web.Application(middlewares=[console_edge])
    app[CONSOLE_CONFIG] = config
    app[TEMPLATES] = environment()

    async def share_parent_state(app: web.Application) -> None:
        # The gateway's run helpers read these from request.app, which is this app.
        app[SERVICES] = parent[SERVICES]
        app[CONFIG] = parent[CONFIG]

    app.on_startup.append(share_parent_state)
    app.router.add_get("/", home)
    app.router.add_static("/static", STATIC_DIR)
    for module in (signin, keys, runs, workflows, usage):
        module.setup(app)
    return app
