"""Access tokens for tests: a test ES256 signing key, its JWKS served over real loopback HTTP,
and a factory minting tokens with any claims (including deliberately broken ones).

Fixtures (registered by ``panjereh.common.testing.plugin``):

- ``token_signing_key`` (session): the :class:`SigningKey` tokens are signed with;
- ``jwks_server`` (session): the running :class:`JwksServer`; ``jwks_url``: its URL, to pass as
  ``Settings(jwks_url=jwks_url)``;
- the ``token_factory`` fixture is the platform's (it knows the roles): see
  ``panjereh.devstack.pytest_plugin``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jose import jwt

from panjereh.common.jwk import generate_private_key, private_pem, public_jwk, public_pem

TEST_ISSUER = "panjereh-identity"
TEST_AUDIENCE = "panjereh"

_UNSET: Any = object()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_segment(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


class SigningKey:
    """An ES256 key pair with a chosen ``kid``; ``public_jwk`` is what the JWKS publishes."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        private = generate_private_key()
        self.private_pem = private_pem(private)
        self.public_pem = public_pem(private.public_key())
        self.public_jwk: dict[str, Any] = {**public_jwk(private), "kid": kid}

    def sign(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        token: str = jwt.encode(
            dict(claims),
            self.private_pem,
            algorithm="ES256",
            headers={"kid": self.kid, **(headers or {})},
        )
        return token


class JwksServer:
    """Serves a JWK Set at ``/.well-known/jwks.json`` on a free loopback port, in a thread,
    and identity's list of ended sessions beside it (``/.well-known/revoked-sessions``).

    ``keys`` can be changed while it runs (key rotation); ``requests`` counts the JWKS
    fetches. ``revoked`` maps a session id (``sid``) to when its tokens would expire.
    """

    PATH = "/.well-known/jwks.json"
    REVOKED_PATH = "/.well-known/revoked-sessions"

    def __init__(self, keys: Sequence[Mapping[str, Any]] = ()) -> None:
        self.keys: list[Mapping[str, Any]] = list(keys)
        self.revoked: dict[str, float] = {}
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    if path == server.REVOKED_PATH:
                        sessions = [
                            {"sid": sid, "until": until} for sid, until in server.revoked.items()
                        ]
                        body = json.dumps({"sessions": sessions, "next": "0"}).encode()
                    else:
                        server.requests += path == server.PATH
                        body = json.dumps({"keys": server.keys}).encode()
                if path not in (server.PATH, server.REVOKED_PATH):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is not an access log."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.PATH}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class TokenFactory:
    """Mints access tokens signed by ``key``; every claim can be overridden or left out.

    Domain-free: the platform's defaults (a citizen with a national code, ...) come from a
    subclass overriding :meth:`defaults` (the platform's pytest plugin registers one).
    """

    def __init__(
        self, key: SigningKey, *, issuer: str = TEST_ISSUER, audience: str = TEST_AUDIENCE
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Claims to use where the caller gave none (``given`` holds what it did give)."""
        return {"sub": "subject-1", "roles": []}

    def claims(
        self,
        *,
        scopes: Sequence[str] = (),
        iss: str | None = _UNSET,
        aud: str | None = _UNSET,
        exp: datetime | timedelta | int | None = timedelta(minutes=15),
        nbf: datetime | timedelta | int | None = timedelta(0),
        extra: Mapping[str, Any] | None = None,
        **named: Any,
    ) -> dict[str, Any]:
        """The claim set; ``None`` leaves a claim out, a ``timedelta`` is relative to now.

        ``named`` are claims by name (``sub``, ``roles``, or any other); those not given take
        :meth:`defaults`.
        """
        now = int(time.time())
        given = {name: value for name, value in named.items() if value is not _UNSET}
        values: dict[str, Any] = {
            **self.defaults(given),
            **given,
            "iss": self.issuer if iss is _UNSET else iss,
            "aud": self.audience if aud is _UNSET else aud,
            "scope": " ".join(scopes) or None,
            "iat": now,
            "exp": _instant(exp, now),
            "nbf": _instant(nbf, now),
            "jti": secrets.token_hex(16),
            **(extra or {}),
        }
        if "roles" in values and values["roles"] is not None:
            values["roles"] = list(values["roles"])
        return {name: value for name, value in values.items() if value is not None}

    def __call__(
        self,
        *,
        kid: str | None = _UNSET,
        headers: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A valid ES256 token unless overrides break it; ``kid=None`` leaves the header out."""
        payload = self.claims(**claims)
        header: dict[str, Any] = {"alg": "ES256", "typ": "JWT", **(headers or {})}
        if kid is _UNSET:
            return self.key.sign(payload, headers=header)
        signed = self.key.sign(payload, headers={**header, "kid": kid or ""})
        if kid is None:
            # re-encode without a kid: jose always writes the header we give it
            head, body, signature = signed.split(".")
            decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
            decoded.pop("kid", None)
            return ".".join((_json_segment(decoded), body, signature))
        return signed

    def unsigned(self, **claims: Any) -> str:
        """``alg: none`` with an empty signature: must always be refused."""
        header = {"alg": "none", "typ": "JWT", "kid": self.key.kid}
        return f"{_json_segment(header)}.{_json_segment(self.claims(**claims))}."

    def hs256_with_public_key(self, **claims: Any) -> str:
        """HS256 keyed with the *public* key: the classic algorithm-confusion forgery."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.key.kid}
        signing_input = f"{_json_segment(header)}.{_json_segment(self.claims(**claims))}"
        mac = hmac.new(self.key.public_pem.encode(), signing_input.encode(), hashlib.sha256)
        return f"{signing_input}.{_b64url(mac.digest())}"

    def signed_by(self, key: SigningKey, **claims: Any) -> str:
        """A well-formed token signed by another key (e.g. one not in the JWKS)."""
        return key.sign(self.claims(**claims), headers={"typ": "JWT"})


def _instant(value: datetime | timedelta | int | None, now: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return now + int(value.total_seconds())
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def bearer(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``."""
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def token_signing_key() -> SigningKey:
    return SigningKey(kid="test-key-1")


@pytest.fixture(scope="session")
def jwks_server(token_signing_key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([token_signing_key.public_jwk])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def jwks_url(jwks_server: JwksServer) -> str:
    return jwks_server.url
