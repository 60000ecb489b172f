"""The key that signs documents and decision receipts, and the JWKS that publishes it.

Production mounts the PEM (``signing_private_key``), the same on every replica. Dev and test
keep one generated key in the ``signing_key`` table (made once, under an advisory lock, by
whichever replica starts first), so documents stay verifiable across restarts of the stack.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from panjereh.common import jwk
from panjereh.common.db import Database
from panjereh.common.errors import ServiceUnavailable, Text
from panjereh.requests.config import Settings
from panjereh.requests.models import SigningKey

_KEY_LOCK_ID = 7_240_301


@dataclass(frozen=True)
class DocumentKeys:
    """Signs with the current key; verifies against every published one."""

    private_key: jwk.PrivateKey = field(repr=False)
    published: tuple[dict[str, str], ...]

    @functools.cached_property
    def kid(self) -> str:
        return jwk.public_jwk(self.private_key)["kid"]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self.published)}

    def sign(self, payload: dict[str, Any], *, typ: str) -> str:
        return jwk.sign_compact(self.private_key, {"typ": typ}, payload, kid=self.kid)

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(header, payload)``, or :class:`~panjereh.common.jwk.InvalidJws`."""
        return jwk.verify_compact(token, self.jwks())

    @classmethod
    def of(cls, private_key: jwk.PrivateKey) -> DocumentKeys:
        return cls(private_key=private_key, published=(jwk.public_jwk(private_key),))


async def load_keys(settings: Settings, database: Database) -> DocumentKeys:
    pem = settings.signing_private_key.get_secret_value()
    if pem:
        return DocumentKeys.of(jwk.load_private_key(pem))
    async with database.transaction() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _KEY_LOCK_ID})
        row = (
            await session.scalars(select(SigningKey).order_by(SigningKey.created_at).limit(1))
        ).first()
        if row is None:
            private_key = jwk.generate_private_key()
            public = jwk.public_jwk(private_key)
            session.add(
                SigningKey(
                    kid=public["kid"],
                    private_key_pem=jwk.private_pem(private_key),
                    public_jwk=public,
                )
            )
            return DocumentKeys.of(private_key)
        return DocumentKeys.of(jwk.load_private_key(row.private_key_pem))


class SigningKeysUnavailable(ServiceUnavailable):
    code = "signing_keys_unavailable"
    title = Text("کلید امضای اسناد در دسترس نیست", "The document signing key is not available")


class KeyRing:
    """The signing keys, loaded on first use and then kept.

    In dev and test they live in the database, which may be unreachable when the process
    starts: the service still starts (``/readyz`` says the database is down) and the keys are
    loaded once it is back, instead of the process failing to start.
    """

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._keys: DocumentKeys | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> DocumentKeys:
        if self._keys is not None:
            return self._keys
        async with self._lock:
            if self._keys is None:
                try:
                    self._keys = await load_keys(self._settings, self._database)
                except (OSError, SQLAlchemyError) as exc:
                    raise SigningKeysUnavailable from exc
            return self._keys
