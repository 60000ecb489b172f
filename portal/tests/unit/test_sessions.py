"""Server-side sessions: random identifiers, CSRF, renewal at sign-in, expiry."""

from __future__ import annotations

import base64
import json

from panjereh.portal.sessions import SessionStore


def _token(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"


def test_sign_in_renews_the_identifier_and_the_csrf_token() -> None:
    store = SessionStore(idle_seconds=60, max_seconds=3600, capacity=10)
    session = store.create()
    first_id, first_csrf = session.id, session.csrf
    assert session.csrf_ok(first_csrf)
    assert not session.csrf_ok("forged")
    assert not session.csrf_ok(None)
    store.renew(session)
    assert session.id != first_id
    assert session.csrf != first_csrf
    assert store.get(first_id) is None
    assert store.get(session.id) is session
    session.sign_in(
        {
            "access_token": _token({"sub": "c-1", "roles": ["citizen", "officer:tax"]}),
            "refresh_token": "r",
            "expires_in": 600,
        },
        now=0.0,
    )
    assert session.signed_in
    assert session.has_role_prefix("officer")
    assert session.agencies("officer") == ["tax"]


def test_idle_sessions_expire_and_the_oldest_leave_first() -> None:
    store = SessionStore(idle_seconds=60, max_seconds=3600, capacity=2)
    idle = store.create()
    idle.seen_at -= 61
    assert store.get(idle.id) is None
    first, second, third = store.create(), store.create(), store.create()
    assert store.get(first.id) is None
    assert store.get(second.id) is second
    assert store.get(third.id) is third
    assert len(store) == 2
