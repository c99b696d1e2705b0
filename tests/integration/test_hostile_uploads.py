"""Hostile and oversized uploads through the real stack (issue #14): each must get a
clear 4xx or a bounded `failed` extraction, never a 500, and never stall other accounts."""

import asyncio
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.integration.attachments_support import upload
from tests.support import storage_files as files
from tests.support.runs import Account, create_user

pytestmark = pytest.mark.timeout(240)

KIB = 1024


@pytest.fixture(scope="module")
def uploader(stack: Stack) -> Account:
    return create_user(stack, "hostile-uploader@example.com")


@pytest.fixture(scope="module")
def bystander(stack: Stack) -> Account:
    return create_user(stack, "hostile-bystander@example.com")


async def test_escaped_quotes_json_fails_as_invalid_json_not_at_the_deadline(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account
) -> None:
    # 100 KB of \" made the depth check quadratic: it ran into the 20 s extraction
    # deadline. Now it is scanned at once and json.loads names the real problem.
    status, body = await upload(http, stack, uploader, "quotes.json", b'\\"' * (50 * KIB))
    assert status == 201, body
    data = body["data"]
    assert data["extraction_status"] == "failed"
    assert data["extraction_error"].startswith("Invalid JSON"), data["extraction_error"]


async def test_one_accounts_slow_files_do_not_stall_another_accounts_upload(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account, bystander: Account
) -> None:
    # A perfectly valid but slow file: 2,000 pages take pypdf seconds of CPU each.
    slow_pdf = files.pdf_bytes([f"Page {n} of a long report." for n in range(2000)])
    finished: list[str] = []

    async def timed(name: str, account: Account, filename: str, data: bytes) -> Any:
        answer = await upload(http, stack, account, filename, data)
        finished.append(name)
        return answer

    slow = [
        asyncio.create_task(timed(f"slow{n}", uploader, f"report{n}.pdf", slow_pdf))
        for n in range(6)
    ]
    await asyncio.sleep(1.0)  # the six are in extraction (each takes seconds)
    status, body = await timed("csv", bystander, "small.csv", b"name,hours\nAnn,3\nBob,4\n")
    assert status == 201, body
    assert body["data"]["extraction_status"] == "extracted"
    # The bystander's CSV did not queue behind the uploader's files...
    assert finished == ["csv"], finished
    # ...which waited for their own account's slots, and none of them failed.
    for status, body in await asyncio.gather(*slow):
        assert status == 201, body
        assert body["data"]["extraction_status"] == "extracted", body
        assert body["data"]["kind"] == "pdf"
