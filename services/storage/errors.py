"""Storage-specific public errors (mapped by code to 413 / 415 at the gateway)."""

from weftcore.errors import InvalidArgument, ResourceExhausted


class PayloadTooLarge(ResourceExhausted):
    """413: the upload is over its cap (the partial object is removed)."""

    default_code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(InvalidArgument):
    """415: the content is none of the supported kinds."""

    default_code = "UNSUPPORTED_MEDIA_TYPE"
