"""Client for OpenAI-compatible `/chat/completions` APIs, one config per provider.

A model id is `<provider>:<model>` (e.g. `local:qwen2.5-coder-1.5b-instruct`,
`openai:gpt-4o-mini`). Provider settings come from the environment:

- `WEFT_LLM_<PROVIDER>_BASE_URL` (required to use the provider, e.g. `http://host/v1`)
- `WEFT_LLM_<PROVIDER>_API_KEY` (optional; sent as a Bearer token)
- `WEFT_LLM_<PROVIDER>_TIMEOUT_SECONDS` (default `WEFT_LLM_TIMEOUT_SECONDS`, 120)
- `WEFT_LLM_<PROVIDER>_MAX_RETRIES` (default `WEFT_LLM_MAX_RETRIES`, 3)
- `WEFT_LLM_<PROVIDER>_CONTEXT_TOKENS` (default 8192; bounds the prompt we build)

429, 5xx, timeouts and connection errors are retried with exponential backoff and
jitter (honouring Retry-After); other 4xx are the caller's fault and fail at once.

With `on_delta`, the answer is streamed (`stream: true`, with
`stream_options.include_usage` so the last chunk still carries the usage that prices
it): each piece of text is handed to `on_delta` as it arrives. A stream that breaks
after text went out is not retried (its receivers saw that text): it fails.
"""

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.runs.worker.metrics import observe_llm
from weftcore import tracing
from weftcore.config import ConfigError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

OnDelta = Callable[[str], Awaitable[None]]


class LLMError(Exception):
    """The provider did not give a usable answer; `message` is safe to show to users."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str | None
    timeout_seconds: float
    max_retries: int
    context_tokens: int
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str  # the id we asked for, `<provider>:<model>`
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None


def split_model(model_id: str) -> tuple[str, str]:
    """`"openai:gpt-4o"` -> `("openai", "gpt-4o")`; the model part may contain colons."""
    provider, sep, model = model_id.partition(":")
    if not sep or not provider or not model:
        raise LLMError(f"model {model_id!r} must look like '<provider>:<model>'")
    return provider.lower(), model


def provider_config(provider: str, env: Mapping[str, str] | None = None) -> ProviderConfig:
    """Read one provider's settings; LLMError when the provider is not configured."""
    source = os.environ if env is None else env
    prefix = f"WEFT_LLM_{provider.upper().replace('-', '_')}_"
    base_url = source.get(prefix + "BASE_URL", "")
    if not base_url:
        raise LLMError(f"LLM provider {provider!r} is not configured ({prefix}BASE_URL)")

    def number(name: str, default: str) -> float:
        raw = source.get(prefix + name) or source.get("WEFT_LLM_" + name) or default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{prefix}{name} must be a number, got {raw!r}") from None

    return ProviderConfig(
        name=provider,
        base_url=base_url.rstrip("/"),
        api_key=source.get(prefix + "API_KEY") or None,
        timeout_seconds=number("TIMEOUT_SECONDS", "120"),
        max_retries=int(number("MAX_RETRIES", "3")),
        context_tokens=int(number("CONTEXT_TOKENS", "8192")),
        backoff_seconds=number("BACKOFF_SECONDS", "0.5"),
    )


