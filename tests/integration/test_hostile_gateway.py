"""Hostile clients against the real stack, at the HTTP edge (issue: hardening).

Each test shows one way a client could reach data it may not see, make the gateway
buffer or hold without bound, leak a token, or get a 5xx for its own bad input."""

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from tests.support.runs import admin_json, apply_workflow, create_account, wait_for

TEMPLATE: list[dict[str, Any]] = [
    {"id": "echo", "type": "template", "template": "{{ input_text }}"}
]
REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "OK?",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
]


@pytest.fixture(scope="module")
async def workflows(stack: Any) -> dict[str, str]:
    return {
        "hidden": await apply_workflow(stack, TEMPLATE),
        "hidden_review": await apply_workflow(stack, REVIEW),
        "allowed": await apply_workflow(stack, TEMPLATE),
    }


# ---- 1. a key's allowlist holds on every run route -----------------------------------


async def test_runs_of_workflows_outside_the_allowlist_do_not_exist(
    stack: Any, workflows: dict[str, str], http: aiohttp.ClientSession
) -> None:
    owner = create_account(stack, "20")
    narrow_key = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        owner.user_id,
        "--name",
        "narrow",
        "--allowlist",
        workflows["allowed"],
    )["secret"]
    narrow = {"Authorization": f"Bearer {narrow_key}"}
    base = f"{stack.base_url}/api/v1"

    async def create(workflow_id: str) -> str:
        async with http.post(
            f"{base}/workflows/{workflow_id}/runs",
            json={"input_text": "hi"},
            headers=owner.headers,
        ) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["data"]["id"])

    finished = await create(workflows["hidden"])
    waiting = await create(workflows["hidden_review"])
    visible = await create(workflows["allowed"])
    await wait_for(http, stack, owner, finished)
    await wait_for(http, stack, owner, visible)
    await wait_for(http, stack, owner, waiting, ("awaiting_input",))
    # The owner's full key reads the finished run first: the gateway now caches it.
    async with http.get(f"{base}/workflow-runs/{finished}", headers=owner.headers) as r:
        assert r.status == 200

    for run_id in (finished, waiting):
        for method, path, body in (
            ("GET", f"/workflow-runs/{run_id}", None),
            ("GET", f"/workflow-runs/{run_id}?wait=1", None),
            ("GET", f"/workflow-runs/{run_id}/events", None),
            ("POST", f"/workflow-runs/{run_id}/cancel", {}),
            ("POST", f"/workflow-runs/{run_id}/input", {"values": {"approved": True}}),
        ):
            async with http.request(method, base + path, json=body, headers=narrow) as r:
                answer = await r.json()
                assert r.status == 404, (method, path, answer)
                assert answer["error"]["code"] == "NOT_FOUND"
                assert run_id in answer["error"]["message"]

    async with http.get(f"{base}/workflow-runs", headers=narrow) as r:
        listed = [run["id"] for run in (await r.json())["data"]]
    assert listed == [visible]
    for hidden in (workflows["hidden"], workflows["hidden_review"]):
        async with http.get(
            f"{base}/workflow-runs", params={"workflow_id": hidden}, headers=narrow
        ) as r:
            assert r.status == 200 and (await r.json()) == {"data": [], "has_more": False}

    # Nothing was changed through the narrow key: the waiting run still waits.
    async with http.get(f"{base}/workflow-runs/{waiting}", headers=owner.headers) as r:
        assert (await r.json())["data"]["status"] == "awaiting_input"


# ---- 6, 7, 10: the connection level -------------------------------------------------


