"""A scripted Weft API behind httpx.MockTransport (no network): each test queues answers
and reads back the requests the SDK sent."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from weftapi import AsyncWeft, Weft

BASE = "http://weft.test"
Handler = Callable[[httpx.Request], httpx.Response]


def error(
    status: int, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code}.", "request_id": "req_1", **extra}}
    return httpx.Response(status, json=body, headers=headers)


def run(status: str = "pending", run_id: str = "run_1", **extra: Any) -> dict[str, Any]:
    return {"id": run_id, "workflow_id": "wf_1", "status": status, **extra}


@dataclass
class Api:
    """Answers from `script` in order (an exception is raised instead of answering);
    `fallback` once the script is used up."""

    script: list[httpx.Response | Exception] = field(default_factory=list)
    fallback: Handler | None = None
    seen: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        self.bodies.append(request.read())
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        assert self.fallback is not None, f"unexpected {request.method} {request.url}"
        return self.fallback(request)

    def json(self, i: int) -> Any:
        return json.loads(self.bodies[i])

    def client(self, **kwargs: Any) -> Weft:
        http = httpx.Client(transport=httpx.MockTransport(self))
        weft = Weft("wft_live_test", BASE, http_client=http, **kwargs)
        weft._sleep = self.sleeps.append
        return weft

    def async_client(self, **kwargs: Any) -> AsyncWeft:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        weft = AsyncWeft("wft_live_test", BASE, http_client=http, **kwargs)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        weft._sleep = sleep
        return weft


@pytest.fixture
def api() -> Api:
    return Api()
