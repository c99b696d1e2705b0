"""Headers every console response carries, and the CSRF tokens of its forms."""

import base64
import hashlib
import hmac
import secrets

# No inline script or style anywhere: everything the pages run is in /app/static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def session_csrf(session_token: str) -> str:
    """The CSRF token of a session's forms: derived from the session's secret, which
    another site can neither read (HttpOnly) nor guess (256 bits)."""
    digest = hashlib.sha256(b"weft-console-csrf:" + session_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_form_secret() -> str:
    """The double-submit secret of forms shown before sign-in (sign-in, invites)."""
    return secrets.token_urlsafe(32)


def same(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a path inside the console (no open redirect)."""
    if (
        target
        and target.startswith("/app/")
        and not target.startswith("//")
        and "\\" not in target
        and all(" " < c <= "~" for c in target)
    ):
        return target
    return "/app/runs"
