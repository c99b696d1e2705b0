"""The Weft Python client: `Weft` (blocking) and `AsyncWeft` (asyncio), plus typed errors.

from weft_client import Weft
with Weft(api_key, "https://weft.example.com") as weft:
    run = weft.runs.create("wf_...", "Summarise this", params={"tone": "formal"})
    print(weft.runs.wait(run["id"], timeout=300)["result"])
"""

from weft_client._async import AsyncWeft
from weft_client._sync import Weft
from weft_client._transport import RetryPolicy
from weft_client.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    WeftAPIError,
    WeftConnectionError,
    WeftError,
    WeftTimeoutError,
)

__all__ = [
    "AsyncWeft",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "UnsupportedMediaTypeError",
    "Weft",
    "WeftAPIError",
    "WeftConnectionError",
    "WeftError",
    "WeftTimeoutError",
]