async def _exchange(port: int, chunks: list[bytes], pause: float = 0.0) -> tuple[bytes, float]:
    """Sends `chunks`, `pause` seconds apart, until the server answers or closes the
    connection; answers what the server sent and how long the exchange took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read_all() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                received.extend(data)

    reading = asyncio.create_task(read_all())
    try:
        for chunk in chunks:
            if reading.done() or received:
                break  # the server answered (or closed): no point in sending more
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            if pause:
                await asyncio.wait([reading], timeout=pause)
        # The whole answer, until the server closes (or a moment after it answered).
        await asyncio.wait([reading], timeout=2 if received else 30)
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received), loop.time() - began


def _parse_answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


async def test_header_lines_trickled_slowly_are_cut_off(strict_gateway: int) -> None:
    lines = [b"GET /api/v1/me HTTP/1.1\r\n", b"Host: x\r\n"] + [
        f"X-Slow-{i}: {i}\r\n".encode() for i in range(20)
    ]
    answer, lived = await _exchange(strict_gateway, lines, pause=1.0)
    # The head never completed: the connection is closed, long before 20 lines could.
    assert lived < 8, lived
    assert b"200 OK" not in answer


async def test_a_body_trickled_slowly_gets_408_and_the_connection_closes(
    strict_gateway: int, stack: Any, workflows: dict[str, str]
) -> None:
    account = create_account(stack, "5")
    body = json.dumps({"input_text": "x" * 200}).encode()
    head = (
        f"POST /api/v1/workflows/{workflows['allowed']}/runs HTTP/1.1\r\n"
        f"Host: x\r\nAuthorization: Bearer {account.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    chunks = [head] + [body[i : i + 1] for i in range(len(body))]
    answer, lived = await _exchange(strict_gateway, chunks, pause=0.5)
    assert lived < 10, lived
    status, headers, envelope = _parse_answer(answer)
    assert status == 408, answer
    assert envelope["error"]["code"] == "REQUEST_TIMEOUT"
    assert envelope["error"]["request_id"] == headers["x-request-id"]
    assert headers.get("connection") == "close"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        # A bare LF between header lines.
        (
            b"GET /api/v1/me HTTP/1.1\r\nHost: x\nAuthorization: Bearer {token}\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),
        # A NUL in a header value.
        (
            b"POST /api/v1/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
            b"\r\nIdempotency-Key: a\x00b\r\nContent-Length: 0\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),
        # A 20 KB header.
        (
            b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            431,
            "HEADERS_TOO_LARGE",
        ),
        # 150 headers.
        (
            b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "HEADERS_TOO_LARGE",
        ),
    ],
    ids=["bare-lf", "nul-in-header", "20kb-header", "150-headers"],
)
async def test_unparseable_requests_get_the_envelope_and_never_echo_the_token(
    stack: Any, raw: bytes, status: int, code: str
) -> None:
    account = create_account(stack, "1")
    port = int(stack.base_url.rsplit(":", 1)[1])
    answer, _ = await _exchange(port, [raw.replace(b"{token}", account.token.encode())])
    got, headers, envelope = _parse_answer(answer)
    assert got == status, answer
    assert headers["content-type"].startswith("application/json")
    assert envelope["error"]["code"] == code
    assert envelope["error"]["request_id"] == headers["x-request-id"]
    secret = account.token.removeprefix("wft_live_").encode()
    assert secret not in answer
    log = stack.processes["gateway"].log_path.read_bytes()
    assert secret not in log
    assert b"unparseable request refused" in log


# ---- 8. values no service can store are 400s naming them ---------------------------


@pytest.fixture(scope="module")
async def typed(stack: Any) -> tuple[str, str]:
    """A workflow with a text, an integer and a json field, and its endpoint slug."""
    slug = f"hostile-{uuid.uuid4().hex[:10]}"
    workflow_id = await apply_workflow(
        stack,
        TEMPLATE,
        slug=slug,
        fields=[
            {"name": "name", "type": "text"},
            {"name": "count", "type": "integer"},
            {"name": "doc", "type": "json"},
        ],
    )
    return workflow_id, slug


def _raw_json(text: str) -> bytes:
    return text.encode()


DEEP = "[" * 990 + "]" * 990


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"input_text": "a\\u0000b"}', "input_text"),
        ('{"input_text": "x", "params": {"name": "a\\u0000"}}', "params.name"),
        ('{"input_text": "x", "params": {"doc": {"k": ["ok", "\\u0000"]}}}', "params.doc.k[1]"),
        ('{"input_text": "x", "attachment_ids": ["att_\\u0000"]}', "attachment_ids[0]"),
        ('{"input_text": "\\ud800"}', "input_text"),
        ('{"input_text": "x", "params": {"name": "\\udfff tail"}}', "params.name"),
        ('{"input_text": "x", "params": {"doc": ' + DEEP + "}}", None),
        ('{"input_text": "x", "params": {"count": ' + "9" * 5000 + "}}", "params.count"),
        ('{"input_text": "x", "params": {"count": 99999999999999999999}}', "params.count"),
        ('{"input_text": "x", "params": {"doc": NaN}}', None),
        ('{"input_text": "x", "params": {"a\\u0000": 1}}', "params"),
    ],
    ids=[
        "nul-input",
        "nul-param",
        "nul-nested",
        "nul-attachment",
        "surrogate-input",
        "surrogate-param",
        "nested-990",
        "5000-digits",
        "int-over-64-bits",
        "nan",
        "nul-key",
    ],
)
async def test_unstorable_json_values_are_400(
    stack: Any,
    typed: tuple[str, str],
    http: aiohttp.ClientSession,
    body: str,
    param: str | None,
) -> None:
    account = create_account(stack, "1")
    workflow_id, slug = typed
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        data=_raw_json(body),
        headers={**account.headers, "Content-Type": "application/json"},
    ) as response:
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"]["code"] in ("INVALID_PARAM", "INVALID_JSON")
    if param is not None:
        assert answer["error"]["param"] == param, answer
    # The same body, flattened, on the published endpoint.
    try:
        flat = json.loads(body, parse_int=str)
    except (RecursionError, ValueError):
        flat = None
    if flat is not None and isinstance(flat, dict):
        flat = {**flat.pop("params", {}), **flat}
        flat.pop("input_text", None)
        async with http.post(
            f"{stack.base_url}/api/v1/endpoints/{slug}", json=flat, headers=account.headers
        ) as response:
            assert response.status < 500, await response.text()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workflow-runs/run_%00",
        "/api/v1/workflow-runs/run_%00/events",
        "/api/v1/workflows/wf_%00",
        "/api/v1/workflows/wf_%00/code",
        "/api/v1/attachments/att_%00",
        "/api/v1/workflow-runs?starting_after=%00",
        "/api/v1/workflow-runs?workflow_id=%00",
        "/api/v1/workflow-runs?status=%00",
        "/api/v1/workflows?starting_after=%00",
        "/api/v1/workflow-runs/run_%ED%A0%80",
        "/api/v1/workflow-runs/run_x/events?last_event_id=99999999999999999999999",
        "/api/v1/workflow-runs/run_x/events?last_event_id=9223372036854775808",
    ],
)
async def test_unstorable_path_and_query_values_are_400(
    stack: Any, http: aiohttp.ClientSession, path: str
) -> None:
    account = create_account(stack, "1")
    async with http.get(
        yarl.URL(stack.base_url + path, encoded=True), headers=account.headers
    ) as response:
        answer = await response.json()
    assert response.status in (400, 404), answer
    assert answer["error"]["code"] in ("INVALID_PARAM", "NOT_FOUND")
    for method, post_path in (
        ("POST", "/api/v1/endpoints/a%00"),
        ("POST", "/api/v1/workflow-runs/run_%00/cancel"),
        ("POST", "/api/v1/workflows/wf_%00/runs"),
    ):
        async with http.request(
            method,
            yarl.URL(stack.base_url + post_path, encoded=True),
            json={"input_text": "x"},
            headers=account.headers,
        ) as response:
            answer = await response.json()
        assert response.status == 400, (post_path, answer)
        assert answer["error"]["code"] == "INVALID_PARAM"


async def test_multipart_values_no_service_can_store_are_400(
    stack: Any, typed: tuple[str, str], http: aiohttp.ClientSession
) -> None:
    account = create_account(stack, "1")
    workflow_id, _ = typed
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
    boundary = "hostileboundary"

    def multipart(*parts: bytes) -> bytes:
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
        return body + b"--" + boundary.encode() + b"--\r\n"

    text_part = b'Content-Disposition: form-data; name="input_text"\r\n\r\nhello'
    cases = {
        "raw-filename": multipart(
            text_part,
            b'Content-Disposition: form-data; name="file"; filename="\xff\xfe.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\na,b\n1,2\n",
        ),
        "nul-field": multipart(
            b'Content-Disposition: form-data; name="input_text"\r\n\r\nhel\x00lo'
        ),
        "invalid-utf8-field": multipart(
            text_part, b'Content-Disposition: form-data; name="name"\r\n\r\n\xff\xfe'
        ),
        "deep-json-field": multipart(
            text_part,
            b'Content-Disposition: form-data; name="doc"\r\n\r\n' + DEEP.encode(),
        ),
    }
    for case, body in cases.items():
        async with http.post(
            url,
            data=body,
            headers={
                **account.headers,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        ) as response:
            answer = await response.json()
        assert response.status == 400, (case, answer)
        assert answer["error"]["code"] in ("INVALID_PARAM", "INVALID_JSON"), (case, answer)


# ---- 2. multipart bodies are capped as a whole -------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_endless_form_fields_are_refused_early_without_buffering(
    stack: Any, typed: tuple[str, str]
) -> None:
    """~150 MB of 60 KB text fields, chunked (no Content-Length), on every multipart
    route: 413 long before the end, and the gateway's memory stays flat."""
    account = create_account(stack, "1")
    workflow_id, slug = typed
    port = int(stack.base_url.rsplit(":", 1)[1])
    gateway_pid = stack.processes["gateway"].pid
    boundary = b"capboundary"
    field = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        + b"x" * 60_000
        + b"\r\n"
    )
    framed = _chunked(field)
    before = _rss_kib(gateway_pid)
    for path in (
        "/api/v1/attachments",
        f"/api/v1/workflows/{workflow_id}/runs",
        f"/api/v1/endpoints/{slug}",
    ):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        answer, _ = await _exchange(port, [head, *([framed] * 2500)])
        status, _, envelope = _parse_answer(answer)
        assert status == 413, (path, answer[:300])
        assert envelope["error"]["code"] == "PAYLOAD_TOO_LARGE"
    grown_mib = (_rss_kib(gateway_pid) - before) / 1024
    assert grown_mib < 40, f"gateway RSS grew {grown_mib:.0f} MiB"


