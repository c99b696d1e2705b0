"""SSRF guard for http stages and webhooks: refuse internal addresses unless configured
otherwise.

A workflow author controls the URL of an http stage, and a caller the `webhook_url` of a
run, so without a guard a run could read the cloud metadata endpoint or poke services on
the network of the worker or the runs service. Every address the host resolves to is
checked (not just the first), and the connection is then made to a checked address only
(`GuardedResolver`), so DNS rebinding between check and connect cannot slip through.
Messages name the address and why it is refused; the caller says what was refused.
"""

import asyncio
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from weftcore.config import env_bool, env_list

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SSRFRefused(Exception):
    """The URL points at an address the guard does not let through."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResolutionFailed(SSRFRefused):
    """The host could not be resolved (now): nothing was judged, a later try may work."""


@dataclass(frozen=True)
class SSRFPolicy:
    """Which internal destinations are allowed anyway (all off by default)."""

    allow_private: bool = False
    # Host names or IP literals (exact, case-insensitive) or CIDR networks.
    allowlist: tuple[str, ...] = ()
    # Loopback addresses (127.0.0.0/8, ::1) and "localhost": development only.
    allow_loopback: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SSRFPolicy":
        source = os.environ if env is None else env
        return cls(
            allow_private=env_bool("WEFT_HTTP_STAGE_ALLOW_PRIVATE", False, source),
            allowlist=tuple(h.lower() for h in env_list("WEFT_HTTP_STAGE_ALLOWLIST", "", source)),
        )

    def host_allowed(self, host: str) -> bool:
        return self.allow_private or host.lower().strip("[]") in self.allowlist

    def address_allowed(self, address: IPAddress) -> bool:
        if self.allow_private or is_public(address):
            return True
        if self.allow_loopback and is_loopback(address):
            return True
        for entry in self.allowlist:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host name entry
        return False


def is_public(address: IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal in practice


def _unmapped(address: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is a.b.c.d to the connection, so it is judged as that."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(address: IPAddress) -> bool:
    return _unmapped(address).is_loopback


def internal_kind(address: IPAddress) -> str:
    """Why `address` is not public, in a word or two ("" when it is public)."""
    address = _unmapped(address)
    kinds = [
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        (
            "shared (carrier-grade NAT)",
            isinstance(address, ipaddress.IPv4Address) and address in _CGNAT,
        ),
    ]
    return next((kind for kind, matches in kinds if matches), "")


def refusal(host: str, address: IPAddress) -> str:
    """The reason a disallowed address of `host` is refused."""
    shown = host if host == str(address) else f"{host} ({address})"
    return f"{shown} is a {internal_kind(address) or 'internal'} address, which is not allowed"


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or SSRFRefused for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SSRFRefused(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise SSRFRefused(f"only http and https URLs are allowed, got {parts.scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise SSRFRefused("the URL has no host")
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, host, port or default


async def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ResolutionFailed(f"cannot resolve host {host!r}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_url(url: str, policy: SSRFPolicy) -> None:
    """Raise SSRFRefused unless every address of the URL's host may be called."""
    _, host, port = parse_url(url)
    if policy.host_allowed(host):
        return
    addresses = await resolve(host, port)
    if not addresses:
        raise SSRFRefused(f"host {host!r} has no addresses")
    for address in addresses:
        if not policy.address_allowed(address):
            raise SSRFRefused(refusal(host, address))


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops nothing but refuses hosts with a disallowed address."""

    def __init__(self, policy: SSRFPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._policy.host_allowed(host):
            for result in results:
                address = ipaddress.ip_address(result["host"])
                if not self._policy.address_allowed(address):
                    raise SSRFRefused(refusal(host, address))
        return results

    async def close(self) -> None:
        await self._inner.close()


def describe(policy: SSRFPolicy) -> dict[str, Any]:
    """For startup logs: what the guard lets through."""
    return {
        "allow_private": policy.allow_private,
        "allowlist": list(policy.allowlist),
        "allow_loopback": policy.allow_loopback,
    }
