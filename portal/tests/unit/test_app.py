"""The portal's own behaviour, in-process: headers, CSRF, error pages, the language switch.

The gateway address points at a port nothing listens on, so a page that needs the API shows
the real "unreachable" answer.
"""

from __future__ import annotations

import socket

from panjereh.common.testing.plugin import running_app
from panjereh.portal.config import Settings
from panjereh.portal.main import create_app


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings() -> Settings:
    return Settings(
        environment="test",  # type: ignore[arg-type]
        gateway_url=f"http://127.0.0.1:{_closed_port()}",
        api_timeout_seconds=2.0,
    )


async def test_pages_carry_a_strict_policy_and_no_inline_script() -> None:
    async with running_app(create_app(_settings())) as client:
        page = await client.get("/login")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert 'lang="fa" dir="rtl"' in page.text
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP here


async def test_the_session_cookie_is_secure_behind_tls() -> None:
    async with running_app(create_app(_settings())) as client:
        page = await client.get("/login", headers={"x-forwarded-proto": "https"})
    assert "secure" in page.headers["set-cookie"].lower()


async def test_a_form_without_the_sessions_csrf_token_is_refused() -> None:
    async with running_app(create_app(_settings())) as client:
        await client.get("/login")  # a session, with its CSRF token
        refused = await client.post(
            "/login",
            content="national_code=0499370899&mobile=09121234567&csrf=forged",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert refused.status_code == 400
    assert "فرم پذیرفته نشد" in refused.text


async def test_unknown_pages_and_an_unreachable_api_are_persian_pages() -> None:
    async with running_app(create_app(_settings())) as client:
        missing = await client.get("/no/such/page")
        down = await client.get("/kpi")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "این صفحه پیدا نشد" in missing.text
    assert down.status_code == 503
    assert "سامانه در دسترس نیست" in down.text
    assert "Traceback" not in down.text


async def test_pages_for_citizens_send_visitors_to_sign_in_and_back() -> None:
    async with running_app(create_app(_settings())) as client:
        answer = await client.get("/requests")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Frequests"


async def test_the_language_switch_stays_on_this_site() -> None:
    async with running_app(create_app(_settings())) as client:
        switched = await client.get("/lang/en", params={"next": "//evil.example/"})
        page = await client.get("/login")  # the client keeps the cookie it was given
    assert switched.headers["location"] == "/"
    assert "lang=en" in switched.headers["set-cookie"]
    assert 'lang="en" dir="ltr"' in page.text