async def test_too_many_parts_and_a_declared_oversize_body_are_413(
    stack: Any, typed: tuple[str, str], http: aiohttp.ClientSession
) -> None:
    account = create_account(stack, "1")
    workflow_id, _ = typed
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("input_text", "hi")
    for i in range(80):
        form.add_field(f"f{i}", "v")
    async with http.post(url, data=form, headers=account.headers) as response:
        answer = await response.json()
    assert response.status == 413 and answer["error"]["code"] == "PAYLOAD_TOO_LARGE", answer
    assert "parts" in answer["error"]["message"]
    port = int(stack.base_url.rsplit(":", 1)[1])
    head = (
        f"POST /api/v1/workflows/{workflow_id}/runs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {account.token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer_raw, _ = await _exchange(port, [head])
    status, _, envelope = _parse_answer(answer_raw)
    assert status == 413 and envelope["error"]["code"] == "PAYLOAD_TOO_LARGE"


# ---- 13. open long-polls and event streams are capped per account -------------------


async def test_open_long_polls_and_streams_are_capped_per_account(
    stack: Any, workflows: dict[str, str]
) -> None:
    account = create_account(stack, "5")
    other = create_account(stack, "5")
    base = f"{stack.base_url}/api/v1"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        runs = []
        for who in (account, other):
            async with http.post(
                f"{base}/workflows/{workflows['hidden_review']}/runs",
                json={"input_text": "hold"},
                headers=who.headers,
            ) as r:
                runs.append((await r.json())["data"]["id"])
        for who, run_id in zip((account, other), runs, strict=True):
            await wait_for(http, stack, who, run_id, ("awaiting_input",))
        run_id = runs[0]

        async def poll(seconds: int) -> tuple[int, Any, Any]:
            async with http.get(
                f"{base}/workflow-runs/{run_id}",
                params={"wait": str(seconds)},
                headers=account.headers,
            ) as r:
                return r.status, await r.json(), r.headers

        holders = [asyncio.create_task(poll(8)) for _ in range(100)]
        await asyncio.sleep(2)  # all 100 are waiting in the runs service now
        status, body, headers = await poll(1)
        assert status == 429, body
        assert body["error"]["code"] == "RATE_LIMITED" and body["error"]["limit"] == 100
        assert headers["Retry-After"] == "1"
        async with http.get(f"{base}/workflow-runs/{run_id}/events", headers=account.headers) as r:
            assert r.status == 429, await r.text()
            assert (await r.json())["error"]["code"] == "RATE_LIMITED"
        # Another account is not affected, and a poll without wait is not a wait.
        async with http.get(
            f"{base}/workflow-runs/{runs[1]}", params={"wait": "1"}, headers=other.headers
        ) as r:
            assert r.status == 200
        async with http.get(f"{base}/workflow-runs/{run_id}", headers=account.headers) as r:
            assert r.status == 200
        results = await asyncio.gather(*holders)
        assert {status for status, _, _ in results} == {200}
        # Released: the account may wait again.
        status, body, _ = await poll(1)
        assert status == 200, body
