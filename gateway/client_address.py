"""The client's address, as the gateway's per-address limits see it (public endpoints'
keyless calls, the console's sign-in attempts): the peer, or behind trusted proxies the
address the outermost of them saw (WEFT_TRUSTED_PROXY_HOPS)."""

import ipaddress

from aiohttp import web

from gateway.keys import CONFIG
from weftcore.errors import InvalidArgument


def client_ip(request: web.Request) -> str:
    """The client's address: the peer's, or with WEFT_TRUSTED_PROXY_HOPS = n the entry
    the n-th proxy appended to X-Forwarded-For (entries a client made up sit left of it)."""
    hops = request.config_dict[CONFIG].trusted_proxy_hops  # console pages: a sub-app
    address = request.remote or ""
    if hops > 0:
        chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        chain = [a for a in chain if a]
        if len(chain) >= hops:
            address = chain[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise InvalidArgument(
            "The client address is not an IP address.", param="X-Forwarded-For"
        ) from None