class LLMClient:
    """Chat completions over one shared aiohttp session; create once, `close()` at exit."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._session = session
        self._owns_session = session is None
        self._configs: dict[str, ProviderConfig] = {}

    def config_for(self, model_id: str) -> ProviderConfig:
        provider, _ = split_model(model_id)
        if provider not in self._configs:
            self._configs[provider] = provider_config(provider, self._env)
        return self._configs[provider]

    def context_tokens(self, model_id: str) -> int:
        """The model's context window in tokens (configured per provider)."""
        return self.config_for(model_id).context_tokens

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True)
            )
        return self._session

    async def chat(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_mode: bool = False,
        on_delta: OnDelta | None = None,
    ) -> ChatResult:
        """One chat completion, retried on transient failures; LLMError when it gives up.
        With `on_delta`, streamed: each piece of the answer goes to it as it arrives."""
        started = time.perf_counter()
        try:
            with tracing.span("llm chat", {"gen_ai.request.model": model_id}) as span:
                result = await self._chat(
                    model_id, messages, max_tokens, temperature, json_mode, on_delta
                )
                if span is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
        except LLMError:
            observe_llm(model_id, time.perf_counter() - started, ok=False)
            raise
        observe_llm(
            model_id,
            time.perf_counter() - started,
            ok=True,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        return result

    async def _chat(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        max_tokens: int | None,
        temperature: float | None,
        json_mode: bool,
        on_delta: OnDelta | None,
    ) -> ChatResult:
        config = self.config_for(model_id)
        _, model = split_model(model_id)
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if on_delta is not None:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        url = f"{config.base_url}/chat/completions"
        last: LLMError | None = None
        retry_after: float | None = None
        for attempt in range(config.max_retries + 1):
            if attempt:
                await asyncio.sleep(_backoff(config, attempt, retry_after))
            try:
                return await self._once(url, body, headers, config, model_id, on_delta)
            except _Retryable as exc:
                last, retry_after = exc.error, exc.retry_after
                log.warning(
                    "LLM call failed, will retry",
                    extra={
                        "model": model_id,
                        "attempt": attempt + 1,
                        "status": exc.error.status,
                        "error": exc.error.message,
                    },
                )
        assert last is not None
        raise LLMError(
            f"{last.message} (gave up after {config.max_retries + 1} attempts)", status=last.status
        )

    async def _once(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        config: ProviderConfig,
        model_id: str,
        on_delta: OnDelta | None = None,
    ) -> ChatResult:
        timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        stream = _Stream(on_delta) if on_delta is not None else None
        try:
            async with self._http().post(url, json=body, headers=headers, timeout=timeout) as resp:
                if resp.status != 200:
                    detail = (await resp.text())[:300]
                    error = LLMError(
                        f"LLM provider {config.name!r} answered HTTP {resp.status}: {detail}",
                        status=resp.status,
                    )
                    if resp.status in RETRYABLE_STATUSES:
                        raise _Retryable(error, _retry_after(resp.headers.get("Retry-After")))
                    raise error
                if stream is not None:
                    await stream.read(resp.content)
                    return stream.result(model_id, config.name)
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientError, ValueError) as exc:
            if stream is not None and stream.sent:
                raise LLMError(
                    f"the stream from LLM provider {config.name!r} broke mid-answer"
                    f" ({type(exc).__name__})"
                ) from None
            raise self._transient(exc, config) from None
        return _parse(data, model_id, config.name)

    @staticmethod
    def _transient(exc: Exception, config: ProviderConfig) -> "_Retryable":
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return _Retryable(
                LLMError(f"LLM provider {config.name!r} timed out after {config.timeout_seconds}s")
            )
        if isinstance(exc, aiohttp.ClientError):
            return _Retryable(
                LLMError(f"cannot reach LLM provider {config.name!r}: {type(exc).__name__}")
            )
        return _Retryable(
            LLMError(f"LLM provider {config.name!r} sent a response that is not JSON")
        )


class _Stream:
    """One streamed answer: server-sent `data:` lines of chat.completion.chunk objects,
    `[DONE]` at the end; the text is handed on piece by piece and kept whole."""

    def __init__(self, on_delta: OnDelta) -> None:
        self._on_delta = on_delta
        self._parts: list[str] = []
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None
        self.sent = False  # text went out: the answer can no longer be retried

    async def read(self, content: aiohttp.StreamReader) -> None:
        async for raw in content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return
            chunk = json.loads(payload)  # ValueError: not JSON
            if not isinstance(chunk, dict):
                raise ValueError("chunk is not an object")
            self._usage = chunk.get("usage") or self._usage
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                self._finish = choice.get("finish_reason") or self._finish
                if text:
                    self._parts.append(str(text))
                    self.sent = True
                    await self._on_delta(str(text))

    def result(self, model_id: str, provider: str) -> ChatResult:
        try:
            return ChatResult(
                text="".join(self._parts),
                model=model_id,
                input_tokens=int(self._usage.get("prompt_tokens") or 0),
                output_tokens=int(self._usage.get("completion_tokens") or 0),
                finish_reason=self._finish,
            )
        except (TypeError, ValueError, AttributeError):
            raise LLMError(f"LLM provider {provider!r} sent an unexpected usage") from None


class _Retryable(Exception):
    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _retry_after(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _backoff(config: ProviderConfig, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    if retry_after is not None:
        return min(retry_after, config.max_backoff_seconds)
    base = min(config.max_backoff_seconds, config.backoff_seconds * 2 ** (attempt - 1))
    # Full jitter on the upper half keeps many workers from retrying in lockstep.
    return base / 2 + random.random() * base / 2


def _parse(data: Any, model_id: str, provider: str) -> ChatResult:
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        return ChatResult(
            text=str(text),
            model=model_id,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise LLMError(f"LLM provider {provider!r} sent an unexpected response shape") from None
