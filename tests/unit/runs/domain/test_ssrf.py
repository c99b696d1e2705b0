"""The http-stage SSRF guard: which addresses are refused, and how to allow them."""

import ipaddress

import pytest

from services.runs.domain.ssrf import SSRFPolicy, SSRFRefused, check_url, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/admin",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://localhost:9000/",
        "http://0x7f000001/",
    ],
)
async def test_internal_urls_refused_by_default(url: str) -> None:
    with pytest.raises(SSRFRefused):
        await check_url(url, SSRFPolicy())


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///x"])
async def test_non_http_urls_refused(url: str) -> None:
    with pytest.raises(SSRFRefused):
        await check_url(url, SSRFPolicy(allow_private=True))


async def test_public_ip_literal_allowed() -> None:
    await check_url("https://93.184.216.34/path", SSRFPolicy())


async def test_allow_private_lets_everything_through() -> None:
    await check_url("http://127.0.0.1:1/", SSRFPolicy(allow_private=True))


async def test_allowlist_by_host_and_by_network() -> None:
    policy = SSRFPolicy.from_env({"WEFT_HTTP_STAGE_ALLOWLIST": "127.0.0.1, 10.0.0.0/8"})
    await check_url("http://127.0.0.1:8080/", policy)
    await check_url("http://10.9.8.7/", policy)
    with pytest.raises(SSRFRefused):
        await check_url("http://127.0.0.2/", policy)
    with pytest.raises(SSRFRefused):
        await check_url("http://192.168.0.1/", policy)


def test_policy_from_env_defaults_closed() -> None:
    policy = SSRFPolicy.from_env({})
    assert policy == SSRFPolicy(allow_private=False, allowlist=())
    assert SSRFPolicy.from_env({"WEFT_HTTP_STAGE_ALLOW_PRIVATE": "true"}).allow_private


async def test_allow_loopback_lets_only_loopback_through() -> None:
    policy = SSRFPolicy(allow_loopback=True)
    for url in ("http://127.0.0.1:1/", "http://127.8.9.10/", "http://[::1]/"):
        await check_url(url, policy)
    await check_url("http://[::ffff:127.0.0.1]/", policy)
    for url in ("http://0.0.0.0/", "http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(SSRFRefused):
            await check_url(url, policy)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://127.0.0.2/", "loopback"),
    ],
)
async def test_refusals_say_which_kind_of_address(url: str, kind: str) -> None:
    with pytest.raises(SSRFRefused) as info:
        await check_url(url, SSRFPolicy())
    assert f"is a {kind} address" in info.value.message
    assert "http stage" not in info.value.message
