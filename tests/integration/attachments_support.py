"""Helpers shared by the attachment integration tests: accounts, keys, uploads."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from devstack.stack import Stack

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


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def create_account(stack: Stack, email: str, plan: str = "pro") -> Account:
    user = json.loads(stack.admin("users", "create", "--email", email, "--plan", plan).stdout)
    key = json.loads(stack.admin("keys", "create", "--user", user["id"], "--name", "t").stdout)
    return Account(user["id"], key["secret"])


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
