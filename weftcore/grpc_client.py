"""gRPC channels that carry the request id to every service call."""

from collections.abc import Callable
from typing import Any

import grpc

from weftcore import tracing
from weftcore.batching import Batcher
from weftcore.context import REQUEST_ID_METADATA, request_id_var
from weftcore.errors import from_rpc_error, from_status_bytes
from weftcore.grpc_server import MAX_MESSAGE_BYTES


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata()
    for key, value in details.metadata or ():
        metadata.add(key, value)
    metadata.add(REQUEST_ID_METADATA, request_id_var.get())
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request_iterator)


def open_channel(target: str) -> grpc.aio.Channel:
    """An insecure channel (loopback / in-cluster; mTLS is the mesh's job) with request ids."""
    return grpc.aio.insecure_channel(
        target,
        interceptors=[
            *tracing.grpc_client_interceptors(),
            _UnaryUnary(),
            _UnaryStream(),
            _StreamUnary(),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Fail fast when a service restarts instead of backing off for a minute.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.keepalive_time_ms", 30000),
        ],
    )


def batched_rpc(
    method: Callable[..., Any],
    batch_request: Callable[[list[Any]], Any],
    answer: Callable[[Any], Any],
    timeout: float,
) -> Batcher[Any, Any]:
    """A Batcher over a batch RPC whose reply has `outcomes`, one per item in order, each
    with `error` (a serialized status) or the item's answer (`answer(outcome)`). A caller
    gets its answer or its own WeftError; a failed call fails its batch's callers."""

    async def send(items: list[Any]) -> list[Any]:
        try:
            reply = await method(batch_request(items), timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return [
            from_status_bytes(outcome.error) if outcome.error else answer(outcome)
            for outcome in reply.outcomes
        ]

    return Batcher(send)
