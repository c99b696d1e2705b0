"""A scripted OpenAI-compatible chat-completions server for tests.

`python -m tests.support.fake_llm --port N` (or `make_app()` in-process). Answers are
deterministic and driven by markers anywhere in the messages:

- `[[fail:500]]`        always answer HTTP 500 (any status works: `[[fail:429]]`)
- `[[fail:503:2]]`      fail the first 2 calls with this exact prompt, then answer
- `[[sleep:2.5]]`       wait that many seconds before answering
- `[[json:{...}]]`      reply with exactly that JSON text
- `[[reply:some text]]` reply with that text
- `[[tag:name]]`        count calls under that name in GET /stats (`by_tag`)
- `[[tokens:0.05]]`     with `stream: true`: wait that long between streamed words
- no reply marker:      reply with a compact JSON echo: `{"echo": "<last user message>"}`

With `stream: true` the reply streams as chat.completion.chunk events, one word (with
its leading space) per chunk, then a usage chunk when `stream_options.include_usage`.

Usage counts words (a stand-in for tokens): prompt_tokens = words in all messages + 3
per message, completion_tokens = words in the reply + 1. GET /stats shows how many calls
each prompt got (keyed by sha256 of the messages), so tests can count LLM calls.
"""

import argparse
import asyncio
import hashlib
import json
import re
from collections import Counter
from typing import Any

from aiohttp import web

_FAIL = re.compile(r"\[\[fail:(\d{3})(?::(\d+))?\]\]")
_SLEEP = re.compile(r"\[\[sleep:([0-9.]+)\]\]")
_REPLY = re.compile(r"\[\[reply:(.*?)\]\]", re.S)
_TAG = re.compile(r"\[\[tag:([A-Za-z0-9_.-]+)\]\]")
_TOKENS = re.compile(r"\[\[tokens:([0-9.]+)\]\]")
_JSON_MARK = "[[json:"

CALLS = web.AppKey("calls", Counter[str])
TAGS = web.AppKey("tags", Counter[str])


def _tokens(text: str) -> int:
    return len(text.split())


def _json_marker(text: str) -> str | None:
    start = text.find(_JSON_MARK)
    if start < 0:
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start + len(_JSON_MARK))
    except json.JSONDecodeError:
        return None
    return json.dumps(value, separators=(",", ":"))


def reply_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic reply for these messages (markers decide)."""
    everything = "\n".join(str(m.get("content") or "") for m in messages)
    as_json = _json_marker(everything)
    if as_json is not None:
        return as_json
    scripted = _REPLY.search(everything)
    if scripted:
        return scripted.group(1)
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    return json.dumps({"echo": users[-1] if users else ""}, separators=(",", ":"))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        messages = list(body["messages"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": {"message": "bad request"}}, status=400)
    everything = "\n".join(str(m.get("content") or "") for m in messages)
    key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    calls = request.app[CALLS]
    calls[key] += 1
    for tag in _TAG.findall(everything):
        request.app[TAGS][tag] += 1
    sleep = _SLEEP.search(everything)
    if sleep:
        await asyncio.sleep(float(sleep.group(1)))
    fail = _FAIL.search(everything)
    if fail:
        times = int(fail.group(2)) if fail.group(2) else None
        if times is None or calls[key] <= times:
            status = int(fail.group(1))
            headers = {"Retry-After": "0"} if status == 429 else {}
            return web.json_response(
                {"error": {"message": f"scripted failure {status}"}}, status=status, headers=headers
            )
    text = reply_for(messages)
    prompt_tokens = sum(_tokens(str(m.get("content") or "")) + 3 for m in messages)
    completion_tokens = _tokens(text) + 1
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if body.get("stream"):
        pause = _TOKENS.search(everything)
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(
            request, text, usage if with_usage else None, float(pause.group(1)) if pause else 0.0
        )
    return web.json_response(
        {
            "id": f"chatcmpl-{key[:12]}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "echo"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )


def _chunk(delta: dict[str, str], finish: str | None, usage: Any = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    doc: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk"}
    doc["choices"] = choices
    if usage:
        doc["usage"] = usage
    return f"data: {json.dumps(doc)}\n\n".encode()


async def _stream(
    request: web.Request, text: str, usage: dict[str, int] | None, pause: float
) -> web.StreamResponse:
    """The reply as server-sent chunks: a role, one word per chunk, the finish, usage."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk({"role": "assistant"}, None))
    for i, word in enumerate(re.findall(r"\s*\S+", text)):
        if pause and i:
            await asyncio.sleep(pause)
        await response.write(_chunk({"content": word}, None))
    await response.write(_chunk({}, "stop"))
    if usage is not None:
        await response.write(_chunk({}, None, usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"data": [{"id": "echo", "object": "model"}]})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    calls, tags = request.app[CALLS], request.app[TAGS]
    return web.json_response(
        {"total": sum(calls.values()), "by_prompt": dict(calls), "by_tag": dict(tags)}
    )


def make_app() -> web.Application:
    app = web.Application()
    app[CALLS] = Counter()
    app[TAGS] = Counter()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
