"""Routes for workflows (see spec/API.md)."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Registers this module's routes (none yet)."""
