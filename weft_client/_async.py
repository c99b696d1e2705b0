"""AsyncWeft: the asyncio client. Every method answers the API's `data` object (a dict)."""

import builtins
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from weft_client._transport import RetryPolicy, Transport
from weft_client.errors import WeftTimeoutError, error_from_response

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
TERMINAL = frozenset({"completed", "failed", "canceled"})
MAX_WAIT = 60  # the server's cap on ?wait


def _form(path: Path, field: str = "file") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, path.open("rb"), filename=path.name)
    return form


class AsyncRuns:
    def __init__(self, t: Transport) -> None:
        self._t = t

    async def create(
        self,
        workflow_id: str,
        input_text: str,
        *,
        params: dict[str, Any] | None = None,
        attachment_ids: list[str] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Starts a run. One Idempotency-Key (yours, or a fresh UUID) covers every retry."""
        body: dict[str, Any] = {"input_text": input_text}
        if params is not None:
            body["params"] = params
        if attachment_ids:
            body["attachment_ids"] = list(attachment_ids)
        if webhook_url:
            body["webhook_url"] = webhook_url
        key = idempotency_key or str(uuid.uuid4())
        answer = await self._t.request(
            "POST",
            f"/api/v1/workflows/{workflow_id}/runs",
            json=body,
            headers={"Idempotency-Key": key},
        )
        return dict(answer.body["data"])

    async def get(self, run_id: str, *, wait: int = 0) -> dict[str, Any]:
        """The run; `wait` (0-60 s) long-polls until its status changes."""
        params = {"wait": str(min(max(wait, 0), MAX_WAIT))} if wait else None
        answer = await self._t.request(
            "GET", f"/api/v1/workflow-runs/{run_id}", params=params, timeout=wait + 30
        )
        return dict(answer.body["data"])

    async def wait(self, run_id: str, timeout: float = 600.0, *, poll: int = 30) -> dict[str, Any]:
        """Long-polls until the run is terminal; WeftTimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        run = await self.get(run_id)
        while run["status"] not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WeftTimeoutError(f"run {run_id} still {run['status']} after {timeout}s")
            run = await self.get(run_id, wait=max(1, min(poll, int(left) or 1)))
        return run

    async def list(self, **filters: Any) -> dict[str, Any]:
        """A page: {data, has_more}; filters: workflow_id, status, limit, starting_after."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        answer = await self._t.request("GET", "/api/v1/workflow-runs", params=params)
        return dict(answer.body)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        answer = await self._t.request("POST", f"/api/v1/workflow-runs/{run_id}/cancel", json={})
        return dict(answer.body["data"])

    async def submit_input(self, run_id: str, values: dict[str, Any]) -> dict[str, Any]:
        answer = await self._t.request(
            "POST", f"/api/v1/workflow-runs/{run_id}/input", json={"values": values}
        )
        return dict(answer.body["data"])

    async def events(
        self, run_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Server-Sent Events of the run: {event, id, data} until the stream ends."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        async with self._t.stream(f"/api/v1/workflow-runs/{run_id}/events", headers) as resp:
            if resp.status != 200:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:  # not the JSON envelope (e.g. a proxy's error page)
                    body = None
                raise error_from_response(resp.status, body, dict(resp.headers))
            event: dict[str, Any] = {}
            data: list[str] = []
            async for raw in resp.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        text = "\n".join(data)
                        try:
                            event["data"] = json.loads(text)
                        except ValueError:
                            event["data"] = text
                        yield event
                    event, data = {}, []
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    elif name in ("event", "id"):
                        event[name] = value


class AsyncAttachments:
    def __init__(self, t: Transport) -> None:
        self._t = t

    async def upload(
        self, path: str | Path, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Uploads a local file (streamed); retries reopen it and reuse one Idempotency-Key."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(file)
        answer = await self._t.request(
            "POST",
            "/api/v1/attachments",
            body=lambda: _form(file),
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
            timeout=600,
        )
        return dict(answer.body["data"])

    async def get(self, attachment_id: str) -> dict[str, Any]:
        answer = await self._t.request("GET", f"/api/v1/attachments/{attachment_id}")
        return dict(answer.body["data"])


class AsyncWorkflows:
    def __init__(self, t: Transport) -> None:
        self._t = t

    async def list(self, *, limit: int = 20, starting_after: str | None = None) -> dict[str, Any]:
        """A page: {data, has_more}."""
        params = {"limit": str(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        answer = await self._t.request("GET", "/api/v1/workflows", params=params)
        return dict(answer.body)

    async def get(self, workflow_id: str) -> dict[str, Any]:
        answer = await self._t.request("GET", f"/api/v1/workflows/{workflow_id}")
        return dict(answer.body["data"])

    async def code(
        self, workflow_id: str, language: str | None = None, variant: str | None = None
    ) -> builtins.list[dict[str, str]]:
        params = {k: v for k, v in (("language", language), ("variant", variant)) if v}
        answer = await self._t.request(
            "GET", f"/api/v1/workflows/{workflow_id}/code", params=params
        )
        return list(answer.body["data"])


class AsyncWeft:
    """`async with AsyncWeft(api_key, base_url) as weft: await weft.runs.create(...)`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_retries: int = 4,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._transport = Transport(
            api_key, base_url, retry or RetryPolicy(max_retries=max_retries), timeout
        )
        self.runs = AsyncRuns(self._transport)
        self.attachments = AsyncAttachments(self._transport)
        self.workflows = AsyncWorkflows(self._transport)

    async def me(self) -> dict[str, Any]:
        answer = await self._transport.request("GET", "/api/v1/me")
        return dict(answer.body["data"])

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> "AsyncWeft":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
