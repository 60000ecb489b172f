"""Server-side sessions: the browser holds only a random identifier.

The cookie is HttpOnly (no script can read it), SameSite=Lax (other sites' forms do not carry
it) and Secure whenever the portal is reached over TLS. The access and refresh tokens stay in
this process's memory and never reach the browser. Every form carries the session's CSRF
token, compared in constant time. Signing in issues a new identifier (no session fixation).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

COOKIE = "panjereh_session"


@dataclass
class Challenge:
    """A sign-in in progress: the SMS code was sent for this challenge."""

    challenge_id: str
    national_code: str
    mobile: str
    expires_at: float


@dataclass
class Session:
    id: str
    csrf: str
    created_at: float
    seen_at: float
    access_token: str | None = None
    refresh_token: str | None = None
    access_expires_at: float = 0.0
    subject: str | None = None
    roles: tuple[str, ...] = ()
    challenge: Challenge | None = None
    #: one message shown on the next page (after a redirect)
    flash: str | None = None
    #: request forms already sent, by their form key (a second click replays, never doubles)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return self.access_token is not None

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented or "")

    def has_role_prefix(self, prefix: str) -> bool:
        return any(role == prefix or role.startswith(prefix + ":") for role in self.roles)

    def agencies(self, role: str) -> list[str]:
        return [r.split(":", 1)[1] for r in self.roles if r.startswith(role + ":")]

    def sign_in(self, tokens: dict[str, Any], now: float) -> None:
        self.access_token = str(tokens["access_token"])
        self.refresh_token = tokens.get("refresh_token")
        self.access_expires_at = now + float(tokens.get("expires_in", 300))
        claims = _claims(self.access_token)
        subject = claims.get("sub")
        self.subject = str(subject) if subject else None
        roles = claims.get("roles", [])
        self.roles = tuple(str(r) for r in roles) if isinstance(roles, list) else ()
        self.challenge = None


def _claims(token: str) -> dict[str, Any]:
    """The access token's claims, for the page only (which menus to show): the API verifies
    the token on every call, so nothing here is trusted for access."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


class SessionStore:
    """Sessions in memory, least recently used first out, expiring when idle or too old."""

    def __init__(self, *, idle_seconds: int, max_seconds: int, capacity: int) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen_at > self.idle_seconds or now - session.created_at > self.max_seconds:
            self._sessions.pop(session_id, None)
            return None
        session.seen_at = now
        self._sessions.move_to_end(session_id)
        return session

    def create(self) -> Session:
        now = time.monotonic()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            seen_at=now,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        return session

    def renew(self, session: Session) -> Session:
        """The same session under a new identifier and CSRF token (at sign-in)."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        session.created_at = session.seen_at = time.monotonic()
        self._sessions[session.id] = session
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
