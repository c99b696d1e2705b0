"""Console tests in a real browser: Debian's chromium driven by Playwright (its own
browser download is never used), people invited with `weft-admin users invite`."""

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import admin_json

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PASSWORD = "correct horse battery staple"


def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when missing (CI runs as root)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is missing (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(step, env=env, capture_output=True, timeout=900, check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium could not be installed")
    return CHROMIUM


@dataclass(frozen=True)
class Invited:
    user_id: str
    email: str
    invite_url: str


def invite(stack: Any, plan: str = "pro", hours: str = "1", email: str | None = None) -> Invited:
    email = email or f"person-{uuid.uuid4().hex[:10]}@example.com"
    data = admin_json(
        stack, "users", "invite", "--email", email, "--plan", plan, "--expires-in-hours", hours
    )
    return Invited(data["user_id"], data["email"], data["invite_url"])


async def shot(page: Any, name: str) -> None:
    """A screenshot for docs/console.md (every page the tests visit)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def accept_and_sign_in(page: Any, stack: Any, person: Invited) -> None:
    await page.goto(person.invite_url)
    await page.get_by_label("New password").fill(PASSWORD)
    await page.get_by_label("The same again").fill(PASSWORD)
    await page.get_by_role("button", name="Set password").click()
    await page.wait_for_url("**/app/login?invited=1")
    await sign_in(page, stack, person.email)


async def sign_in(page: Any, stack: Any, email: str, password: str = PASSWORD) -> None:
    if "/app/login" not in page.url:
        await page.goto(f"{stack.base_url}/app/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
