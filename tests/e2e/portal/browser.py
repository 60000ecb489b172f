"""Helpers of the portal's browser tests: finding Chromium, axe-core, screenshots, sign-in.

Screenshots of every page type (desktop and 360 px wide) go to ``var/screenshots/portal``
(``PANJEREH_TEST_SCREENSHOTS`` to change it).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, Playwright

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = Path(os.environ.get("PANJEREH_TEST_SCREENSHOTS", ROOT / "var/screenshots/portal"))
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
#: Chromium on a closed network, as root, with no window
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}
SERIOUS = {"serious", "critical"}


def find_chromium(playwright: Playwright) -> str | None:
    """A Chromium to drive: the setting, Playwright's own, or Debian's; ``None`` if none."""
    setting = os.environ.get("PANJEREH_TEST_CHROMIUM")
    if setting:
        return setting if Path(setting).exists() else None
    own = Path(playwright.chromium.executable_path)
    if own.exists():
        return str(own)
    return str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else None


_axe = Axe()


def accessible(page: Page) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    results = _axe.run(page)
    found = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
    assert not found, "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(node["target"][0] if node["target"] else "?" for node in v["nodes"][:3])
        for v in found
    )


def shoot(page: Page, name: str) -> None:
    """The page at desktop width and at 360 px (the phone most citizens use), full height."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or DESKTOP
    page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-360.png"), full_page=True)
    page.set_viewport_size(size)


def checked(page: Page, name: str) -> None:
    """Every page type gets both: the accessibility check and its screenshots."""
    accessible(page)
    shoot(page, name)


def sms_code(site: str, mobile: str, *, after: int = 0) -> str:
    """The newest code the dev SMS outbox holds for ``mobile`` (once more than ``after`` are)."""
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=site, timeout=10.0) as client:
        while time.monotonic() < deadline:
            items: list[dict[str, Any]] = client.get(
                "/api/v1/dev/sms-outbox", params={"mobile": mobile}
            ).json()["items"]
            if len(items) > after:
                return str(items[0]["tokens"][0])
            time.sleep(0.1)
    raise AssertionError(f"no SMS code reached the dev outbox for {mobile}")


def sms_count(site: str, mobile: str) -> int:
    with httpx.Client(base_url=site, timeout=10.0) as client:
        return len(client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile}).json()["items"])


def sign_in(page: Page, site: str, national_code: str, mobile: str, next_path: str) -> None:
    before = sms_count(site, mobile)
    page.goto(f"/login?next={next_path}")
    page.fill("#national_code", national_code)
    page.fill("#mobile", mobile)
    page.click("form.panel button[type=submit]")
    page.wait_for_url("**/login/code**")
    page.fill("#code", sms_code(site, mobile, after=before))
    page.click("form.panel button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def fresh_national_code() -> str:
    """A random national code with a valid checksum: a living adult in the simulated civil
    registry, unused by other tests (so per-person OTP limits never meet)."""
    while True:
        body = [secrets.randbelow(10) for _ in range(9)]
        if body[:8] == [9, 9, 0, 0, 0, 0, 0, 0] or len(set(body)) == 1:
            continue  # the simulators' special codes; codes of one repeated digit
        rest = sum(digit * (10 - index) for index, digit in enumerate(body)) % 11
        check = rest if rest < 2 else 11 - rest
        return "".join(map(str, body)) + str(check)


def fresh_mobile() -> str:
    """A random well-formed mobile (never ending in 0000, which belongs to nobody)."""
    while True:
        mobile = "0913" + "".join(str(secrets.randbelow(10)) for _ in range(7))
        if not mobile.endswith("0000"):
            return mobile
