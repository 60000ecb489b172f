"""The platform's pytest plugin: real servers and platform-aware tokens for every test suite.

- ``postgres_server`` (session): the embedded PostgreSQL ``make run`` uses, started in a
  temporary directory on a free port, or the server ``PANJEREH_TEST_DATABASE_URL`` names
  (``postgresql://user:pw@host:5432``). The kernel's ``migrated_database`` builds on it.
- ``kafka_bootstrap_servers`` (session): the embedded Tansu broker, or
  ``PANJEREH_TEST_KAFKA_BOOTSTRAP_SERVERS``.
- ``token_factory``: access tokens with the platform's defaults: a citizen with a national
  code unless told otherwise (``token_factory(roles=["officer:tax"])``,
  ``token_factory(roles=["client:tax"], agency="tax", scopes=["inquiries"])``).

Loaded with the kernel's plugin by the root ``conftest.py``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from panjereh.common.testing.plugin import PostgresServer
from panjereh.common.testing.tokens import JwksServer, SigningKey, TokenFactory
from panjereh.contracts import access
from panjereh.devstack.embedded import EmbeddedKafka, EmbeddedPostgres, free_port

# Services refuse to start without PANJEREH_ENV; tests run them as dev unless a test says
# otherwise (each test that needs another mode passes ``environment=`` or sets the variable).
os.environ.setdefault("PANJEREH_ENV", "dev")

#: A national code with a valid checksum, used as the default person in tokens.
TEST_NATIONAL_CODE = "0013542419"


class PlatformTokenFactory(TokenFactory):
    """Tokens shaped as identity issues them."""

    def defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        roles = list(given.get("roles", [access.CITIZEN]))
        is_person = access.CITIZEN in roles or any(access.is_staff_role(r) for r in roles)
        agency = given.get(access.AGENCY_CLAIM)
        return {
            "sub": f"client-{secrets.token_hex(4)}" if agency else "person-1",
            "roles": roles,
            access.NATIONAL_CODE_CLAIM: TEST_NATIONAL_CODE if is_person else None,
        }


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    external = os.environ.get("PANJEREH_TEST_DATABASE_URL")
    if external:
        base = external.rstrip("/").replace("postgresql+asyncpg://", "postgresql://", 1)
        yield PostgresServer(
            f"{base}/postgres",
            lambda name: f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}",
        )
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    try:
        yield PostgresServer(server.url("postgres", driver="postgresql"), server.url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("PANJEREH_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    log_path: Path = tmp_path_factory.mktemp("kafka") / "broker.log"
    broker = EmbeddedKafka(free_port(), log_path=log_path)
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def token_factory(token_signing_key: SigningKey, jwks_server: JwksServer) -> TokenFactory:
    """Depends on ``jwks_server`` so that any test minting tokens has the keys served."""
    return PlatformTokenFactory(token_signing_key)
