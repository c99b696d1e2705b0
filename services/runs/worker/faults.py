"""Which unexpected exceptions from a stage mean "try again later" and which "this run
cannot go on".

Stages report what they know as StageError (the run fails) or TransientError (the job is
retried). Anything else is unexpected. An outage of something the worker depends on (a
refused or dropped connection, a database or gRPC service that is down) heals by
itself, so the job is retried; any other exception (a ValueError from odd input, a bug)
would fail the same way on every redelivery, so the run fails instead of looping.
"""

import asyncpg
import grpc

# Raised by connections and the clients on top of them when the other side is unreachable.
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError, socket errors
    grpc.RpcError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
)


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says a dependency is unreachable (retry), not that the run is bad."""
    return isinstance(exc, _OUTAGES)
