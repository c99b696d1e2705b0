"""`http` stage: call an outside URL through the SSRF guard; output {status, body}.

The request is built and checked before anything is sent: a rendered URL, method, header
or body that cannot make a valid HTTP request (a line break in a header, a port out of
range, text that cannot be encoded) fails the stage with HTTP_INVALID_REQUEST, naming
what is wrong. Nothing the request or the answer can contain escapes as an exception.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from services.runs.domain.ssrf import GuardedResolver, SSRFRefused, check_url
from services.runs.domain.transitions import StageResult
from services.runs.worker.context import Services
from services.runs.worker.model import (
    HTTP_ERROR,
    HTTP_INVALID_REQUEST,
    SSRF_REFUSED,
    StageError,
)
from services.runs.worker.stages.template import render_or_fail

MAX_BODY_BYTES = 1024 * 1024  # a stage output lands in Postgres and in every event
# RFC 9110 token: what a method and a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters (tab aside) would end or split the header line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float


def _invalid(message: str) -> StageError:
    return StageError(HTTP_INVALID_REQUEST, f"http stage: {message}")


def _check_url(url: str) -> None:
    if not url:
        raise _invalid("the URL is empty")
    if _CONTROL.search(url) or " " in url:
        raise _invalid(f"the URL {url[:200]!r} contains spaces or control characters")
    try:
        parsed = URL(url)
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except (ValueError, TypeError) as exc:
        raise _invalid(f"the URL {url[:200]!r} is not valid ({exc})") from None
    if parsed.scheme in ("http", "https") and not parsed.host:
        raise _invalid(f"the URL {url[:200]!r} has no host")


def build_request(stage: dict[str, Any], context: dict[str, Any]) -> HttpRequest:
    """The stage's request, rendered and checked; StageError HTTP_INVALID_REQUEST (or
    TEMPLATE_ERROR) when it cannot be sent as it is."""
    url = render_or_fail(str(stage["url"]), context, "url").strip()
    _check_url(url)
    method = str(stage.get("method") or "GET").upper()
    if not _TOKEN.fullmatch(method):
        raise _invalid(f"{method[:50]!r} is not an HTTP method")
    headers: dict[str, str] = {}
    for name, template in (stage.get("headers") or {}).items():
        name = str(name)
        if not _TOKEN.fullmatch(name):
            raise _invalid(f"{name[:100]!r} is not a valid header name")
        value = render_or_fail(str(template), context, f"header {name}")
        if _CONTROL.search(value):
            raise _invalid(f"header {name}: the value contains a line break or control character")
        headers[name] = value
    body = None
    if "body" in stage:
        text = render_or_fail(str(stage["body"]), context, "body")
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid(f"the body cannot be encoded as UTF-8 ({exc.reason})") from None
    try:
        timeout = float(stage.get("timeout_seconds") or 10)
    except (TypeError, ValueError):
        raise _invalid("timeout_seconds is not a number") from None
    return HttpRequest(method, url, headers, body, timeout)


def guarded_session(ctx: Services) -> aiohttp.ClientSession:
    """A session whose every connection goes through the SSRF guard's resolver."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(ctx.ssrf), limit=32)
    return aiohttp.ClientSession(connector=connector)


async def run(stage: dict[str, Any], context: dict[str, Any], ctx: Services) -> StageResult:
    """One request, no redirects (a redirect could point anywhere); non-2xx fails the stage."""
    req = build_request(stage, context)
    method, url = req.method, req.url
    try:
        await check_url(url, ctx.ssrf)
    except SSRFRefused as exc:
        raise StageError(SSRF_REFUSED, f"http stage URL refused: {exc.message}") from None
    session = ctx.http or guarded_session(ctx)
    try:
        async with session.request(
            method,
            url,
            headers=req.headers,
            data=req.body,
            timeout=aiohttp.ClientTimeout(total=req.timeout),
            allow_redirects=False,
        ) as resp:
            raw = await resp.content.read(MAX_BODY_BYTES + 1)
            status = resp.status
            content_type = resp.headers.get("Content-Type", "")
    except SSRFRefused as exc:
        raise StageError(SSRF_REFUSED, f"http stage URL refused: {exc.message}") from None
    except TimeoutError:
        raise StageError(HTTP_ERROR, f"{method} {url} timed out after {req.timeout:g}s") from None
    except aiohttp.InvalidURL as exc:
        raise _invalid(f"the URL {url[:200]!r} is not valid ({exc})") from None
    except aiohttp.ClientError as exc:
        if isinstance(exc.__cause__, SSRFRefused):  # the guard, at connect time
            raise StageError(
                SSRF_REFUSED, f"http stage URL refused: {exc.__cause__.message}"
            ) from None
        raise StageError(HTTP_ERROR, f"{method} {url} failed: {type(exc).__name__}") from None
    except (ValueError, TypeError) as exc:
        # What the checks above missed and the HTTP client refused to send.
        raise _invalid(f"{method} {url} could not be sent: {exc}") from None
    finally:
        if session is not ctx.http:
            await session.close()
    if len(raw) > MAX_BODY_BYTES:
        raise StageError(HTTP_ERROR, f"{method} {url}: response body over {MAX_BODY_BYTES} bytes")
    text = raw.decode("utf-8", errors="replace")
    if not 200 <= status < 300:
        raise StageError(HTTP_ERROR, f"{method} {url} answered HTTP {status}: {text[:200]}")
    parsed: Any = text
    if "json" in content_type:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
    return StageResult(output={"status": status, "body": parsed})
