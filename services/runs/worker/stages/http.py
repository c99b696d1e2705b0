"""`http` stage: call an outside URL through the SSRF guard; output {status, body}."""

import json
from typing import Any

import aiohttp

from services.runs.ssrf import GuardedResolver, SSRFRefused, check_url
from services.runs.worker.context import Services
from services.runs.worker.model import HTTP_ERROR, SSRF_REFUSED, StageError, StageResult
from services.runs.worker.stages.template import render_or_fail

MAX_BODY_BYTES = 1024 * 1024  # a stage output lands in Postgres and in every event


def guarded_session(ctx: Services) -> aiohttp.ClientSession:
    """A session whose every connection goes through the SSRF guard's resolver."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(ctx.ssrf), limit=32)
    return aiohttp.ClientSession(connector=connector)


async def run(stage: dict[str, Any], context: dict[str, Any], ctx: Services) -> StageResult:
    """One request, no redirects (a redirect could point anywhere); non-2xx fails the stage."""
    url = render_or_fail(str(stage["url"]), context, "url").strip()
    method = str(stage.get("method") or "GET").upper()
    headers = {
        str(k): render_or_fail(str(v), context, f"header {k}")
        for k, v in (stage.get("headers") or {}).items()
    }
    body = render_or_fail(str(stage["body"]), context, "body") if "body" in stage else None
    timeout = float(stage.get("timeout_seconds") or 10)
    try:
        await check_url(url, ctx.ssrf)
    except SSRFRefused as exc:
        raise StageError(SSRF_REFUSED, exc.message) from None
    session = ctx.http or guarded_session(ctx)
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=body.encode() if body is not None else None,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            raw = await resp.content.read(MAX_BODY_BYTES + 1)
            status = resp.status
            content_type = resp.headers.get("Content-Type", "")
    except SSRFRefused as exc:
        raise StageError(SSRF_REFUSED, exc.message) from None
    except TimeoutError:
        raise StageError(HTTP_ERROR, f"{method} {url} timed out after {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise StageError(HTTP_ERROR, f"{method} {url} failed: {type(exc).__name__}") from None
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
