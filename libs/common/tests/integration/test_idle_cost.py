"""What the kernel's loops cost when nothing happens, and how they wake when something does.

An outbox row committed in the relay's own process is published at once (the commit wakes the
relay), while an idle relay polls ever less often; an idle consumer fetches with ever longer
waits (up to its own idle wait) and tightens again when records come.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from panjereh.common.db import Database, service_metadata
from panjereh.common.messaging import outbox
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import FetchPacer, create_consumer, create_producer
from panjereh.common.messaging.tables import MessagingTables, messaging_tables
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.kafka import create_topics, produce, read_topic
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.contracts.events import Event

pytestmark = pytest.mark.integration


class Pinged(Event):
    event_type: ClassVar[str] = "kerneltest.pinged.v1"
    topic: ClassVar[str] = "kerneltest.pings"
    n: int


@pytest.fixture
async def database(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
    # the catalog's migrations create the kernel's outbox table in schema ``catalog``
    db = Database(await migrated_database("panjereh.catalog"), pool_size=3)
    yield db
    await db.dispose()


@pytest.fixture
def tables() -> MessagingTables:
    return messaging_tables(service_metadata("catalog"))


def settings_for(bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotence=False,
        database_url="postgresql+asyncpg://x@h/db",
    )


async def test_a_commit_wakes_the_relay_at_once_and_an_idle_relay_polls_ever_less(
    database: Database, tables: MessagingTables, kafka_bootstrap_servers: str
) -> None:
    topic = f"kerneltest.{secrets.token_hex(4)}"
    await create_topics(kafka_bootstrap_servers, [topic])
    settings = settings_for(kafka_bootstrap_servers)
    relay = outbox.OutboxRelay(
        database=database,
        table=tables.outbox,
        producer_factory=lambda: create_producer(settings),
        poll_interval=0.05,
        idle_poll_interval=30.0,
    )
    await relay.start()
    try:
        await asyncio.sleep(2.0)
        # 0.05, 0.1, 0.2, 0.4, 0.8 s ...: a handful of probes, not one every 0.05 s (40)
        assert 3 <= relay.empty_polls <= 7
        # the relay now sleeps for seconds; only the commit's wake-up can publish this in time
        started = time.monotonic()
        async with database.transaction() as session:
            await outbox.add(session, Pinged(n=1), key="ping", topic=topic)
        records = await read_topic(kafka_bootstrap_servers, topic, count=1, within=10)
        assert len(records) == 1
        assert time.monotonic() - started < 3.0
    finally:
        await relay.stop()


async def test_an_idle_consumer_waits_longer_and_tightens_when_records_come(
    kafka_bootstrap_servers: str,
) -> None:
    topic = f"kerneltest.{secrets.token_hex(4)}"
    await create_topics(kafka_bootstrap_servers, [topic], partitions=1)
    consumer = create_consumer(
        settings_for(kafka_bootstrap_servers),
        topic,
        group_id=f"kerneltest-{secrets.token_hex(3)}",
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        pacer = FetchPacer(consumer, idle_ms=320, quiet_after=0.3)
        assert pacer.tight_ms == 10
        deadline = time.monotonic() + 10
        while pacer.current_ms < 320 and time.monotonic() < deadline:
            pacer.observe(got_records=bool(await consumer.getmany(timeout_ms=100)))
        # idle: the fetches the consumer sends now wait the long way
        assert pacer.current_ms == 320
        assert consumer._fetcher._fetch_max_wait_ms == 320  # what aiokafka sends
        await produce(kafka_bootstrap_servers, topic, b"record")
        got: dict[object, object] = {}
        while not got and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
        pacer.observe(got_records=bool(got))
        assert got
        assert consumer._fetcher._fetch_max_wait_ms == 10
    finally:
        await consumer.stop()


async def test_an_idempotent_consumer_backs_off_to_its_own_idle_fetch_wait(
    database: Database, tables: MessagingTables, kafka_bootstrap_servers: str
) -> None:
    topic = f"kerneltest.{secrets.token_hex(4)}"
    await create_topics(kafka_bootstrap_servers, [topic], partitions=1)
    settings = settings_for(kafka_bootstrap_servers)
    consumer = IdempotentConsumer(
        name=f"kerneltest-{secrets.token_hex(3)}",
        topics=[topic],
        database=database,
        inbox=tables.inbox,
        consumer_factory=lambda _topics, group: create_consumer(
            settings, group_id=group, fetch_max_wait_ms=10
        ),
        producer_factory=lambda: create_producer(settings),
        idle_fetch_wait_ms=2500,
    )
    await consumer.start()
    try:
        for _ in range(400):  # the consumer has joined its group within 20 s
            if consumer.pacer is not None:
                break
            await asyncio.sleep(0.05)
        assert consumer.pacer is not None
        # tight while records may come, this consumer's own long wait once idle
        assert (consumer.pacer.tight_ms, consumer.pacer.idle_ms) == (10, 2500)
    finally:
        await consumer.stop()
