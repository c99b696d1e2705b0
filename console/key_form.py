"""The API key form's text fields -> a CreateKeyRequest (pure, unit-tested)."""

import time
from collections.abc import Mapping

from weft.auth.v1 import auth_pb2
from weftcore.errors import InvalidArgument

SCOPES = ("workflows:read", "workflows:write", "workflow_runs:create")
MAX_EXPIRY_DAYS = 3650


def _words(raw: str) -> list[str]:
    return [w for w in raw.replace(",", " ").split() if w]


def parse_pins(raw: str) -> dict[str, int]:
    """`wf_a=2, wf_b=5` (commas, spaces or lines) -> {"wf_a": 2, "wf_b": 5}."""
    pins: dict[str, int] = {}
    for word in _words(raw):
        workflow_id, _, version = word.partition("=")
        if not workflow_id or not version.isdigit() or int(version) < 1:
            raise InvalidArgument(
                f"Version pins are WORKFLOW_ID=VERSION, not {word!r}.", param="version_pins"
            )
        pins[workflow_id] = int(version)
    return pins


def key_request(
    user_id: str, form: Mapping[str, str], scopes: list[str], now: float | None = None
) -> auth_pb2.CreateKeyRequest:
    """The CreateKey call for the form; the auth service validates the rest."""
    expires_at = 0
    days_raw = (form.get("expires_in_days") or "").strip()
    if days_raw:
        try:
            days = float(days_raw)
        except ValueError:
            days = -1
        if not 0 < days <= MAX_EXPIRY_DAYS:
            raise InvalidArgument(
                f"Expiry is a number of days, 1 to {MAX_EXPIRY_DAYS}.", param="expires_in_days"
            )
        expires_at = int((now if now is not None else time.time()) + days * 86400)
    allowlist = _words(form.get("workflow_allowlist") or "")
    return auth_pb2.CreateKeyRequest(
        user_id=user_id,
        name=form.get("name") or "",
        scopes=[s for s in SCOPES if s in scopes],
        has_allowlist=bool(allowlist),
        workflow_allowlist=allowlist,
        expires_at_unix=expires_at,
        version_pins=parse_pins(form.get("version_pins") or ""),
    )
