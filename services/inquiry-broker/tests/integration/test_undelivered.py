"""Not delivered is not "not answered": what the broker does with an inquiry at its deadline.

On a real database and a real Kafka-protocol broker, with agencies of this module's own (fresh
codes, their own topics and registry entries):

- an agency that is not consuming its inquiries topic: its inquiry stays pending past the
  deadline, and is answered once the agency starts;
- an agency that read the inquiry and replied while the broker was down: the reply, waiting
  on the replies topic, is consumed before anything times the inquiry out;
- an agency that reads its inquiries and does not answer: timed out at the deadline, after the
  resends (what a card's rule then acts on);
- an agency that stays away past ``undelivered_max_wait_seconds``: timed out as
  ``undelivered``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from panjereh.agency_sdk import Agency, KafkaSettings
from panjereh.agency_sdk.messages import Inquiry, decode
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.catalog import ServicePublished
from panjereh.contracts.inquiry import InquiryReply
from panjereh.contracts.requests import RequestSubmitted
from panjereh.contracts.samples import published_card
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries, agency_replies
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import create_app

pytestmark = pytest.mark.integration

SUBJECT = "0499370899"
#: the deadline of this module's inquiry types
DEADLINE_SECONDS = 1.5
#: the agencies of this module, by role (codes made fresh for each run)
ROLES = ("late", "answering", "silent", "away")
_tracking_codes = iter(range(8_300_000_001, 8_300_001_000))


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(libpq(url))
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def until(what: Callable[[], Any], *, within: float = 30) -> None:
    """Until ``what()`` returns something true (another process's effect: nothing to await)."""
    async with asyncio.timeout(within):
        while not await what():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def publish(kafka: str, topic: str, event: CloudEvent, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.to_bytes(), key=key.encode())
    finally:
        await producer.stop()


@dataclass
class World:
    """This module's database, Kafka, agencies and a way to run the broker on them."""

    url: str
    kafka: str
    tokens: TokenFactory
    jwks_url: str
    agencies: Mapping[str, str]
    #: when the last inquiry was sent (its live purpose opened before)
    posted_at: float = 0.0

    def settings(self, **overrides: Any) -> Settings:
        return Settings(
            database_url=self.url,
            kafka_bootstrap_servers=self.kafka,
            kafka_idempotence=False,
            jwks_url=self.jwks_url,
            environment="test",
            subject_hash_key="k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r",
            sweep_interval_seconds=0.05,
            **overrides,
        )

    @asynccontextmanager
    async def broker(self, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with running_app(create_app(self.settings(**overrides))) as client:
            yield client

    @property
    def caller(self) -> dict[str, str]:
        return bearer(
            self.tokens(
                roles=["service:requests"],
                sub="service-requests",
                national_code=None,
                scopes=["inquiries"],
            )
        )

    async def ask(self, client: httpx.AsyncClient, role: str, *, wait: float = 0) -> httpx.Response:
        """An inquiry of ``role``'s agency for a live request of the module's card."""
        tracking_code = str(next(_tracking_codes))
        await publish(
            self.kafka,
            RequestSubmitted.topic,
            CloudEvent.from_event(
                RequestSubmitted(
                    tracking_code=tracking_code,
                    service_code=CARD,
                    service_version=1,
                    subject=SUBJECT,
                    at=datetime.now(UTC),
                )
            ),
            tracking_code,
        )

        async def opened() -> bool:
            return bool(
                await sql(
                    self.url,
                    "SELECT 1 FROM inquiry_broker.live_purpose WHERE tracking_code = $1",
                    tracking_code,
                )
            )

        await until(opened)
        self.posted_at = time.monotonic()
        return await client.post(
            f"/api/v1/inquiries?wait={wait}",
            headers=self.caller,
            json={
                "type": type_of(self.agencies[role]),
                "subject": SUBJECT,
                "params": {},
                "purpose": {
                    "service_code": CARD,
                    "tracking_code": tracking_code,
                    "legal_basis": "درخواست شهروند",
                },
            },
        )

    async def inquiry(self, inquiry_id: str) -> asyncpg.Record:
        rows = await sql(
            self.url,
            "SELECT status, error, attempts FROM inquiry_broker.inquiry WHERE id = $1",
            uuid.UUID(inquiry_id),
        )
        return rows[0]


CARD = "undelivered-card"


def type_of(agency: str) -> str:
    return f"{agency}.record"


async def register(url: str, agency: str, *, max_attempts: int) -> None:
    """A Kafka-delivered type of ``agency`` with this module's deadline."""
    await sql(
        url,
        """
        INSERT INTO inquiry_broker.inquiry_type (name, provider_agency, title, subject_kind,
          input_schema, output_schema, delivery, connector_url, timeout_ms, max_attempts,
          cache_ttl_seconds, personal_data_class)
        VALUES ($1, $2, $3::jsonb, 'national_code', '{"type": "object"}'::jsonb,
          '{"type": "object"}'::jsonb, 'kafka', NULL, $4, $5, 0, 'identity')
        """,
        type_of(agency),
        agency,
        json.dumps({"fa": "استعلام آزمایشی", "en": "Test record"}),
        int(DEADLINE_SECONDS * 1000),
        max_attempts,
    )


@pytest.fixture(scope="module")
async def world(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    token_factory: TokenFactory,
    jwks_url: str,
) -> World:
    url = await migrated_database("panjereh.inquiry_broker")
    run = secrets.token_hex(3)
    agencies = {role: f"{role}-{run}" for role in ROLES}
    await create_topics(
        kafka_bootstrap_servers,
        [
            *PLATFORM_TOPICS,
            *(agency_inquiries(code) for code in agencies.values()),
            *(agency_replies(code) for code in agencies.values()),
        ],
    )
    for role, code in agencies.items():
        # one attempt where a resend would blur what is being shown
        await register(url, code, max_attempts=1 if role == "answering" else 3)
    world = World(url, kafka_bootstrap_servers, token_factory, jwks_url, agencies)
    card = published_card(
        CARD, agency="tax", inquiries=[type_of(code) for code in agencies.values()]
    )
    await publish(
        kafka_bootstrap_servers,
        ServicePublished.topic,
        CloudEvent.from_event(ServicePublished(code=CARD, version=1, card=card)),
        CARD,
    )
    async with world.broker():

        async def published() -> bool:
            return bool(
                await sql(
                    url, "SELECT 1 FROM inquiry_broker.published_card WHERE service_code = $1", CARD
                )
            )

        await until(published)
    return world


@asynccontextmanager
async def reading_without_answering(kafka: str, agency: str) -> AsyncIterator[list[str]]:
    """``agency`` in its own consumer group: it reads (and commits) its inquiries, answers none.

    Yields the inquiry ids read so far, once the group gave it the topic's partitions."""
    consumer = AIOKafkaConsumer(
        agency_inquiries(agency),
        bootstrap_servers=kafka,
        group_id=f"agency-{agency}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=25,
    )
    await consumer.start()
    read: list[str] = []

    async def loop() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for partition, records in batches.items():
                read.extend(str(decode(r.value).data["inquiry_id"]) for r in records)
                await consumer.commit({partition: records[-1].offset + 1})

    task = asyncio.create_task(loop())
    try:
        await until(lambda: asyncio.sleep(0, bool(consumer.assignment())))
        yield read
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()


async def test_an_inquiry_waits_for_an_agency_that_is_down_and_is_answered_when_it_returns(
    world: World,
) -> None:
    code = world.agencies["late"]
    agency = Agency(code, kafka=KafkaSettings(bootstrap_servers=world.kafka, idempotence=False))

    @agency.handler(type_of(code))
    async def record(_: Inquiry) -> dict[str, Any]:
        return {"on_file": True}

    async with world.broker() as client:
        asked = await world.ask(client, "late")
        assert asked.status_code == 202, asked.text
        inquiry_id = asked.json()["inquiry_id"]
        # a caller waits past the deadline, and the sweeper runs all along
        waited = await client.get(
            f"/api/v1/inquiries/{inquiry_id}?wait={DEADLINE_SECONDS + 1.5}", headers=world.caller
        )
        assert waited.json()["status"] == "pending", waited.json()
        await asyncio.sleep(1.0)
        assert (await world.inquiry(inquiry_id))["status"] == "pending"
        # the agency starts: it reads the inquiry (each copy the broker sent) and answers
        running = asyncio.create_task(agency.run())
        try:
            answered = await client.get(
                f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=world.caller
            )
        finally:
            agency.stop()
            await running
    assert answered.json()["status"] == "answered", answered.json()
    assert answered.json()["result"] == {"on_file": True}


async def test_a_reply_waiting_on_the_replies_topic_is_consumed_before_any_time_out(
    world: World,
) -> None:
    code = world.agencies["answering"]
    async with reading_without_answering(world.kafka, code) as read, world.broker() as client:
        asked = await world.ask(client, "answering")
        inquiry_id = asked.json()["inquiry_id"]
        await until(lambda: asyncio.sleep(0, inquiry_id in read))
    # the broker is down; the agency, which read the inquiry, replies now
    await publish(
        world.kafka,
        agency_replies(code),
        CloudEvent.from_event(
            InquiryReply(inquiry_id=inquiry_id, status="ok", result={"on_file": False}),  # type: ignore[arg-type]
            source=f"agency/{code}",
        ),
        inquiry_id,
    )
    await asyncio.sleep(DEADLINE_SECONDS + 0.5)  # the deadline passes while the broker is down
    async with world.broker() as client:
        after = await client.get(f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=world.caller)
    assert after.json()["status"] == "answered", after.json()
    assert after.json()["result"] == {"on_file": False}


async def test_an_agency_that_reads_and_does_not_answer_times_out_at_the_deadline(
    world: World,
) -> None:
    code = world.agencies["silent"]
    async with reading_without_answering(world.kafka, code) as read, world.broker() as client:
        response = await world.ask(client, "silent", wait=10)
        elapsed = time.monotonic() - world.posted_at
    body = response.json()
    assert response.status_code == 200, body
    assert (body["status"], body["error"]) == ("timed_out", "timed_out")
    assert elapsed < DEADLINE_SECONDS + 1.5  # at the type's deadline, not after the caller's 10 s
    row = await world.inquiry(body["inquiry_id"])
    assert row["attempts"] >= 2  # resent before giving up
    assert read.count(body["inquiry_id"]) == row["attempts"]  # and every copy was read


async def test_an_agency_away_longer_than_the_outage_cap_times_out_as_undelivered(
    world: World,
) -> None:
    async with world.broker(undelivered_max_wait_seconds=1.0) as client:
        response = await world.ask(client, "away", wait=10)
        elapsed = time.monotonic() - world.posted_at
    body = response.json()
    assert (body["status"], body["error"]) == ("timed_out", "undelivered"), body
    assert DEADLINE_SECONDS + 1.0 <= elapsed < DEADLINE_SECONDS + 4.0
