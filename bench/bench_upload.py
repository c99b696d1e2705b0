"""Upload throughput: a 20 MB CSV through POST /api/v1/attachments (gateway -> storage ->
S3, with hashing and extraction) vs a direct minio-SDK put of the same bytes to the same
S3, in the same run. Target: end-to-end >= 60% of direct.

Starts its own stack on free ports (about a minute), its PostgreSQL with production
durability (bench/durability.py: synchronous_commit=on, read back and printed).
Run: .venv/bin/python -m bench.bench_upload
"""

import asyncio
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.durability import POSTGRES_SETTINGS, describe, settings_in_effect
from devstack.stack import S3_BUCKET, Ports, Stack, StackOptions
from tests.integration.attachments_support import form
from tests.support.runs import create_user

SIZE = 20_000_000
RUNS = 5


def _csv(size: int) -> bytes:
    row = b"12345,some text value,67.89,2024-01-01\n"
    return (b"id,text,amount,date\n" + row * (size // len(row) + 1))[:size]


async def _gateway(stack: Stack, token: str, data: bytes) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.post(
            f"{stack.base_url}/api/v1/attachments",
            data=form("bench.csv", data),
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            body = await response.json()
            assert response.status == 201, body
        return time.perf_counter() - started


def _direct(stack: Stack, data: bytes, n: int) -> float:
    client = stack.s3.client()
    started = time.perf_counter()
    client.put_object(S3_BUCKET, f"bench/direct-{n}.csv", io.BytesIO(data), len(data))
    return time.perf_counter() - started


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(workers=0),
            llm="none",
            postgres_settings=POSTGRES_SETTINGS,
        )
    )
    stack.start()
    try:
        print(describe(await settings_in_effect(stack.dsn)))
        account = create_user(stack, "bench-upload@example.com")
        data = _csv(SIZE)
        await _gateway(stack, account.token, data[:1_000_000])  # warm connections
        e2e, direct = [], []
        for n in range(RUNS):  # interleaved so both see the same machine load
            direct.append(await asyncio.to_thread(_direct, stack, data, n))
            e2e.append(await _gateway(stack, account.token, data))
        mb = SIZE / 1e6
        e2e_rate, direct_rate = mb / statistics.median(e2e), mb / statistics.median(direct)
        print(f"20 MB CSV, median of {RUNS}:")
        print(f"  end to end (gateway, hash, S3 multipart, extraction): {e2e_rate:.1f} MB/s")
        print(f"  direct minio put_object to the same S3:               {direct_rate:.1f} MB/s")
        print(f"  ratio: {100 * e2e_rate / direct_rate:.0f}% (target >= 60%)")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)  # its PostgreSQL, NATS and S3 data


if __name__ == "__main__":
    asyncio.run(main())
