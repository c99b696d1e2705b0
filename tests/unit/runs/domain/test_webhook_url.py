"""The webhook URL rule (services/runs/domain/webhook_url.py), one table for creation and
delivery: what is refused, with which reason, under which configuration."""

import asyncio
import ipaddress

import pytest

from services.runs.domain.create import check_webhook
from services.runs.domain.ssrf import IPAddress, ResolutionFailed, SSRFPolicy, SSRFRefused
from services.runs.domain.webhook_url import check_webhook_url
from weftcore.errors import InvalidArgument

STRICT = SSRFPolicy()
DEV = SSRFPolicy(allow_loopback=True)
NAMES = {
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
    "inside.example.com": ["93.184.216.34", "10.0.0.7"],  # one internal address is enough
    "metadata.example.com": ["169.254.169.254"],
    "me.example.com": ["127.0.0.1"],
}


async def fake_resolve(host: str, port: int) -> list[IPAddress]:
    if host == "slow.example.com":
        await asyncio.sleep(10)
    if host not in NAMES:
        raise ResolutionFailed(f"cannot resolve host {host!r}")
    return [ipaddress.ip_address(a) for a in NAMES[host]]


REFUSED = [
    # (url, policy, words the reason must contain)
    ("https://169.254.169.254/latest/meta-data/", STRICT, "link-local"),
    ("https://169.254.169.254/latest/meta-data/", DEV, "link-local"),
    ("https://0.0.0.0:8443/", DEV, "unspecified"),
    ("https://[::]/", DEV, "unspecified"),
    ("https://10.11.12.13/hook", DEV, "private"),
    ("https://172.16.0.1/", STRICT, "private"),
    ("https://192.168.1.10/", STRICT, "private"),
    ("https://[fc00::1]/", STRICT, "private"),
    ("https://[fe80::1]/", STRICT, "link-local"),
    ("https://[::ffff:10.0.0.1]/", DEV, "private"),
    ("https://[::ffff:169.254.169.254]/", DEV, "link-local"),
    ("https://127.0.0.1/", STRICT, "loopback"),
    ("https://[::1]/", STRICT, "loopback"),
    ("https://[::ffff:127.0.0.1]/", STRICT, "loopback"),
    ("http://localhost:9000/hook", STRICT, "loopback"),
    ("https://user:pass@127.0.0.1/", DEV, "credentials"),
    ("https://user@hooks.example.com/", STRICT, "credentials"),
    ("https://:pass@hooks.example.com/", STRICT, "credentials"),
    ("http://hooks.example.com/hook", STRICT, "https"),
    ("http://10.0.0.1/hook", DEV, "https"),
    ("ftp://hooks.example.com/", STRICT, "https"),
    ("https://", STRICT, "no host"),
    ("not a url", STRICT, "https"),
    ("https://hooks.example.com:99999/", STRICT, "not valid"),
    ("https://inside.example.com/", STRICT, "private"),
    ("https://metadata.example.com/", DEV, "link-local"),
    ("https://me.example.com/", STRICT, "loopback"),
    ("https://hooks.example.com/" + "x" * 2048, STRICT, "2048"),
]


@pytest.mark.parametrize(("url", "policy", "reason"), REFUSED)
async def test_refused(url: str, policy: SSRFPolicy, reason: str) -> None:
    with pytest.raises(SSRFRefused) as info:
        await check_webhook_url(url, policy, resolver=fake_resolve, resolve_timeout=1)
    assert reason in info.value.message
    assert "http stage" not in info.value.message


ACCEPTED = [
    ("https://hooks.example.com/x?y=1", STRICT),
    ("https://93.184.216.34/", STRICT),
    ("https://127.0.0.1:8443/", DEV),
    ("http://127.0.0.1:9000/h", DEV),
    ("http://localhost:9000/hook", DEV),
    ("http://[::1]:9000/hook", DEV),
    ("https://me.example.com/", DEV),
    ("https://10.0.0.7/", SSRFPolicy(allowlist=("10.0.0.0/8",))),
    ("https://inside.example.com/", SSRFPolicy(allowlist=("inside.example.com",))),
    ("https://192.168.1.10/", SSRFPolicy(allow_private=True)),
    # Not resolvable within the creation bound: delivery checks it again.
    ("https://slow.example.com/", STRICT),
    ("https://nxdomain.example.com/", STRICT),
]


@pytest.mark.parametrize(("url", "policy"), ACCEPTED)
async def test_accepted_at_creation(url: str, policy: SSRFPolicy) -> None:
    await check_webhook_url(url, policy, resolver=fake_resolve, resolve_timeout=0.05)


async def test_at_delivery_a_host_that_does_not_resolve_is_worth_retrying() -> None:
    with pytest.raises(ResolutionFailed):
        await check_webhook_url("https://nxdomain.example.com/", STRICT, resolver=fake_resolve)


async def test_creation_refuses_with_400_naming_webhook_url() -> None:
    assert await check_webhook("", STRICT) is None
    assert await check_webhook("https://93.184.216.34/h", STRICT) == "https://93.184.216.34/h"
    with pytest.raises(InvalidArgument) as info:
        await check_webhook("https://user:pass@127.0.0.1/", DEV)
    assert info.value.code == "INVALID_PARAM" and info.value.param == "webhook_url"
    assert info.value.message.startswith("webhook_url refused: ")
