"""Jinja2 pages (autoescaped) with what every page shows: who is signed in, CSRF, nav."""

from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from console import formats
from console.keys import TEMPLATES
from console.session import Person

TEMPLATE_DIR = Path(__file__).parent / "templates"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        cents=formats.cents,
        usd=formats.usd_micros,
        when=formats.when,
        duration=formats.duration_ms,
        pretty=formats.pretty_json,
    )
    env.globals["terminal"] = formats.TERMINAL
    return env


def render(
    request: web.Request,
    template: str,
    person: Person | None = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    page = request.app[TEMPLATES].get_template(template)
    html = page.render(
        person=person,
        email=person.principal.email if person else None,
        csrf=person.csrf if person else context.pop("form_csrf", ""),
        path=request.path,
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
