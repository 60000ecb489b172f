"""ES256 signing keys: where they come from, the published JWKS, and rotation.

Two sources:

* **Production**: PEMs mounted from a secret (``signing_key_pem``, optionally
  ``next_signing_key_pem`` and ``previous_signing_key_pem``). Rotation is a change to the
  secret: the next key becomes current, the current one previous, and a fresh one
  (``python -m panjereh.identity.keys generate``) becomes next; then the deployment rolls.
* **Dev and test**: generated on first start and kept in the ``signing_key`` table, each
  private key as encrypted PKCS#8 (password derived from ``secret_key``), so a copy of the
  database alone cannot sign tokens. ``python -m panjereh.identity.keys rotate`` rotates them.

The JWKS always lists the current key, the next one (so verifiers' caches know it before it
signs anything) and keys retired less than one access-token lifetime ago (so tokens they
signed stay verifiable until they expire).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database
from panjereh.common.jwk import (
    PrivateKey,
    generate_private_key,
    load_private_key,
    private_pem,
    public_jwk,
)
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.models import SigningKey

#: how long after retirement a key stays in the JWKS, on top of the access-token lifetime
RETIRED_KEY_GRACE = timedelta(minutes=5)
#: serialises first-start generation and rotation across replicas
_KEYS_LOCK_ID = 7_240_001


@dataclass(frozen=True)
class SigningKeyPair:
    kid: str
    pem: str = field(repr=False)
    jwk: dict[str, str]
    #: the loaded key, signed with directly: parsing the PEM again for every token cost more
    #: than the signature itself
    key: PrivateKey = field(repr=False, compare=False)

    @classmethod
    def of(cls, private_key: PrivateKey) -> SigningKeyPair:
        """The pair for ``private_key``; ``kid`` is its RFC 7638 thumbprint."""
        jwk = public_jwk(private_key)
        return cls(kid=jwk["kid"], pem=private_pem(private_key), jwk=jwk, key=private_key)


@dataclass(frozen=True)
class KeySet:
    current: SigningKeyPair
    #: public JWKs to publish: current first, then next, then recently retired
    published: tuple[dict[str, str], ...]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self.published)}


class KeySource(Protocol):
    async def keyset(self) -> KeySet: ...


class SecretKeySource:
    """Keys mounted from a secret (production): fixed for the life of the process."""

    def __init__(self, settings: Settings) -> None:
        if settings.signing_key_pem is None:
            msg = "signing_key_pem is not set"
            raise ValueError(msg)
        current = SigningKeyPair.of(load_private_key(settings.signing_key_pem.get_secret_value()))
        others = [
            public_jwk(load_private_key(pem.get_secret_value()))
            for pem in (settings.next_signing_key_pem, settings.previous_signing_key_pem)
            if pem is not None
        ]
        self._keyset = KeySet(current=current, published=(current.jwk, *others))

    async def keyset(self) -> KeySet:
        return self._keyset


class DatabaseKeySource:
    """Keys in the ``signing_key`` table (dev/test), re-read every ``key_cache_seconds``."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._password = Keys.from_secret(
            settings.secret_key.get_secret_value()
        ).signing_key_password
        self._retired_visible = (
            timedelta(seconds=settings.access_token_ttl_seconds) + RETIRED_KEY_GRACE
        )
        self._cache_seconds = settings.key_cache_seconds
        self._cached: tuple[float, KeySet] | None = None
        self._lock = asyncio.Lock()

    async def keyset(self) -> KeySet:
        cached = self._cached
        if cached and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        async with self._lock:
            cached = self._cached
            if cached and time.monotonic() - cached[0] < self._cache_seconds:
                return cached[1]
            keyset = await self._load()
            if keyset is None:
                await self.ensure()
                keyset = await self._load()
            if keyset is None:
                msg = "no current signing key"
                raise RuntimeError(msg)
            self._cached = (time.monotonic(), keyset)
            return keyset

    def forget(self) -> None:
        self._cached = None

    async def ensure(self) -> None:
        """Create the current and next keys if there are none (first start)."""
        async with self._database.transaction() as session:
            await _lock_keys(session)
            statuses = set((await session.scalars(select(SigningKey.status))).all())
            now = datetime.now(UTC)
            if "current" not in statuses:
                session.add(self._new_row("current", now))
            if "next" not in statuses:
                session.add(self._new_row("next", now))

    async def rotate(self) -> str:
        """Next becomes current, current retires, a fresh next is made; the new current kid."""
        async with self._database.transaction() as session:
            await _lock_keys(session)
            now = datetime.now(UTC)
            rows = {
                row.status: row
                for row in await session.scalars(
                    select(SigningKey).where(SigningKey.status.in_(("current", "next")))
                )
            }
            if "current" in rows:
                await session.execute(
                    update(SigningKey)
                    .where(SigningKey.kid == rows["current"].kid)
                    .values(status="retired", retired_at=now)
                )
            promoted = rows.get("next") or self._new_row("next", now)
            if "next" not in rows:
                session.add(promoted)
            await session.flush()
            await session.execute(
                update(SigningKey)
                .where(SigningKey.kid == promoted.kid)
                .values(status="current", activated_at=now)
            )
            session.add(self._new_row("next", now))
        self.forget()
        return promoted.kid

    def _new_row(self, status: str, now: datetime) -> SigningKey:
        private_key = generate_private_key()
        jwk = public_jwk(private_key)
        return SigningKey(
            kid=jwk["kid"],
            status=status,
            private_key_pem=private_pem(private_key, self._password),
            public_jwk=jwk,
            activated_at=now if status == "current" else None,
        )

    async def _load(self) -> KeySet | None:
        async with self._database.transaction() as session:
            since = datetime.now(UTC) - self._retired_visible
            rows = list(
                await session.scalars(
                    select(SigningKey).where(
                        (SigningKey.status != "retired") | (SigningKey.retired_at > since)
                    )
                )
            )
        current_rows = [row for row in rows if row.status == "current"]
        if not current_rows:
            return None
        current_row = current_rows[0]
        current = SigningKeyPair.of(load_private_key(current_row.private_key_pem, self._password))
        order = {"current": 0, "next": 1, "retired": 2}
        published = tuple(row.public_jwk for row in sorted(rows, key=lambda row: order[row.status]))
        return KeySet(current=current, published=published)


async def _lock_keys(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _KEYS_LOCK_ID})


def key_source(settings: Settings, database: Database) -> SecretKeySource | DatabaseKeySource:
    if settings.signing_key_pem is not None:
        return SecretKeySource(settings)
    return DatabaseKeySource(database, settings)


# ------------------------------------------------------------------------ command line
async def rotate_database_keys(settings: Settings) -> str:
    database = Database(settings.database_url, pool_size=1)
    try:
        source = DatabaseKeySource(database, settings)
        await source.ensure()
        return await source.rotate()
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m panjereh.identity.keys", description="Identity signing keys."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "rotate", help="database-held keys: next becomes current, a new next is made"
    )
    commands.add_parser(
        "generate", help="print a new P-256 private key (PEM) for the production secret"
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        sys.stdout.write(private_pem(generate_private_key()))
        return 0
    settings = Settings()
    if settings.signing_key_pem is not None:
        sys.stderr.write(
            "signing keys come from a secret here: rotate by editing the secret "
            "(next -> current, current -> previous, `generate` -> next)\n"
        )
        return 2
    kid = asyncio.run(rotate_database_keys(settings))
    sys.stdout.write(f"current signing key is now {kid}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
