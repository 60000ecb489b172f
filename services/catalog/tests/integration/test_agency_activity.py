"""The agencies' connection status is fed by the inquiry broker's ``inquiry.agency.active``,
consumed over a real Kafka-protocol broker into the catalog's KPI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from panjereh.catalog.config import Settings
from panjereh.catalog.main import create_app
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.testing.kafka import create_topics
from panjereh.common.testing.plugin import running_app
from panjereh.contracts.inquiry import AgencyActive
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.devstack.embedded import EmbeddedKafka, free_port

pytestmark = pytest.mark.integration


async def announce(kafka: str, *events: AgencyActive) -> list[str]:
    """Publish as the broker does (keyed by agency); the CloudEvent ids."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    await producer.start()
    ids = []
    try:
        for event in events:
            cloud_event = CloudEvent.from_event(event, source="/panjereh/inquiry-broker")
            await producer.send_and_wait(
                AgencyActive.topic, cloud_event.to_bytes(), key=event.agency.encode()
            )
            ids.append(cloud_event.id)
    finally:
        await producer.stop()
    return ids


@pytest.fixture
def activity_topics(tmp_path: Path) -> Iterator[str]:
    """A Kafka-protocol broker of this test's own: the session's carries activity that other
    tests' brokers announced, in whatever order the tests ran, and the catalog reads
    ``inquiry.agency.active`` from its start."""
    broker = EmbeddedKafka(free_port(), log_path=tmp_path / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


async def agency(client: httpx.AsyncClient, code: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/catalog/agencies/{code}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_an_agency_the_broker_heard_from_counts_as_connected(
    own_catalog_url: str, jwks_url: str, activity_topics: str
) -> None:
    platform_topics = activity_topics
    await create_topics(platform_topics, PLATFORM_TOPICS)
    settings = Settings(
        database_url=own_catalog_url,
        jwks_url=jwks_url,
        kafka_bootstrap_servers=platform_topics,
        kafka_idempotence=False,
        consume_agency_activity=True,
    )
    async with running_app(create_app(settings)) as client:
        before = (await client.get("/api/v1/catalog/stats")).json()
        assert before["agencies_connected_share"] == 0.0
        assert (await agency(client, "police"))["connected"] is False

        heard_at = datetime.now(UTC)
        unregistered, police = await announce(
            platform_topics,
            # an agency the catalog does not list: skipped, not dead-lettered
            AgencyActive(agency="land-registry", at=heard_at),
            AgencyActive(agency="police", at=heard_at),
        )
        async with asyncio.timeout(30):
            # the consumer's commit is all that changes it: nothing local to await
            while not (await agency(client, "police"))["connected"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)

        stats = (await client.get("/api/v1/catalog/stats")).json()
        assert stats["agencies_connected_share"] == round(1 / stats["agencies_total"], 4)
        last_seen = datetime.fromisoformat((await agency(client, "police"))["last_seen_at"])
        assert abs((last_seen - heard_at).total_seconds()) < 0.001
        assert (await agency(client, "tax"))["connected"] is False

        connection = await asyncpg.connect(
            own_catalog_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        )
        try:
            async with asyncio.timeout(30):
                handled: set[str] = set()
                while handled != {unregistered, police}:
                    rows = await connection.fetch(
                        "SELECT event_id FROM catalog.inbox_message WHERE topic = $1",
                        AgencyActive.topic,
                    )
                    handled = {row["event_id"] for row in rows}
                    await asyncio.sleep(0.05)
        finally:
            await connection.close()
