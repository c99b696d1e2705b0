"""One JSON log format for every process, with the request id on every line."""

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from weftcore.context import request_id_var
from weftcore.ids import rfc3339


class _UtcJsonFormatter(JsonFormatter):
    """Times as ISO-8601 in UTC with milliseconds (`2026-12-07T18:57:19.234Z`)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(datetime.fromtimestamp(record.created, UTC))


def error_text(exc: BaseException) -> str:
    """An exception for a log line: its type, and its message when it has one (some,
    e.g. timeouts, have none, which logged alone said nothing)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stdout as JSON lines tagged with service and request id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    fmt: Any = _UtcJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
    )
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries: keep their warnings, drop their per-request info lines.
    for noisy in ("aiohttp.access", "asyncio", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
