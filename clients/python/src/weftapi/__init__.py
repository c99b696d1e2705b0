"""The Weft Python SDK: `Weft` (blocking) and `AsyncWeft` (asyncio), typed models,
typed errors and webhook verification.

    from weftapi import Weft
    with Weft() as weft:            # WEFT_API_KEY, WEFT_BASE_URL
        run = weft.runs.create("wf_...", "Summarise this", params={"tone": "formal"})
        print(weft.runs.wait(run.id).result)
"""

from weftapi._async import AsyncPage, AsyncPager, AsyncWeft
from weftapi._core import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL, APIResponse
from weftapi._sync import SyncPage, Weft
from weftapi._version import __version__
from weftapi.errors import (
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
    RunTimeoutError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    WebhookVerificationError,
    WeftAPIError,
    WeftConnectionError,
    WeftError,
    WeftTimeoutError,
)
from weftapi.models import (
    Attachment,
    CodeSnippet,
    ErrorDetail,
    Field,
    HumanInputRequest,
    Me,
    Run,
    RunError,
    RunEvent,
    Stage,
    StageCost,
    WebhookEvent,
    Workflow,
    WorkflowSummary,
)
from weftapi.webhooks import Webhook

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "APIResponse",
    "AsyncPage",
    "AsyncPager",
    "AsyncWeft",
    "Attachment",
    "AuthenticationError",
    "BadRequestError",
    "CodeSnippet",
    "ConflictError",
    "ErrorDetail",
    "Field",
    "HumanInputRequest",
    "InternalServerError",
    "Me",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "RunError",
    "RunEvent",
    "RunTimeoutError",
    "ServiceUnavailableError",
    "Stage",
    "StageCost",
    "SyncPage",
    "UnsupportedMediaTypeError",
    "Webhook",
    "WebhookEvent",
    "WebhookVerificationError",
    "Weft",
    "WeftAPIError",
    "WeftConnectionError",
    "WeftError",
    "WeftTimeoutError",
    "Workflow",
    "WorkflowSummary",
    "__version__",
]
