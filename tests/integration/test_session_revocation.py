"""A session identity ended is refused by the other services within seconds.

Identity runs on a real loopback port (its JWKS and its list of ended sessions are fetched
over HTTP, as in production); the inquiry broker stands for "another service": a citizen's
``/api/v1/me/data-access``. After a logout, or a replayed refresh token, the same access
token, still unexpired, is refused with 401 ``token_revoked``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.common.testing.tokens import bearer
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.identity.main import create_app as create_identity_app
from panjereh.identity.testing import (
    InquiryBrokerDouble,
    login,
    mobile_for,
    national_code_for,
    settings_for_tests,
)
from panjereh.inquiry_broker.config import Settings as BrokerSettings
from panjereh.inquiry_broker.main import create_app as create_broker_app

pytestmark = pytest.mark.integration

#: how often every service polls identity's list of ended sessions here
POLL_SECONDS = 0.5
#: what "within seconds" means in this test: a poll, a little slack
WITHIN_SECONDS = 3 * POLL_SECONDS + 1.0
DATA_ACCESS = "/api/v1/me/data-access"


@dataclass
class Platform:
    identity: httpx.AsyncClient
    broker: httpx.AsyncClient


@pytest.fixture
async def platform(
    migrated_database: MigratedDatabase, kafka_bootstrap_servers: str
) -> AsyncIterator[Platform]:
    identity_url = await migrated_database("panjereh.identity")
    broker_url = await migrated_database("panjereh.inquiry_broker")
    await create_topics(kafka_bootstrap_servers, PLATFORM_TOPICS)
    double = InquiryBrokerDouble()
    async with loopback_server(double.app()) as double_url:
        double.url = double_url
        identity = create_identity_app(
            settings_for_tests(identity_url, double_url, revocation_poll_seconds=POLL_SECONDS)
        )
        async with running_app(identity) as identity_client, loopback_server(identity) as url:
            broker = create_broker_app(
                BrokerSettings(
                    database_url=broker_url,
                    kafka_bootstrap_servers=kafka_bootstrap_servers,
                    kafka_idempotence=False,
                    jwks_url=f"{url}/.well-known/jwks.json",
                    revocation_poll_seconds=POLL_SECONDS,
                    run_consumers=False,
                )
            )
            async with running_app(broker) as broker_client:
                yield Platform(identity=identity_client, broker=broker_client)


async def refused_after(client: httpx.AsyncClient, token: str) -> tuple[float, httpx.Response]:
    """How long until ``client`` refuses ``token`` (at most :data:`WITHIN_SECONDS` + 2)."""
    start = time.monotonic()
    async with asyncio.timeout(WITHIN_SECONDS + 2):
        while True:
            response = await client.get(DATA_ACCESS, headers=bearer(token))
            if response.status_code != 200:
                return time.monotonic() - start, response
            await asyncio.sleep(0.05)


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_revoked"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


class TestEndedSessions:
    async def test_a_logged_out_token_is_refused_by_another_service_within_seconds(
        self, platform: Platform
    ) -> None:
        tokens: dict[str, Any] = await login(
            platform.identity, national_code_for(880_001), mobile_for(880_001)
        )
        other: dict[str, Any] = await login(
            platform.identity, national_code_for(880_001), mobile_for(880_002)
        )
        access = tokens["access_token"]
        assert (await platform.broker.get(DATA_ACCESS, headers=bearer(access))).status_code == 200

        out = await platform.identity.post("/api/v1/auth/logout", headers=bearer(access))
        assert out.status_code == 204
        # identity itself knows at once
        assert_revoked(await platform.identity.get("/api/v1/me", headers=bearer(access)))
        elapsed, refused = await refused_after(platform.broker, access)
        kept = await platform.broker.get(DATA_ACCESS, headers=bearer(other["access_token"]))

        assert_revoked(refused)
        assert elapsed < WITHIN_SECONDS, elapsed
        assert kept.status_code == 200  # the same person's other session goes on

    async def test_a_replayed_refresh_token_ends_the_session_everywhere(
        self, platform: Platform
    ) -> None:
        first = await login(platform.identity, national_code_for(880_003), mobile_for(880_003))

        async def refresh(token: str) -> httpx.Response:
            return await platform.identity.post(
                "/api/v1/auth/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
            )

        second = (await refresh(first["refresh_token"])).json()
        access = second["access_token"]
        assert (await platform.broker.get(DATA_ACCESS, headers=bearer(access))).status_code == 200
        replay = await refresh(first["refresh_token"])  # a thief's copy comes back
        assert replay.json()["error"] == "invalid_grant"
        elapsed, refused = await refused_after(platform.broker, access)
        assert_revoked(refused)
        assert elapsed < WITHIN_SECONDS, elapsed
