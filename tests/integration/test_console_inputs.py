"""Bad input to the console gets its 4xx page, never a 5xx: unknown ids, bad filters,
invalid forms, state conflicts, malformed bodies (plain HTTP, no browser needed)."""

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.console import PASSWORD, invite
from tests.support.runs import Account, apply_workflow, create_account, create_run, wait_for


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found[1]


@pytest.fixture(scope="module")
async def signed_in(stack: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A signed-in HTTP session (its cookie jar keeps 127.0.0.1's cookies) and its CSRF."""
    person = invite(stack)
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(person.invite_url) as response:
        token = _csrf(await response.text())
    form = {"csrf_token": token, "password": PASSWORD, "password_again": PASSWORD}
    async with http.post(person.invite_url, data=form) as response:
        assert response.status == 200
    form = {"csrf_token": token, "email": person.email, "password": PASSWORD}
    async with http.post(f"{stack.base_url}/app/login", data=form) as response:
        assert response.url.path == "/app/runs"
        csrf = _csrf(await response.text())
    yield http, csrf
    await http.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/app/workflows/wf_nope", 404),
        ("/app/workflows/wf_nope/edit", 404),
        ("/app/workflows/wf_nope/runs/run_nope", 404),
        ("/app/runs?status=bogus", 400),
        ("/app/no-such-page", 404),
    ],
)
async def test_bad_pages(stack: Any, signed_in: Any, path: str, status: int) -> None:
    http, _ = signed_in
    async with http.get(f"{stack.base_url}{path}", allow_redirects=False) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "text/html"
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_bad_forms(stack: Any, signed_in: Any, http: aiohttp.ClientSession) -> None:
    session, csrf = signed_in
    base = stack.base_url
    other = create_account(stack)
    workflow_id = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    others_run = await create_run(http, stack, other, workflow_id)
    cases: list[tuple[str, dict[str, str], int]] = [
        ("/app/settings/keys", {"name": "", "scopes": "workflows:read"}, 400),
        ("/app/settings/keys", {"name": "no scopes"}, 400),
        ("/app/settings/keys", {"name": "k", "expires_in_days": "soon"}, 400),
        ("/app/settings/keys", {"name": "k", "version_pins": "wf_a=zero"}, 400),
        ("/app/settings/keys", {"name": "k", "workflow_allowlist": "not-an-id"}, 400),
        ("/app/settings/keys/key_not_mine/revoke", {}, 404),
        ("/app/workflows/new", {"definition": "{{{ not yaml"}, 400),
        ("/app/workflows/new", {"definition": "slug: x"}, 400),
        ("/app/workflows/wf_nope/publish", {}, 404),
        (f"/app/workflows/{workflow_id}/runs/{others_run['id']}/cancel", {}, 404),
        (f"/app/workflows/{workflow_id}/run", {"input_text": "x"}, 400),  # not multipart
    ]
    for path, fields, status in cases:
        got, _ = await _post(session, f"{base}{path}", csrf, **fields)
        assert got[0] == status, (path, fields, got)


async def test_state_conflicts(stack: Any, signed_in: Any, http: aiohttp.ClientSession) -> None:
    """Cancel or answer a finished run of one's own: 409 pages."""
    session, csrf = signed_in
    me = await _me(stack, session, csrf)
    workflow_id = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    run = await create_run(http, stack, me, workflow_id)
    await wait_for(http, stack, me, run["id"])
    for action in ("cancel", "input"):
        got, _ = await _post(
            session, f"{stack.base_url}/app/workflows/{workflow_id}/runs/{run['id']}/{action}", csrf
        )
        assert got[0] == 409, (action, got)


async def test_sign_in_and_invite_garbage(stack: Any) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{stack.base_url}/app/login") as response:
            token = _csrf(await response.text())
        form = {"csrf_token": token, "email": "x" * 5000, "password": "y" * 5000}
        async with http.post(f"{stack.base_url}/app/login", data=form) as response:
            assert response.status == 401
        form = {"csrf_token": token, "password": PASSWORD, "password_again": PASSWORD}
        async with http.post(f"{stack.base_url}/app/invite/garbage", data=form) as response:
            assert response.status == 400
        form["password_again"] = "different password"
        async with http.post(f"{stack.base_url}/app/invite/winv_x", data=form) as response:
            assert response.status == 400
            assert "differ" in await response.text()


async def _post(
    session: aiohttp.ClientSession, url: str, csrf: str, **fields: str
) -> tuple[tuple[int, str], int]:
    async with session.post(url, data={"csrf_token": csrf, **fields}) as response:
        text = await response.text()
        return (response.status, text[:300]), response.status


async def _me(stack: Any, session: aiohttp.ClientSession, csrf: str) -> Account:
    """An API key of the signed-in person, made on the keys page."""
    async with session.post(
        f"{stack.base_url}/app/settings/keys",
        data={"csrf_token": csrf, "name": "api", "scopes": "workflow_runs:create"},
    ) as response:
        html = await response.text()
    secret = re.search(r'id="new-secret">(wft_live_[^<]+)<', html)
    assert secret is not None
    async with session.get(
        f"{stack.base_url}/api/v1/me", headers={"Authorization": f"Bearer {secret[1]}"}
    ) as response:
        user_id = (await response.json())["data"]["user_id"]
    return Account(user_id, secret[1])


async def test_a_public_endpoints_publish_panel_shows_keyless_code(
    stack: Any, signed_in: Any
) -> None:
    http, csrf = signed_in
    slug = f"console-public-{uuid.uuid4().hex[:8]}"
    definition = (
        f"slug: {slug}\nname: Public\nendpoint: {{auth: public}}\n"
        "stages:\n  - {id: t, type: template, template: '{{ input_text }}'}\n"
    )
    form = {"csrf_token": csrf, "definition": definition}
    async with http.post(f"{stack.base_url}/app/workflows/new", data=form) as response:
        assert response.status == 200, await response.text()
        page_url = str(response.url)
    async with http.post(f"{page_url}/publish", data={"csrf_token": csrf}) as response:
        assert response.status == 200
    async with http.get(page_url) as response:
        page = await response.text()
    assert "Authentication: <strong>public</strong>" in page
    # Get Code is the keyless form: the endpoint, no key.
    assert f"/api/v1/endpoints/{slug}" in page and "WEFT_API_KEY" not in page
