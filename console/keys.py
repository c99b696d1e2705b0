"""Typed keys of the console app."""

from aiohttp import web
from jinja2 import Environment

from console.config import ConsoleConfig

CONSOLE_CONFIG = web.AppKey("console_config", ConsoleConfig)
TEMPLATES = web.AppKey("console_templates", Environment)
