"""`python -m services.runs.worker`: execute runs from the JetStream job queue.

Lifecycle: connect (Postgres, NATS, billing, storage), serve gRPC health, consume jobs
and run the recovery loop. On SIGTERM: health NOT_SERVING, stop fetching, let in-flight
runs finish their current stage within the grace period (then release them), drain
NATS, close everything.
"""

import asyncio
import contextlib
import logging
import signal
import sys
from contextlib import AsyncExitStack

import uvloop

from services.runs.domain.ssrf import SSRFPolicy, describe
from services.runs.store.writer import RunWriter
from services.runs.worker.clients import BillingPricer, StorageTextReader
from services.runs.worker.config import WorkerConfig
from services.runs.worker.consumer import DURABLE, ConsumerSettings, JobConsumer
from services.runs.worker.context import Services
from services.runs.worker.deltas import JetStreamDeltas
from services.runs.worker.dispatch import Dispatcher
from services.runs.worker.executor import Executor
from services.runs.worker.llm_client import LLMClient
from services.runs.worker.recovery import recovery_loop
from services.runs.worker.stages.http import guarded_session
from services.runs.worker.store import PgStore
from weftcore.background import BackgroundTasks
from weftcore.config import ConfigError
from weftcore.db import create_pool, ping
from weftcore.grpc_client import open_channel
from weftcore.grpc_server import GrpcServer
from weftcore.heap import freeze_startup_heap
from weftcore.liveness import WORKERS_PING_SUBJECT, WORKERS_QUEUE, answer_ping
from weftcore.logs import setup_logging
from weftcore.metrics import MetricsServer, watch_consumers
from weftcore.nats import JOBS_STREAM, connect, ensure_streams
from weftcore.service import watch_dependencies
from weftcore.tracing import setup_tracing

log = logging.getLogger("services.runs.worker")


async def serve(config: WorkerConfig) -> None:
    async with AsyncExitStack() as stack:
        metrics = MetricsServer(config.metrics)
        metrics.start()
        stack.push_async_callback(metrics.close)
        pool = await create_pool(
            config.database_url,
            "runs",
            min_size=2,
            max_size=config.concurrency + 4,
            light_reset=True,
            custom_plans=True,  # its hot statements lock and update runs by the batch
        )
        stack.push_async_callback(pool.close)
        nc = await connect(config.nats_url, f"weft-worker-{config.worker_id}")
        stack.push_async_callback(_drain, nc)
        js = nc.jetstream()
        await ensure_streams(js)

        billing = open_channel(config.billing_addr)
        storage = open_channel(config.storage_addr)
        stack.push_async_callback(billing.close)
        stack.push_async_callback(storage.close)
        llm = LLMClient()
        stack.push_async_callback(llm.close)
        policy = SSRFPolicy.from_env()
        services = Services(
            llm=llm,
            pricer=BillingPricer(billing),
            read_text=StorageTextReader(storage),
            ssrf=policy,
            deltas=JetStreamDeltas(js),
        )
        services.http = guarded_session(services)
        stack.push_async_callback(services.http.close)

        writer = RunWriter(pool)
        stack.push_async_callback(writer.close)
        store = PgStore(pool, writer)
        stack.push_async_callback(store.close)
        dispatcher = Dispatcher(pool, writer, config.dispatch_interval_seconds)
        executor = Executor(
            store,
            services,
            config.worker_id,
            stale_seconds=config.stale_seconds,
            heartbeat_seconds=config.heartbeat_seconds,
            concurrency=config.concurrency,
            job_keepalive_seconds=config.ack_wait_seconds / 3,
            after_run=dispatcher.wake,
        )
        stack.push_async_callback(executor.close)
        consumer = JobConsumer(
            js,
            executor,
            ConsumerSettings(
                jobs_in_flight=config.jobs_in_flight,
                ack_wait_seconds=config.ack_wait_seconds,
                max_deliver=config.max_deliver,
            ),
        )
        server = GrpcServer([], config.grpc_bind, config.grace_seconds)

        async def database() -> bool:
            return await ping(pool)

        async def queue() -> bool:
            return nc.is_connected

        tasks = BackgroundTasks()
        stack.push_async_callback(tasks.close)  # also on a failure before the drain below
        await server.start()
        freeze_startup_heap()
        tasks.start("consumer", consumer.run)
        tasks.start(
            "recovery",
            lambda: recovery_loop(
                pool,
                writer,
                config.stale_seconds,
                config.pending_recovery_seconds,
                config.recovery_interval_seconds,
            ),
        )
        tasks.start("dispatcher", dispatcher.run)
        tasks.start(
            "health",
            lambda: watch_dependencies(server, {"database": database, "nats": queue}, 1.0),
        )
        tasks.start("consumer-metrics", lambda: watch_consumers(js, [(JOBS_STREAM, DURABLE)]))
        pings = await nc.subscribe(WORKERS_PING_SUBJECT, WORKERS_QUEUE, answer_ping)
        log.info(
            "worker started",
            extra={
                "worker_id": config.worker_id,
                "concurrency": config.concurrency,
                "jobs_in_flight": config.jobs_in_flight,
                "ssrf": describe(policy),
            },
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

        log.info("stopping: finishing in-flight stages", extra={"grace": config.grace_seconds})
        await server.health.enter_graceful_shutdown()
        with contextlib.suppress(Exception):  # NATS may be gone: the drain below copes
            await pings.unsubscribe()  # a stopping worker no longer counts as alive
        consumer.stop()
        await consumer.drain(config.grace_seconds)
        await tasks.close()
        await server.server.stop(0)
    log.info("worker stopped", extra={"worker_id": config.worker_id})


async def _drain(nc: object) -> None:
    try:
        await nc.drain()  # type: ignore[attr-defined]
    except Exception:
        log.warning("NATS drain failed", exc_info=True)


def main() -> None:
    try:
        config = WorkerConfig.from_env()
    except ConfigError as exc:
        print(f"worker: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging("worker", config.log_level)
    setup_tracing("worker")
    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
