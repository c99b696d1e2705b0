"""http stages: a rendered request that cannot be sent fails the stage with
HTTP_INVALID_REQUEST naming what is wrong; nothing escapes as an exception."""

from typing import Any

import pytest

from services.runs.domain.ssrf import SSRFPolicy
from services.runs.worker.context import AttachmentText, Services
from services.runs.worker.model import StageError
from services.runs.worker.stages import http

CONTEXT = {"input_text": "a\r\nX-Injected: 1", "params": {"port": "99999"}}


class Unused:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no LLM or pricer in an http stage ({name})")


async def no_reading(user_id: str, ids: list[str]) -> list[AttachmentText]:
    raise AssertionError("an http stage reads no attachments")


@pytest.mark.parametrize(
    ("stage", "words"),
    [
        ({"headers": {"X-Note": "{{ input_text }}"}}, "header X-Note"),
        ({"headers": {"X-Bad\r\nX-Injected": "1"}}, "not a valid header name"),
        ({"headers": {"Bad Name": "1"}}, "not a valid header name"),
        ({"method": "GE T"}, "not an HTTP method"),
        ({"method": "GET\r\n"}, "not an HTTP method"),
        ({"url": "http://127.0.0.1:{{ params.port }}/"}, "not valid"),
        ({"url": "http://[::1/"}, "not valid"),
        ({"url": "http://exa mple.com/"}, "spaces or control characters"),
        ({"url": "http:///path"}, "no host"),
        ({"url": "{{ '' }}"}, "empty"),
        ({"body": "{{ '\\ud800' }}"}, "UTF-8"),
        ({"timeout_seconds": "soon"}, "timeout_seconds"),
    ],
)
async def test_a_request_that_cannot_be_sent_fails_the_stage(
    stage: dict[str, Any], words: str
) -> None:
    definition = {"id": "call", "type": "http", "url": "http://127.0.0.1:9/", **stage}
    services = Services(
        llm=Unused(), pricer=Unused(), read_text=no_reading, ssrf=SSRFPolicy(allow_private=True)
    )
    with pytest.raises(StageError) as info:
        await http.run(definition, CONTEXT, services)
    assert info.value.code == "HTTP_INVALID_REQUEST"
    assert words in info.value.message
    assert info.value.message.startswith("http stage: ")


def test_a_good_request_is_built_as_rendered() -> None:
    req = http.build_request(
        {
            "id": "call",
            "type": "http",
            "method": "post",
            "url": " https://hooks.example.com/{{ params.port }} ",
            "headers": {"X-Tab": "a\tb", "X-Unicode": "é"},
            "body": "{{ input_text | tojson }}",
            "timeout_seconds": 3,
        },
        {"input_text": "hé", "params": {"port": "p"}},
    )
    assert (req.method, req.url, req.timeout) == ("POST", "https://hooks.example.com/p", 3.0)
    assert req.headers == {"X-Tab": "a\tb", "X-Unicode": "é"}
    assert req.body == '"hé"'.encode()
