"""The gateway's CreateRuns batches: capped by encoded size, a batch the transport refuses
for its size retried one request per call, and a lone request over the cap refused as
too large (413), never an INTERNAL for the others."""

import asyncio
import logging
from typing import Any

import grpc
import pytest

from gateway.clients import Services, batched_create_run
from weft.runs.v1 import runs_pb2
from weftcore.batching import BatcherClosed
from weftcore.errors import WeftError

CAP = 10_000  # the fake transport's message cap


class FakeRuns:
    """CreateRuns over a transport with a message cap; every request gets a 201."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def CreateRuns(
        self, request: runs_pb2.CreateRunsRequest, timeout: float
    ) -> runs_pb2.CreateRunsResponse:
        self.calls.append([r.request_id for r in request.requests])
        await self.release.wait()
        if request.ByteSize() > CAP:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="Received message larger than max",
            )
        return runs_pb2.CreateRunsResponse(
            outcomes=[
                runs_pb2.CreateRunOutcome(
                    response=runs_pb2.CreateRunResponse(run=runs_pb2.CreatedRun(id=r.request_id))
                )
                for r in request.requests
            ]
        )


def request(rid: str, text_bytes: int) -> runs_pb2.CreateRunRequest:
    return runs_pb2.CreateRunRequest(request_id=rid, input_text="x" * text_bytes)


async def test_concurrent_big_requests_share_batches_within_the_size_cap() -> None:
    runs = FakeRuns()
    runs.release.clear()
    batcher = batched_create_run(runs, max_batch_bytes=CAP // 2)  # type: ignore[arg-type]
    first = [asyncio.ensure_future(batcher.call(request(f"req_{i}", 100))) for i in range(4)]
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batcher.call(request(f"req_b{i}", 2_000))) for i in range(6)]
    waiting.append(asyncio.ensure_future(batcher.call(request("req_small", 10))))
    await asyncio.sleep(0)
    runs.release.set()
    answers = await asyncio.gather(*first, *waiting)
    assert [a.run.id for a in answers][-1] == "req_small"
    # Two big ones (about 2 KB each) fill the 5 KB budget; the small one still fits.
    assert runs.calls[4:] == [
        ["req_b0", "req_b1"],
        ["req_b2", "req_b3"],
        ["req_b4", "req_b5", "req_small"],
    ]


async def test_a_batch_refused_for_its_size_is_sent_again_one_by_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = FakeRuns()
    runs.release.clear()
    # A budget over the transport's cap: only the retry keeps the requests apart.
    batcher = batched_create_run(runs, max_batch_bytes=CAP * 4)  # type: ignore[arg-type]
    busy = [asyncio.ensure_future(batcher.call(request(f"req_{i}", 10))) for i in range(4)]
    await asyncio.sleep(0)
    big = [asyncio.ensure_future(batcher.call(request(f"req_big{i}", 4_000))) for i in range(3)]
    small = asyncio.ensure_future(batcher.call(request("req_small", 10)))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="gateway.clients"):
        runs.release.set()
        answers = await asyncio.gather(*busy, *big, small)
    assert [a.run.id for a in answers[4:]] == ["req_big0", "req_big1", "req_big2", "req_small"]
    assert ["req_big0", "req_big1", "req_big2", "req_small"] in runs.calls
    (failed,) = [r for r in caplog.records if r.getMessage() == "CreateRuns call failed"]
    record: Any = failed
    assert record.request_ids == ["req_big0", "req_big1", "req_big2", "req_small"]
    assert record.grpc_code == "RESOURCE_EXHAUSTED"


async def test_a_lone_request_over_the_cap_is_too_large_for_itself_only() -> None:
    runs = FakeRuns()
    batcher = batched_create_run(runs)  # type: ignore[arg-type]
    with pytest.raises(WeftError) as info:
        await batcher.call(request("req_huge", CAP + 1))
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    assert (await batcher.call(request("req_ok", 10))).run.id == "req_ok"


async def test_closing_the_services_sends_batched_creations_before_the_channels_close() -> None:
    runs = FakeRuns()
    runs.release.clear()
    closed: list[str] = []

    class Channel:
        async def close(self) -> None:
            closed.append("channel")

    unused: Any = None
    services = Services(
        channels={"runs": Channel()},  # type: ignore[dict-item]
        auth=unused,
        runs=unused,
        idempotency=unused,
        storage=unused,
        billing=unused,
        create_run=batched_create_run(runs),  # type: ignore[arg-type]
    )
    created = asyncio.ensure_future(services.create_run.call(request("req_1", 10)))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(services.close())
    await asyncio.sleep(0.01)
    assert closed == []  # the channel stays open while a CreateRuns call is out
    runs.release.set()
    await asyncio.wait_for(closing, 1)
    assert (await created).run.id == "req_1" and closed == ["channel"]
    with pytest.raises(BatcherClosed):
        await services.create_run.call(request("req_2", 10))
