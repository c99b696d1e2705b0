"""Typed keys for what the gateway app holds."""

from aiohttp import web

from gateway.clients import Services
from gateway.config import GatewayConfig

CONFIG = web.AppKey("config", GatewayConfig)
SERVICES = web.AppKey("services", Services)
