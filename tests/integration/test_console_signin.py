"""The console's sign-in in a real browser: invite -> password -> sign in/out, and the
refusals: wrong password, expired invite, failed CSRF, too many attempts; the headers."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect

from devstack.demo import DEMO_EMAIL, demo_invite, ensure_demo
from tests.support.console import (
    PASSWORD,
    Invited,
    accept_and_sign_in,
    chromium_path,
    invite,
    shot,
    sign_in,
)


def client(cookies: dict[str, str] | None = None) -> aiohttp.ClientSession:
    """A plain HTTP client whose cookie jar keeps cookies of 127.0.0.1 (unsafe=True)."""
    return aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        await launched.close()


async def test_invite_sign_in_and_out(stack: Any, browser: Browser) -> None:
    person = invite(stack)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(person.invite_url)
    await shot(page, "invite")
    await accept_and_sign_in(page, stack, person)
    await page.wait_for_url("**/app/runs")
    await shot(page, "runs-empty")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["weft_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert session["value"].startswith("wses_")

    async with client({"weft_session": session["value"]}) as http:
        async with http.get(f"{stack.base_url}/app/runs", allow_redirects=False) as response:
            assert response.status == 200  # the cookie alone opens the page...
    # ...until signing out ends the session server-side.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/app/login")
    async with client({"weft_session": session["value"]}) as http:
        async with http.get(f"{stack.base_url}/app/runs", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"].startswith("/app/login?next=")
    await context.close()


async def test_new_session_at_sign_in(stack: Any, browser: Browser) -> None:
    """No fixation: a cookie planted before sign-in is replaced by a fresh session."""
    person = invite(stack)
    context = await browser.new_context()
    await context.add_cookies(
        [{"name": "weft_session", "value": "wses_planted", "url": stack.base_url}]
    )
    page = await context.new_page()
    await accept_and_sign_in(page, stack, person)
    await page.wait_for_url("**/app/runs")
    value = {c["name"]: c["value"] for c in await context.cookies()}["weft_session"]
    assert value != "wses_planted" and len(value) > 40
    await context.close()


async def test_wrong_password(stack: Any, browser: Browser) -> None:
    person = invite(stack)
    page = await browser.new_page()
    await accept_and_sign_in(page, stack, person)
    await page.wait_for_url("**/app/runs")
    await page.context.clear_cookies()
    await page.goto(f"{stack.base_url}/app/login")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await sign_in(page, stack, person.email, "not the password!")
    assert (await answer.value).status == 401
    assert "Wrong email or password." in await page.get_by_role("alert").inner_text()
    await shot(page, "sign-in-wrong-password")
    await page.close()


async def test_expired_invite(stack: Any, browser: Browser) -> None:
    person = invite(stack, hours="0.0003")  # about one second
    await asyncio.sleep(1.5)
    page = await browser.new_page()
    await page.goto(person.invite_url)
    await page.get_by_label("New password").fill(PASSWORD)
    await page.get_by_label("The same again").fill(PASSWORD)
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Set password").click()
    assert (await answer.value).status == 400
    assert "invalid, used or expired" in await page.get_by_role("alert").inner_text()
    await page.close()


async def test_used_invite_cannot_be_used_again(stack: Any, browser: Browser) -> None:
    person = invite(stack)
    page = await browser.new_page()
    await accept_and_sign_in(page, stack, person)
    await page.goto(person.invite_url)
    await page.get_by_label("New password").fill("another password 123")
    await page.get_by_label("The same again").fill("another password 123")
    await page.get_by_role("button", name="Set password").click()
    assert "invalid, used or expired" in await page.get_by_role("alert").inner_text()
    await page.close()


async def test_failed_csrf_is_403(stack: Any, browser: Browser) -> None:
    person = invite(stack)
    context = await browser.new_context()
    page = await context.new_page()
    await accept_and_sign_in(page, stack, person)
    await page.wait_for_url("**/app/runs")
    # A forged form (another site's) carries the cookie but not the token.
    for field in await page.locator("input[name=csrf_token]").all():
        await field.evaluate("e => e.value = 'forged'")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Sign out").click()
    assert (await answer.value).status == 403
    await shot(page, "csrf-refused")
    # Still signed in: the forged sign-out did nothing.
    await page.goto(f"{stack.base_url}/app/runs")
    assert page.url.endswith("/app/runs")
    # The sign-in form's own token (double-submit cookie) is checked too.
    async with client() as http:
        async with http.get(f"{stack.base_url}/app/login") as response:
            assert "weft_form" in response.cookies
        async with http.post(
            f"{stack.base_url}/app/login",
            data={"email": person.email, "password": PASSWORD, "csrf_token": "x"},
        ) as response:
            assert response.status == 403
    await context.close()


async def test_security_headers(stack: Any) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/app/login", "/app/static/console.js", "/app/runs"):
            async with http.get(f"{stack.base_url}{path}", allow_redirects=False) as response:
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                assert "frame-ancestors 'none'" in csp
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_sign_in_attempts_are_limited_per_email(stack: Any) -> None:
    person = invite(stack)
    async with client() as http:
        async with http.get(f"{stack.base_url}/app/login") as response:
            token = response.cookies["weft_form"].value
        statuses = []
        for _ in range(6):
            async with http.post(
                f"{stack.base_url}/app/login",
                data={"email": person.email, "password": "wrong wrong", "csrf_token": token},
                allow_redirects=False,
            ) as response:
                statuses.append(response.status)
                retry_after = response.headers.get("Retry-After")
    assert statuses == [401] * 5 + [429]
    assert retry_after is not None and int(retry_after) > 0


async def test_the_dev_stacks_demo_invite(stack: Any, browser: Browser, tmp_path: Any) -> None:
    """`./scripts/up` prints this link for the demo user: it opens the console."""
    demo = await ensure_demo(
        stack.env["WEFT_AUTH_ADDR"], stack.env["WEFT_BILLING_ADDR"], tmp_path / "demo.json"
    )
    url = await demo_invite(stack.env["WEFT_AUTH_ADDR"], stack.base_url)
    assert url.startswith(f"{stack.base_url}/app/invite/winv_")
    page = await browser.new_page()
    await accept_and_sign_in(page, stack, Invited(demo.user_id, DEMO_EMAIL, url))
    await page.wait_for_url("**/app/runs")
    await expect(page.locator(".who")).to_have_text(DEMO_EMAIL)
    await page.close()


async def test_no_console_secret_reaches_a_log(stack: Any, browser: Browser) -> None:
    """Session and invite tokens, passwords and CSRF tokens appear in no log line."""
    person = invite(stack)
    context = await browser.new_context()
    page = await context.new_page()
    await accept_and_sign_in(page, stack, person)
    await page.wait_for_url("**/app/runs")
    session = {c["name"]: c["value"] for c in await context.cookies()}["weft_session"]
    await page.get_by_role("button", name="Sign out").click()
    await context.close()
    secrets = [session, person.invite_url.rsplit("/", 1)[1], PASSWORD, "wses_", "winv_"]
    for log in (stack.options.root / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{secret[:8]}... in {log.name}"
