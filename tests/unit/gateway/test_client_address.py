"""gateway/client_address.py: whose address a per-address limit counts."""

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.client_address import client_ip
from gateway.config import GatewayConfig
from gateway.keys import CONFIG
from weftcore.errors import InvalidArgument


def request(hops: int, forwarded: str | None, peer: str = "10.0.0.9") -> web.Request:
    app = web.Application()
    env = {"WEFT_DATABASE_URL": "postgresql://x/y", "WEFT_TRUSTED_PROXY_HOPS": str(hops)}
    app[CONFIG] = GatewayConfig.from_env(env)
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    transport: Any = type("T", (), {"get_extra_info": lambda self, name, d=None: (peer, 1)})()
    return make_mocked_request("POST", "/x", headers=headers, app=app, transport=transport)


def test_without_trusted_proxies_the_peer_counts_and_forwarded_for_is_ignored() -> None:
    assert client_ip(request(0, "1.2.3.4")) == "10.0.0.9"


def test_behind_proxies_the_entry_the_outermost_one_added_counts() -> None:
    # The client made up "6.6.6.6"; the one proxy appended what it saw.
    assert client_ip(request(1, "6.6.6.6, 203.0.113.7")) == "203.0.113.7"
    # Two proxies: the second-to-last entry is what the outer one saw.
    assert client_ip(request(2, "6.6.6.6, 203.0.113.7, 10.1.1.1")) == "203.0.113.7"
    # Fewer entries than proxies: not forwarded as promised, the peer counts.
    assert client_ip(request(2, "203.0.113.7")) == "10.0.0.9"


def test_a_forwarded_entry_that_is_no_address_is_a_400() -> None:
    with pytest.raises(InvalidArgument) as refused:
        client_ip(request(1, "not-an-ip"))
    assert refused.value.param == "X-Forwarded-For"
