"""The one rule for webhook destinations: checked when a run is created (400 INVALID_PARAM
there) and again before every delivery (a refused delivery fails for good).

https anywhere public; never credentials in the URL; never an internal address
(private, loopback, link-local, unspecified, IPv4 or IPv6, IPv4-mapped included) unless
the policy allows it (services/runs/domain/ssrf.py). Plain http only to loopback, and so only
where loopback is allowed (development). A host name is resolved and every address
judged; at creation the lookup is bounded and a name that does not resolve in time
passes, because delivery checks again, and connects only to the addresses it checked
(which also defeats DNS rebinding).
"""

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from services.runs.domain.ssrf import (
    IPAddress,
    ResolutionFailed,
    SSRFPolicy,
    SSRFRefused,
    is_loopback,
    refusal,
    resolve,
)

MAX_URL_CHARS = 2048
# A creation waits at most this long for DNS; delivery re-checks whatever passed.
CREATION_RESOLVE_SECONDS = 2.0
LOCALHOST = "localhost"

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_webhook_url(url: str) -> tuple[str, int]:
    """(host, port) of a well-formed webhook URL; SSRFRefused saying what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise SSRFRefused(f"the webhook URL is over {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SSRFRefused(f"the webhook URL is not valid ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise SSRFRefused("the webhook URL must use https")
    host = (parts.hostname or "").lower()
    if not host:
        raise SSRFRefused("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise SSRFRefused("the webhook URL must not contain credentials (user:password@)")
    if parts.scheme == "http":
        literal = _literal(host)
        if host != LOCALHOST and (literal is None or not is_loopback(literal)):
            raise SSRFRefused(
                "the webhook URL must use https (plain http only to localhost in development)"
            )
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_webhook_url(
    url: str,
    policy: SSRFPolicy,
    *,
    resolver: Resolver = resolve,
    resolve_timeout: float | None = None,
) -> None:
    """SSRFRefused unless the webhook may be delivered to `url` under `policy`.

    With `resolve_timeout`, a host name that cannot be resolved within it passes (the
    creation-time check); without, ResolutionFailed (a SSRFRefused) says it did not
    resolve, which a delivery treats as worth retrying."""
    host, port = parse_webhook_url(url)
    if policy.host_allowed(host):
        return
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    elif host == LOCALHOST:
        # Loopback by definition (RFC 6761), whatever a resolver says.
        addresses = [ipaddress.ip_address("127.0.0.1")]
    else:
        try:
            addresses = await asyncio.wait_for(resolver(host, port), resolve_timeout)
        except (TimeoutError, ResolutionFailed):
            if resolve_timeout is None:
                raise ResolutionFailed(f"cannot resolve the webhook host {host!r}") from None
            return
    for address in addresses:
        if not policy.address_allowed(address):
            raise SSRFRefused(refusal(host, address))
