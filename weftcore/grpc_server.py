"""gRPC server bootstrap shared by every service: interceptor, health, graceful shutdown."""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from weftcore import tracing
from weftcore.context import REQUEST_ID_METADATA, request_id_var
from weftcore.errors import Internal, WeftError, status_bytes, to_status
from weftcore.metrics import RpcTimer, code_of

log = logging.getLogger(__name__)

T = TypeVar("T")

# Large enough for upload chunks and JSON documents; uploads stream in 256 KiB pieces.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# Health service names under which a process reports each dependency it watches.
DEPENDENCY_HEALTH_PREFIX = "weft.dependency."
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():  # type: ignore[attr-defined]
        if key == REQUEST_ID_METADATA:
            return str(value)
    return "-"


def refused(exc: Exception) -> WeftError:
    """The error a call answers for `exc`, logged: a domain error as it is, anything else
    as INTERNAL (with its trace in our log, nothing of it to the caller)."""
    if isinstance(exc, WeftError):
        # One line per refused call, so a request id leads to what went wrong where.
        log.info("call refused", extra={"code": exc.code, "error_message": exc.message})
        return exc
    log.exception("unhandled error in gRPC handler")
    return Internal("Internal error.")


async def batch_item(request_id: str, answer: Awaitable[T]) -> tuple[T | None, bytes]:
    """One item of a batch call, answered as its own call would be: in the caller's task
    (asyncio.gather gives each its own), with its request id; (answer, b"") or (None, the
    serialized error status)."""
    request_id_var.set(request_id or "-")
    try:
        return await answer, b""
    except Exception as exc:
        return None, status_bytes(refused(exc))


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    await context.abort_with_status(to_status(refused(exc)))


class ContextInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id from metadata, maps domain errors to rich statuses and
    records each call's status and duration (weftcore.metrics)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        rid = _request_id(handler_call_details)
        method = handler_call_details.method

        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                request_id_var.set(rid)
                timer, failure = RpcTimer(method), None
                try:
                    return await inner_uu(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)
                except BaseException as exc:  # cancelled by the client or the shutdown
                    failure = exc
                    raise
                finally:
                    timer.done(code_of(context, failure))

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(request_iterator: Any, context: Any) -> Any:
                request_id_var.set(rid)
                timer, failure = RpcTimer(method), None
                try:
                    return await inner_su(request_iterator, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)
                except BaseException as exc:  # cancelled by the client or the shutdown
                    failure = exc
                    raise
                finally:
                    timer.done(code_of(context, failure))

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                request_id_var.set(rid)
                timer, failure = RpcTimer(method), None
                try:
                    async for item in inner_us(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)
                except BaseException as exc:  # cancelled by the client or the shutdown
                    failure = exc
                    raise
                finally:
                    timer.done(code_of(context, failure))

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


class GrpcServer:
    """A grpc.aio server with health checking that shuts down gracefully on SIGTERM."""

    def __init__(self, service_names: list[str], bind: str, grace_seconds: float) -> None:
        self.server = grpc.aio.server(
            interceptors=[*tracing.grpc_server_interceptors(), ContextInterceptor()],
            options=SERVER_OPTIONS,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = ["", *service_names]
        self.bind = bind
        self.grace_seconds = grace_seconds
        self.port = 0
        self._stop = asyncio.Event()

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(self.bind)
        await self.server.start()
        await self.set_serving(True)
        log.info("gRPC server listening", extra={"bind": self.bind, "port": self.port})
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.service_names:
            await self.health.set(name, status)

    async def set_dependency(self, name: str, up: bool) -> None:
        """One dependency's state as health service `weft.dependency.<name>`."""
        await self.health.set(
            DEPENDENCY_HEALTH_PREFIX + name,
            health_pb2.HealthCheckResponse.SERVING
            if up
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_for_signal(self) -> None:
        """Block until SIGTERM/SIGINT (or request_stop), then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        # NOT_SERVING first so load balancers stop sending, then finish in-flight calls.
        await self.health.enter_graceful_shutdown()
        log.info("shutting down gRPC server", extra={"grace_seconds": self.grace_seconds})
        await self.server.stop(self.grace_seconds)
