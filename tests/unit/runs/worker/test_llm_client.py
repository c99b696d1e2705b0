"""The OpenAI-compatible client against the scripted fake server, started in-process."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from services.runs.worker.llm_client import (
    LLMClient,
    LLMError,
    ProviderConfig,
    _backoff,
    provider_config,
    split_model,
)
from tests.support.fake_llm import make_app

MODEL = "fake:echo"


@pytest.fixture
async def fake_url() -> AsyncIterator[str]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _client(url: str, **extra: str) -> LLMClient:
    env = {
        "WEFT_LLM_FAKE_BASE_URL": f"{url}/v1",
        "WEFT_LLM_FAKE_BACKOFF_SECONDS": "0.01",
        "WEFT_LLM_FAKE_MAX_RETRIES": "3",
        **extra,
    }
    return LLMClient(env)


async def _calls(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/stats") as r:
        return int((await r.json())["total"])


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


async def test_answer_and_usage(fake_url: str) -> None:
    client = _client(fake_url)
    try:
        result = await client.chat(MODEL, _messages("[[reply:four score]] and more"))
    finally:
        await client.close()
    assert result.text == "four score"
    assert result.model == MODEL
    # Fake counts words: 2 + 3 (system) + 4 + 3 (user) prompt, 2 + 1 completion.
    assert (result.input_tokens, result.output_tokens) == (12, 3)


async def test_retries_5xx_then_succeeds(fake_url: str) -> None:
    client = _client(fake_url)
    try:
        result = await client.chat(MODEL, _messages('[[fail:503:2]] [[json:{"ok": true}]]'))
    finally:
        await client.close()
    assert result.text == '{"ok":true}'
    assert await _calls(fake_url) == 3


async def test_retries_429(fake_url: str) -> None:
    client = _client(fake_url)
    try:
        result = await client.chat(MODEL, _messages("[[fail:429:1]] [[reply:ok]]"))
    finally:
        await client.close()
    assert result.text == "ok"
    assert await _calls(fake_url) == 2


async def test_gives_up_after_retries(fake_url: str) -> None:
    client = _client(fake_url)
    try:
        with pytest.raises(LLMError) as info:
            await client.chat(MODEL, _messages("[[fail:500]]"))
    finally:
        await client.close()
    assert info.value.status == 500
    assert "HTTP 500" in info.value.message and "4 attempts" in info.value.message
    assert await _calls(fake_url) == 4


async def test_client_errors_are_not_retried(fake_url: str) -> None:
    client = _client(fake_url)
    try:
        with pytest.raises(LLMError) as info:
            await client.chat(MODEL, _messages("[[fail:400]]"))
    finally:
        await client.close()
    assert info.value.status == 400
    assert await _calls(fake_url) == 1


async def test_timeout_is_retried_then_reported(fake_url: str) -> None:
    client = _client(fake_url, WEFT_LLM_FAKE_TIMEOUT_SECONDS="0.2", WEFT_LLM_FAKE_MAX_RETRIES="1")
    try:
        with pytest.raises(LLMError, match="timed out"):
            await client.chat(MODEL, _messages("[[sleep:1]]"))
    finally:
        await client.close()
    assert await _calls(fake_url) == 2


async def test_unreachable_provider() -> None:
    client = LLMClient(
        {"WEFT_LLM_FAKE_BASE_URL": "http://127.0.0.1:9/v1", "WEFT_LLM_FAKE_MAX_RETRIES": "0"}
    )
    try:
        with pytest.raises(LLMError, match="cannot reach"):
            await client.chat(MODEL, _messages("hi"))
    finally:
        await client.close()


async def test_api_key_is_sent_as_bearer() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        body = await request.json()
        assert body["model"] == "gpt-x" and body["max_tokens"] == 5
        assert body["response_format"] == {"type": "json_object"}
        return web.json_response(
            {"choices": [{"message": {"content": "{}"}}], "usage": {"prompt_tokens": 7}}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = LLMClient(
        {
            "WEFT_LLM_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1/",
            "WEFT_LLM_OPENAI_API_KEY": "sk-test",
        }
    )
    try:
        result = await client.chat("openai:gpt-x", _messages("x"), max_tokens=5, json_mode=True)
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == ["Bearer sk-test"]
    assert (result.input_tokens, result.output_tokens) == (7, 0)


def test_unconfigured_provider_is_a_clear_error() -> None:
    with pytest.raises(LLMError, match="WEFT_LLM_NOPE_BASE_URL"):
        provider_config("nope", {})


@pytest.mark.parametrize("bad", ["gpt-4", ":x", "openai:"])
def test_model_ids_need_a_provider(bad: str) -> None:
    with pytest.raises(LLMError):
        split_model(bad)


def test_model_part_may_contain_colons() -> None:
    assert split_model("Local:qwen:1.5b") == ("local", "qwen:1.5b")


def test_backoff_grows_exponentially_with_cap_and_honours_retry_after() -> None:
    config = ProviderConfig(
        "p", "http://x", None, 10, 5, 8192, backoff_seconds=1.0, max_backoff_seconds=4.0
    )
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        wait = _backoff(config, attempt, None)
        assert base / 2 <= wait <= base
    assert _backoff(config, 1, 3.0) == 3.0
    assert _backoff(config, 1, 60.0) == 4.0


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_tokens_and_latency_are_counted_by_model(fake_url: str) -> None:
    ok_before = _sample("weft_llm_calls_total", model=MODEL, outcome="ok")
    failed_before = _sample("weft_llm_calls_total", model=MODEL, outcome="error")
    tokens_before = _sample("weft_llm_tokens_total", model=MODEL, direction="input")
    timed_before = _sample("weft_llm_call_duration_seconds_count", model=MODEL)
    client = _client(fake_url, WEFT_LLM_FAKE_MAX_RETRIES="0")
    try:
        await client.chat(MODEL, _messages("[[reply:four score]] and more"))
        with pytest.raises(LLMError):
            await client.chat(MODEL, _messages("[[fail:503:1]] [[reply:ok]]"))
    finally:
        await client.close()
    assert _sample("weft_llm_calls_total", model=MODEL, outcome="ok") == ok_before + 1
    assert _sample("weft_llm_calls_total", model=MODEL, outcome="error") == failed_before + 1
    assert _sample("weft_llm_tokens_total", model=MODEL, direction="input") == tokens_before + 12
    assert _sample("weft_llm_call_duration_seconds_count", model=MODEL) == timed_before + 2


async def test_a_streamed_answer_goes_out_piece_by_piece_with_its_usage(fake_url: str) -> None:
    client = _client(fake_url)
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)

    try:
        result = await client.chat(
            MODEL, _messages("[[reply:four score and seven]] x"), on_delta=on_delta
        )
    finally:
        await client.close()
    assert pieces == ["four", " score", " and", " seven"]
    assert result.text == "four score and seven" and result.finish_reason == "stop"
    assert result.output_tokens == 5 and result.input_tokens > 0  # include_usage


async def test_a_failed_stream_is_retried_before_any_text_went_out(fake_url: str) -> None:
    client = _client(fake_url)
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)

    try:
        result = await client.chat(
            MODEL, _messages("[[fail:503:2]] [[reply:late but whole]]"), on_delta=on_delta
        )
    finally:
        await client.close()
    assert result.text == "late but whole" and "".join(pieces) == "late but whole"
    assert await _calls(fake_url) == 3
