"""Helpers shared by the attachment integration tests: uploads (accounts: tests.support.runs)."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from devstack.stack import Stack
from tests.support.runs import Account

ATTACHMENT_FIELDS = {
    "id",
    "original_filename",
    "kind",
    "content_type",
    "byte_size",
    "sha256",
    "extraction_status",
    "row_count",
    "truncated",
    "created_at",
}


def form(filename: str, data: bytes | AsyncIterator[bytes], name: str = "file") -> Any:
    """A multipart body with one file part (an async iterator makes it chunked)."""
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(data, {"Content-Type": "application/octet-stream"})
    part.set_content_disposition("form-data", name=name, filename=filename)
    return writer


async def upload(
    session: aiohttp.ClientSession,
    stack: Stack,
    account: Account,
    filename: str,
    data: bytes | AsyncIterator[bytes],
) -> tuple[int, dict[str, Any]]:
    async with session.post(
        f"{stack.base_url}/api/v1/attachments", data=form(filename, data), headers=account.headers
    ) as response:
        return response.status, await response.json()


async def zeros(total: int, chunk: int = 1024 * 1024, fill: bytes = b"a") -> AsyncIterator[bytes]:
    """`total` bytes of text, generated chunk by chunk (never held whole)."""
    block = (fill * chunk)[:chunk]
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n
