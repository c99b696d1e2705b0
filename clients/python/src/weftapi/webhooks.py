"""Verifying webhook deliveries: `Webhook.construct_event(payload, headers, secret)`.

Each delivery is a JSON POST with `Weft-Signature: t=<unix>,v1=<hex>`, where the hex is
HMAC-SHA256 keyed with your account's webhook secret (`whsec_...`) over `"<t>.<body>"`.
Check it against the raw body bytes, before parsing them, and refuse old timestamps so a
captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Mapping, Optional, Union

from weftapi.errors import WebhookVerificationError
from weftapi.models import WebhookEvent

SIGNATURE_HEADER = "Weft-Signature"
DEFAULT_TOLERANCE = 300.0  # seconds between the signature's timestamp and now


class Webhook:
    """Signature checks for webhook receivers (no network: pure functions)."""

    @staticmethod
    def sign(payload: Union[bytes, str], secret: str, timestamp: Optional[int] = None) -> str:
        """The `Weft-Signature` value for `payload` (what the server sends; for tests)."""
        body = payload.encode() if isinstance(payload, str) else payload
        t = int(time.time()) if timestamp is None else int(timestamp)
        mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    @staticmethod
    def verify(
        payload: Union[bytes, str],
        headers: Union[Mapping[str, str], str],
        secret: str,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        now: Optional[float] = None,
    ) -> None:
        """Raises WebhookVerificationError unless the signature (the headers, or the
        header's value) is valid for `payload` and at most `tolerance` seconds old."""
        header = headers if isinstance(headers, str) else _header(headers)
        if not header:
            raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header")
        timestamp: Optional[int] = None
        signatures = []
        for part in header.split(","):
            name, sep, value = part.strip().partition("=")
            if not sep:
                continue
            if name == "t":
                try:
                    timestamp = int(value)
                except ValueError:
                    timestamp = None
            elif name == "v1":
                signatures.append(value)
        if timestamp is None or not signatures:
            raise WebhookVerificationError(
                f"malformed {SIGNATURE_HEADER} header (expected t=<unix>,v1=<hex>)"
            )
        age = (time.time() if now is None else now) - timestamp
        if abs(age) > tolerance:
            raise WebhookVerificationError(
                f"signature timestamp is {abs(age):.0f}s away from now "
                f"(tolerance {tolerance:g}s): too old, or the clocks disagree"
            )
        expected = Webhook.sign(payload, secret, timestamp).split("v1=", 1)[1]
        if not any(hmac.compare_digest(expected, s) for s in signatures):
            raise WebhookVerificationError(
                "signature does not match the payload (wrong secret, or the body was "
                "changed: verify the raw bytes received)"
            )

    @staticmethod
    def construct_event(
        payload: Union[bytes, str],
        headers: Union[Mapping[str, str], str],
        secret: str,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> WebhookEvent:
        """Verifies the delivery, then parses it: {id, type, created_at, data: Run}."""
        Webhook.verify(payload, headers, secret, tolerance=tolerance)
        try:
            doc = json.loads(payload)
        except ValueError as exc:
            raise WebhookVerificationError("payload is not JSON") from exc
        return WebhookEvent(**doc)


def _header(headers: Mapping[str, str]) -> Optional[str]:
    """The signature header, whatever the case of its name (dicts from frameworks vary)."""
    wanted = SIGNATURE_HEADER.lower()
    for name, value in headers.items():
        if name.lower() == wanted:
            return value
    return None
