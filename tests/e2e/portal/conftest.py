"""The portal in a real browser: headless Chromium driven by Playwright, against the platform
started as ``make run`` starts it (the e2e ``platform`` fixture: one start for every e2e test).

The browser is found from the setting ``PANJEREH_TEST_CHROMIUM`` (a path), else Playwright's own
download, else Debian's ``/usr/bin/chromium``. Under ``CI=true`` a missing browser FAILS the
tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from panjereh.devstack.testing import RunningStack
from tests.e2e.portal.browser import CHROMIUM_FLAGS, DESKTOP, find_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, and every later asyncio test of the run would find it there.
    with sync_playwright() as playwright:
        executable = find_chromium(playwright)
        if executable is None:
            message = (
                "no Chromium for the portal's browser tests: install Debian's chromium "
                "(.ci/run does) or set PANJEREH_TEST_CHROMIUM"
            )
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def site(request: pytest.FixtureRequest) -> str:
    """The portal's address: the gateway's, which routes every page path to the portal.

    ``PANJEREH_TEST_PORTAL_SITE`` points the tests at a platform already running (``make run``:
    ``http://127.0.0.1:8000``) instead of the one the e2e tests start.
    """
    running = os.environ.get("PANJEREH_TEST_PORTAL_SITE")
    if running:
        return running.rstrip("/")
    platform: RunningStack = request.getfixturevalue("platform")
    return platform.gateway


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    context = browser.new_context(base_url=site, viewport=DESKTOP, locale="fa-IR")
    context.set_default_timeout(15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()
