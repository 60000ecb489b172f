"""Identity on a real Kafka-protocol broker: the registration event and status-change SMS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.testing.kafka import create_topics, produce, read_topic
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.contracts import topics
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.identity.main import create_app
from panjereh.identity.testing import (
    InquiryBrokerDouble,
    login,
    mobile_for,
    national_code_for,
    settings_for_tests,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def wired(
    migrated_database: MigratedDatabase,
    broker_double: InquiryBrokerDouble,
    kafka_bootstrap_servers: str,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    await create_topics(
        kafka_bootstrap_servers,
        [
            topics.IDENTITY_CITIZEN_REGISTERED,
            topics.REQUESTS_STATUS_CHANGED,
            topics.dead_letter(topics.REQUESTS_STATUS_CHANGED),
        ],
    )
    database_url = await migrated_database("panjereh.identity")
    settings = settings_for_tests(
        database_url,
        broker_double.url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        kafka_idempotence=False,
        consume_status_events=True,
    )
    app = create_app(settings)
    async with running_app(app) as client:
        yield app, client


async def outbox_sms(client: httpx.AsyncClient, mobile: str, count: int) -> list[dict[str, Any]]:
    for _ in range(400):
        items: list[dict[str, Any]] = (
            await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})
        ).json()["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.025)
    raise AssertionError(f"expected {count} SMS")


class TestCitizenRegisteredEvent:
    async def test_first_login_publishes_the_opaque_id_and_nothing_personal(
        self, wired: tuple[FastAPI, httpx.AsyncClient], kafka_bootstrap_servers: str
    ) -> None:
        _, client = wired
        seed = 880_001
        tokens = await login(client, national_code_for(seed), mobile_for(seed))
        citizen_id = jwt.get_unverified_claims(tokens["access_token"])["sub"]
        records = await read_topic(
            kafka_bootstrap_servers, topics.IDENTITY_CITIZEN_REGISTERED, count=1
        )
        events = [CloudEvent.from_bytes(record.value) for record in records]
        mine = [event for event in events if event.data["citizen_id"] == citizen_id]
        assert len(mine) == 1
        assert mine[0].type == "identity.citizen.registered.v1"
        raw = b"".join(record.value or b"" for record in records).decode()
        assert national_code_for(seed) not in raw
        assert mobile_for(seed) not in raw


class TestStatusChangeSms:
    async def test_one_persian_sms_per_event_even_when_delivered_twice(
        self, wired: tuple[FastAPI, httpx.AsyncClient], kafka_bootstrap_servers: str
    ) -> None:
        _, client = wired
        seed = 880_002
        tokens = await login(
            client, national_code_for(seed), mobile_for(seed)
        )  # the first SMS: the login code
        citizen_id = jwt.get_unverified_claims(tokens["access_token"])["sub"]
        change = RequestStatusChanged.model_validate(
            {
                "tracking_code": "48213957",
                "service_code": "passport-renewal",
                "from": "deciding",
                "to": "approved",
                "at": datetime.now(UTC),
                "citizen_id": citizen_id,
            }
        )
        envelope = CloudEvent.from_event(change, subject="48213957").to_bytes()
        for _ in range(2):  # a redelivery: same CloudEvent id
            await produce(
                kafka_bootstrap_servers, topics.REQUESTS_STATUS_CHANGED, envelope, key=b"48213957"
            )
        another = CloudEvent.from_event(change, subject="48213957").to_bytes()  # a new event
        await produce(
            kafka_bootstrap_servers, topics.REQUESTS_STATUS_CHANGED, another, key=b"48213957"
        )
        await outbox_sms(client, mobile_for(seed), count=3)
        await asyncio.sleep(0.5)  # room for a duplicate that must not come
        items = (
            await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile_for(seed)})
        ).json()["items"]
        status_sms = [item for item in items if item["template"] == "panjereh-request-status"]
        assert len(status_sms) == 2  # two distinct events, the redelivery absorbed
        assert status_sms[0]["tokens"] == ["48213957", "تأیید شد"]
        assert "48213957" in status_sms[0]["text"]

    async def test_the_machines_own_steps_send_no_sms(
        self, wired: tuple[FastAPI, httpx.AsyncClient], kafka_bootstrap_servers: str
    ) -> None:
        _, client = wired
        seed = 880_003
        tokens = await login(client, national_code_for(seed), mobile_for(seed))
        citizen_id = jwt.get_unverified_claims(tokens["access_token"])["sub"]
        for before, after in (
            ("submitted", "awaiting_inquiries"),
            ("awaiting_inquiries", "deciding"),
            ("deciding", "rejected"),
        ):
            change = RequestStatusChanged.model_validate(
                {
                    "tracking_code": "48213958",
                    "service_code": "passport-renewal",
                    "from": before,
                    "to": after,
                    "at": datetime.now(UTC),
                    "citizen_id": citizen_id,
                }
            )
            event = CloudEvent.from_event(change, subject="48213958").to_bytes()
            await produce(
                kafka_bootstrap_servers, topics.REQUESTS_STATUS_CHANGED, event, key=b"48213958"
            )
        await outbox_sms(client, mobile_for(seed), count=2)  # the login code and the rejection
        await asyncio.sleep(0.5)  # room for the step SMS that must not come
        items = (
            await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile_for(seed)})
        ).json()["items"]
        status_sms = [item for item in items if item["template"] == "panjereh-request-status"]
        assert [item["tokens"] for item in status_sms] == [["48213958", "رد شد"]]

    async def test_an_event_without_a_citizen_is_consumed_without_sms(
        self, wired: tuple[FastAPI, httpx.AsyncClient], kafka_bootstrap_servers: str
    ) -> None:
        app, _ = wired
        change = RequestStatusChanged.model_validate(
            {
                "tracking_code": "99999999",
                "service_code": "s",
                "from": None,
                "to": "submitted",
                "at": datetime.now(UTC),
            }
        )
        event = CloudEvent.from_event(change)
        await produce(kafka_bootstrap_servers, topics.REQUESTS_STATUS_CHANGED, event.to_bytes())
        for _ in range(400):
            async with app.state.database.sessions() as session:
                seen = await session.scalar(
                    text("SELECT count(*) FROM identity.inbox_message WHERE event_id = :id"),
                    {"id": event.id},
                )
            if seen:
                break
            await asyncio.sleep(0.025)
        assert seen == 1
