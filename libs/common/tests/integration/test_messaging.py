"""Outbox relay and idempotent consumer against the real broker and a migrated PostgreSQL.

The host database is the catalog's (its migrations create the kernel's outbox/inbox tables
in schema ``catalog``); the handlers' "business state" is a counter table the tests create.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition
from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.app import create_service_app
from panjereh.common.db import Database, DirectUnit, service_metadata
from panjereh.common.lifespan import Resources
from panjereh.common.messaging import outbox
from panjereh.common.messaging.consumer import (
    DLQ_ATTEMPTS_HEADER,
    DLQ_ERROR_HEADER,
    Handler,
    IdempotentConsumer,
    InboxClaim,
)
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.messaging.kafka import (
    broker_readiness_check,
    consumer_options,
    create_consumer,
    create_producer,
)
from panjereh.common.messaging.tables import MessagingTables, messaging_tables
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.kafka import create_topics, produce, read_topic
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.contracts.events import Event
from panjereh.devstack.embedded import EmbeddedKafka, free_port

pytestmark = pytest.mark.integration


class ThingCounted(Event):
    event_type: ClassVar[str] = "kerneltest.thing.counted.v1"
    topic: ClassVar[str] = "kerneltest.things"

    thing: str
    n: int
    poison: bool = False


def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 30.0
) -> Awaitable[None]:
    async def poll() -> None:
        deadline = time.monotonic() + within
        while not await condition():
            if time.monotonic() > deadline:
                msg = "condition not met in time"
                raise TimeoutError(msg)
            await asyncio.sleep(0.05)

    return poll()


@pytest.fixture
async def tables() -> MessagingTables:
    return messaging_tables(service_metadata("catalog"))


@pytest.fixture
async def database(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
    url = await migrated_database("panjereh.catalog")
    db = Database(url, pool_size=5)
    async with db.transaction() as session:
        await session.execute(
            text("CREATE TABLE catalog.kernel_test_counter (event_id text PRIMARY KEY, n int)")
        )
    yield db
    await db.dispose()


@pytest.fixture
def topic() -> str:
    return f"kerneltest.{secrets.token_hex(4)}"


def settings_for(bootstrap: str, database: Database | None = None) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotence=False,
        database_url=str(database.engine.url) if database else "postgresql+asyncpg://x@h/db",
    )


def relay_for(
    database: Database, tables: MessagingTables, bootstrap: str, **options: Any
) -> outbox.OutboxRelay:
    settings = settings_for(bootstrap)
    options.setdefault("backoff_max", 0.5)
    return outbox.OutboxRelay(
        database=database,
        table=tables.outbox,
        producer_factory=lambda: create_producer(settings, request_timeout_ms=3000),
        **options,
    )


def consumer_for(
    database: Database,
    tables: MessagingTables,
    bootstrap: str,
    topic: str,
    *,
    name: str | None = None,
    **options: Any,
) -> IdempotentConsumer:
    settings = settings_for(bootstrap)

    def consumer_factory(topics: Sequence[str], group: str) -> AIOKafkaConsumer:
        return create_consumer(
            settings, *topics, group_id=group, session_timeout_ms=6000, heartbeat_interval_ms=300
        )

    return IdempotentConsumer(
        name=name or f"kerneltest-{secrets.token_hex(3)}",
        topics=[topic],
        database=database,
        inbox=tables.inbox,
        consumer_factory=consumer_factory,
        producer_factory=lambda: create_producer(settings),
        **options,
    )


#: The handlers' business effect: +1 on the event's counter.
COUNT_EFFECT = text(
    "INSERT INTO catalog.kernel_test_counter VALUES (:id, 1) "
    "ON CONFLICT (event_id) DO UPDATE SET n = kernel_test_counter.n + 1"
)


async def count_effect(session: AsyncSession, event: CloudEvent) -> None:
    """The handlers' business effect: +1 on the event's counter."""
    await session.execute(COUNT_EFFECT, {"id": event.id})


async def counters(database: Database) -> dict[str, int]:
    async with database.transaction() as session:
        rows = await session.execute(text("SELECT event_id, n FROM catalog.kernel_test_counter"))
        return {row.event_id: row.n for row in rows}


async def unsent(database: Database, tables: MessagingTables) -> int:
    async with database.transaction() as session:
        query = select(func.count()).where(tables.outbox.c.sent_at.is_(None))
        return int((await session.execute(query)).scalar_one())


async def write_events(
    database: Database, tables: MessagingTables, topic: str, *, things: int, per_thing: int
) -> None:
    """Interleave keys (a0, b0, a1, b1, ...) so per-key order is not just id order."""
    async with database.transaction() as session:
        for n in range(per_thing):
            for thing in range(things):
                name = f"thing-{thing}"
                await outbox.add(
                    session,
                    ThingCounted(thing=name, n=n),
                    key=name,
                    topic=topic,
                    table=tables.outbox,
                )


def partition_of(key: str, partitions: int) -> int:
    """The partition the producers' default partitioner (murmur2 of the key) gives ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def assert_in_order_per_key(records: Sequence[Any], *, things: int, per_thing: int) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for record in records:
        event = CloudEvent.from_bytes(record.value)
        assert record.key.decode() == event.data["thing"] == event.subject
        seen[event.data["thing"]].append(event.data["n"])
    assert dict(seen) == {f"thing-{t}": list(range(per_thing)) for t in range(things)}


def make_outbox_app(
    settings: ServiceSettings, database: Database, tables: MessagingTables, topic: str
) -> tuple[FastAPI, list[outbox.OutboxRelay]]:
    """A tiny service: ``POST /things/{thing}/{n}`` writes an outbox event in its transaction."""
    router = APIRouter()
    relays: list[outbox.OutboxRelay] = []

    @router.post("/things/{thing}/{n}", status_code=202)
    async def count_thing(thing: str, n: int, request: Request) -> dict[str, str]:
        """Count a thing."""
        async with request.app.state.database.transaction() as session:
            # no table=: the relay bound the service's outbox table to its database
            event_id = await outbox.add(
                session, ThingCounted(thing=thing, n=n), key=thing, topic=topic
            )
        return {"event_id": str(event_id)}

    async def setup(app: FastAPI, resources: Resources) -> None:
        app.state.database = database
        relay = relay_for(database, tables, settings.kafka_bootstrap_servers)
        relays.append(relay)
        resources.ready_when("broker", broker_readiness_check(settings, timeout=0.5))
        await resources.start(relay)

    app = create_service_app(title="kernel test", settings=settings, setup=setup, routers=[router])
    return app, relays


class TestOutboxRelay:
    async def test_events_written_while_the_broker_is_down_all_arrive_in_order_per_key(
        self, database: Database, tables: MessagingTables, topic: str, tmp_path: Any
    ) -> None:
        broker = EmbeddedKafka(free_port(), log_path=tmp_path / "broker.log")
        broker.start()
        broker.stop()  # the broker is down before and while events are written
        settings = settings_for(broker.bootstrap_servers, database)
        app, relays = make_outbox_app(settings, database, tables, topic)
        try:
            async with running_app(app) as client:
                assert (await client.get("/readyz")).json()["components"]["broker"] == (
                    "unavailable"
                )
                for n in range(20):
                    for thing in ("a", "b", "c", "d", "e"):
                        response = await client.post(f"/things/{thing}/{n}")
                        assert response.status_code == 202, response.text
                await asyncio.sleep(0.5)
                assert await unsent(database, tables) == 100
                assert relays[0].published == 0

                broker.start()
                # memory storage: a restarted broker has no topics; recreate them
                await create_topics(broker.bootstrap_servers, [topic])
                await wait_until(lambda: _none_unsent(database, tables))
                assert (await client.get("/readyz")).json()["components"]["broker"] == "ready"
                records = await read_topic(broker.bootstrap_servers, topic, count=100)
        finally:
            broker.stop()
        assert len(records) == 100
        seen: dict[str, list[int]] = defaultdict(list)
        for record in records:
            event = CloudEvent.from_bytes(record.value)
            assert event.type == ThingCounted.event_type
            assert event.source == "/panjereh/kerneltest"
            seen[record.key.decode()].append(event.data["n"])
        assert seen == {thing: list(range(20)) for thing in "abcde"}

    async def test_two_relays_at_once_publish_each_row_exactly_once(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        # A partition of its own for each of the 10 keys (24 partitions spread them so): two
        # relays holding different keys then never append to one partition at the same moment.
        # The embedded broker (Tansu 0.6.0, memory storage) can lose an acknowledged record
        # when two producers do (README, "External PostgreSQL and Kafka"): the broker's
        # defect, not the relays'; Apache Kafka has no such race.
        await create_topics(kafka_bootstrap_servers, [topic], partitions=24)
        assert len({partition_of(f"thing-{t}", 24) for t in range(10)}) == 10
        await write_events(database, tables, topic, things=10, per_thing=30)

        # Each relay, after its first acknowledged batch, holds that claim (its keys' locks)
        # until the other has published a batch too: the two provably work at the same time
        # however the machine schedules them, so neither may lock keys it does not publish.
        published = [asyncio.Event(), asyncio.Event()]

        def rendezvous(me: int) -> Callable[[Sequence[int]], Awaitable[None]]:
            async def hook(ids: Sequence[int]) -> None:
                published[me].set()
                await asyncio.wait_for(published[1 - me].wait(), timeout=20)

            return hook

        # batches of 5 rows span 5 of the 10 keys: the other relay can claim the other 5
        relays = [
            relay_for(
                database, tables, kafka_bootstrap_servers, batch_size=5, after_ack=rendezvous(me)
            )
            for me in (0, 1)
        ]
        for relay in relays:
            await relay.start()
        try:
            await wait_until(lambda: _none_unsent(database, tables))
        finally:
            for relay in relays:
                await relay.stop()
        assert sum(relay.published for relay in relays) == 300
        assert all(relay.published > 0 for relay in relays)  # both really worked at once
        records = await read_topic(kafka_bootstrap_servers, topic, count=300)
        assert len(records) == 300
        assert len({CloudEvent.from_bytes(r.value).id for r in records}) == 300
        assert_in_order_per_key(records, things=10, per_thing=30)

    async def test_a_claim_locks_only_the_keys_of_the_rows_it_takes(
        self, database: Database, tables: MessagingTables, topic: str
    ) -> None:
        await write_events(database, tables, topic, things=10, per_thing=3)
        claim = outbox.claim_statement(tables.outbox, lock_space=4242, batch_size=5)
        held = text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        async with database.transaction() as first, database.transaction() as second:
            taken = (await first.execute(claim)).all()
            # the oldest five rows are five keys: the claim holds those and no other
            assert [row.key for row in taken] == [f"thing-{t}" for t in range(5)]
            assert await first.scalar(held) == 5
            # a second relay meanwhile skips them and takes the next five keys' oldest rows
            rest = (await second.execute(claim)).all()
            assert [row.key for row in rest] == [f"thing-{t}" for t in range(5, 10)]
            assert await second.scalar(held) == 5

    async def test_the_backlog_and_published_events_show_in_the_metrics(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        from prometheus_client import REGISTRY  # noqa: PLC0415

        await create_topics(kafka_bootstrap_servers, [topic])
        await write_events(database, tables, topic, things=2, per_thing=3)
        relay = relay_for(database, tables, kafka_bootstrap_servers)
        await relay.measure()
        assert REGISTRY.get_sample_value("panjereh_outbox_pending") == 6
        assert (REGISTRY.get_sample_value("panjereh_outbox_oldest_pending_age_seconds") or 0) >= 0
        published = REGISTRY.get_sample_value("panjereh_outbox_published_total", {"topic": topic})
        assert published is None  # nothing published to this fresh topic yet
        await relay.start()
        try:
            await wait_until(lambda: _none_unsent(database, tables))
        finally:
            await relay.stop()
        await relay.measure()
        assert REGISTRY.get_sample_value("panjereh_outbox_pending") == 0
        assert REGISTRY.get_sample_value("panjereh_outbox_oldest_pending_age_seconds") == 0
        assert REGISTRY.get_sample_value("panjereh_outbox_published_total", {"topic": topic}) == 6

    async def test_a_failed_publish_leaves_rows_unsent_and_records_the_error(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic])
        await write_events(database, tables, topic, things=1, per_thing=2)
        settings = settings_for(kafka_bootstrap_servers)
        relay = outbox.OutboxRelay(
            database=database,
            table=tables.outbox,
            # every record is over the limit: the broker path fails on each try
            producer_factory=lambda: create_producer(settings, max_request_size=64),
            backoff_max=0.2,
        )

        async def failed_twice() -> bool:
            async with database.transaction() as session:
                rows = (await session.execute(select(tables.outbox))).all()
            return all(row.attempts >= 2 and row.sent_at is None for row in rows)

        await relay.start()
        try:
            await wait_until(failed_twice)
        finally:
            await relay.stop()
        async with database.transaction() as session:
            errors = (await session.execute(select(tables.outbox.c.last_error))).scalars().all()
        assert all("MessageSizeTooLarge" in (error or "") for error in errors)
        assert relay.published == 0

    async def test_add_refuses_a_templated_topic_and_never_commits(
        self, database: Database, tables: MessagingTables
    ) -> None:
        class ToAgency(Event):
            event_type: ClassVar[str] = "kerneltest.agency.asked.v1"
            topic: ClassVar[str] = "agency.{agency}.inquiries"

        async with database.sessions() as session:
            with pytest.raises(LookupError, match="outbox table"):
                await outbox.add(session, ThingCounted(thing="a", n=1), key="a")
            with pytest.raises(ValueError, match="templated topic"):
                await outbox.add(session, ToAgency(), key="k", table=tables.outbox)
            await outbox.add(
                session, ToAgency(), key="k", topic="agency.x.inquiries", table=tables.outbox
            )
            await session.rollback()  # the caller's boundary decides; add committed nothing
        assert await unsent(database, tables) == 0


async def _none_unsent(database: Database, tables: MessagingTables) -> bool:
    return await unsent(database, tables) == 0


class TestIdempotentConsumer:
    async def test_the_same_event_delivered_twice_changes_state_once(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic])
        event = CloudEvent.from_event(ThingCounted(thing="a", n=1))
        for _ in range(2):
            await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic)
        await consume(consumer, count_effect, records=2)
        assert await counters(database) == {event.id: 1}

    async def test_a_poison_event_goes_to_the_dlq_after_n_tries_and_consumption_goes_on(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic, f"{topic}.dlq"])
        poison = CloudEvent.from_event(ThingCounted(thing="a", n=1, poison=True))
        good = CloudEvent.from_event(ThingCounted(thing="a", n=2))
        unknown = CloudEvent(id=str(uuid.uuid4()), source="/x", type="other.v1", time=good.time)
        for event in (poison, unknown, good):
            await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
        await produce(kafka_bootstrap_servers, topic, b"not json", key=b"a")
        tries: list[str] = []

        async def handle(session: AsyncSession, event: CloudEvent) -> None:
            tries.append(event.id)
            await count_effect(session, event)  # rolled back with the failed attempt
            if event.data["poison"]:
                raise RuntimeError("cannot digest this")

        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic, max_attempts=3)
        await consume(consumer, handle, records=4)

        assert tries.count(poison.id) == 3
        assert await counters(database) == {good.id: 1}
        dead = await read_topic(kafka_bootstrap_servers, f"{topic}.dlq", count=2)
        assert len(dead) == 2
        by_value = {record.value: dict(record.headers) for record in dead}
        poison_headers = by_value[poison.to_bytes()]
        assert poison_headers[DLQ_ERROR_HEADER] == b"RuntimeError: cannot digest this"
        assert poison_headers[DLQ_ATTEMPTS_HEADER] == b"3"
        assert b"not json" in by_value
        async with database.transaction() as session:
            inbox = await session.execute(select(tables.inbox.c.event_id))
            assert set(inbox.scalars()) == {good.id, unknown.id}  # unknown type: recorded, skipped
        from prometheus_client import REGISTRY  # noqa: PLC0415

        def outcome(name: str) -> float | None:
            labels = {"consumer": consumer.name, "topic": topic, "outcome": name}
            return REGISTRY.get_sample_value("panjereh_consumer_records_total", labels)

        assert outcome("dead_lettered") == 2
        assert outcome("handled") == 1
        assert outcome("skipped") == 1  # the unknown type

    async def test_a_record_met_by_a_database_outage_waits_for_it_and_is_never_parked(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        """A restart of PostgreSQL cuts the handler's connection, and is over before three
        attempts' backoff: the record must still be handled once, not dead-lettered."""
        await create_topics(kafka_bootstrap_servers, [topic, f"{topic}.dlq"])
        event = CloudEvent.from_event(ThingCounted(thing="a", n=1))
        await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
        cuts = 0

        async def handle(session: AsyncSession, event: CloudEvent) -> None:
            nonlocal cuts
            await count_effect(session, event)
            if cuts < 5:  # more cuts than the consumer's attempts
                cuts += 1
                # the server ends this very connection, as a fast shutdown does to all
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

        consumer = consumer_for(
            database, tables, kafka_bootstrap_servers, topic, max_attempts=3, retry_backoff=0.02
        )
        await consume(consumer, handle, records=1)
        assert cuts == 5
        assert consumer.dead_lettered == 0
        assert await counters(database) == {event.id: 1}

    async def test_stopping_while_the_database_is_away_leaves_the_record_for_later(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic, f"{topic}.dlq"])
        event = CloudEvent.from_event(ThingCounted(thing="a", n=1))
        await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
        cut = asyncio.Event()

        async def always_cut(session: AsyncSession, event: CloudEvent) -> None:
            cut.set()
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic, max_attempts=1)
        consumer.register(ThingCounted.event_type, always_cut)
        await consumer.start()
        await asyncio.wait_for(cut.wait(), timeout=30)
        await asyncio.wait_for(consumer.stop(), timeout=30)
        assert consumer.dead_lettered == 0
        assert consumer.processed == 0
        assert await counters(database) == {}
        # the group's offset did not move past it: the group's next member reads it again
        assert await committed_offsets(kafka_bootstrap_servers, consumer.name, topic) == []

    async def test_stop_finishes_the_record_in_hand_and_commits_it(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic])
        first, second = (CloudEvent.from_event(ThingCounted(thing="a", n=n)) for n in (1, 2))
        for event in (first, second):
            await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow(session: AsyncSession, event: CloudEvent) -> None:
            entered.set()
            await release.wait()
            await count_effect(session, event)

        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic)
        consumer.register(ThingCounted.event_type, slow)
        await consumer.start()
        await asyncio.wait_for(entered.wait(), timeout=30)
        stopping = asyncio.create_task(consumer.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()  # waits for the record in hand
        release.set()
        await asyncio.wait_for(stopping, timeout=30)
        assert await counters(database) == {first.id: 1}
        # the group's offset is past the first record and not the second (both on one
        # partition, keyed alike): the group's next member resumes at the second
        assert await committed_offsets(kafka_bootstrap_servers, consumer.name, topic) == [1]

    async def test_a_relay_killed_after_the_ack_republishes_and_the_inbox_absorbs_it(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic])
        await write_events(database, tables, topic, things=2, per_thing=5)

        async def die(ids: Sequence[int]) -> None:
            raise asyncio.CancelledError  # the process dies: acked, never marked sent

        doomed = relay_for(database, tables, kafka_bootstrap_servers, after_ack=die)
        await doomed.start()
        assert doomed._task is not None
        with pytest.raises(asyncio.CancelledError):
            await doomed._task
        assert await unsent(database, tables) == 10
        assert len(await read_topic(kafka_bootstrap_servers, topic, count=10)) == 10

        survivor = relay_for(database, tables, kafka_bootstrap_servers)
        await survivor.start()
        try:
            await wait_until(lambda: _none_unsent(database, tables))
        finally:
            await survivor.stop()
        records = await read_topic(kafka_bootstrap_servers, topic, count=20)
        assert len(records) == 20  # every event twice on the topic

        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic)
        await consume(consumer, count_effect, records=20)
        state = await counters(database)
        assert len(state) == 10
        assert set(state.values()) == {1}

    async def test_the_consumer_span_continues_the_trace_that_wrote_the_event(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        await create_topics(kafka_bootstrap_servers, [topic])
        writer = SpanContext(
            trace_id=int(secrets.token_hex(16), 16),
            span_id=int(secrets.token_hex(8), 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        with trace.use_span(NonRecordingSpan(writer)):
            await write_events(database, tables, topic, things=1, per_thing=1)
        async with database.transaction() as session:
            headers = (await session.execute(select(tables.outbox.c.headers))).scalar_one()
        assert headers["traceparent"] == f"00-{writer.trace_id:032x}-{writer.span_id:016x}-01"

        relay = relay_for(database, tables, kafka_bootstrap_servers)
        await relay.start()
        seen: list[int] = []

        async def handle(session: AsyncSession, event: CloudEvent) -> None:
            seen.append(trace.get_current_span().get_span_context().trace_id)

        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic)
        try:
            await consume(consumer, handle, records=1)
        finally:
            await relay.stop()
        assert seen == [writer.trace_id]


async def consume(consumer: IdempotentConsumer, handler: Handler, *, records: int) -> None:
    """Run ``consumer`` with ``handler`` for the test's events until it has dealt with
    ``records`` records, then stop it."""
    consumer.register(ThingCounted.event_type, handler)
    await consumer.start()
    try:
        await wait_until(lambda: _processed(consumer, records))
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> list[int]:
    """The offsets ``group`` committed on ``topic``'s partitions (those it committed on),
    asked of the group's coordinator without joining the group."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]  # create_topics' default
        offsets = [await reader.committed(tp) for tp in partitions]
    finally:
        await reader.stop()
    return [offset for offset in offsets if offset is not None]


async def _processed(consumer: IdempotentConsumer, count: int) -> bool:
    return consumer.processed >= count


class TestTraceAcrossTheOutbox:
    async def test_an_http_request_trace_continues_into_the_events_consumer(
        self, database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
    ) -> None:
        """HTTP server span → outbox row → relay → consumer span: one trace, read from export."""
        from panjereh.common.telemetry import in_memory_exporter  # noqa: PLC0415

        exporter = in_memory_exporter()
        await create_topics(kafka_bootstrap_servers, [topic])
        settings = settings_for(kafka_bootstrap_servers, database)
        app, _ = make_outbox_app(settings, database, tables, topic)
        consumer = consumer_for(database, tables, kafka_bootstrap_servers, topic)
        consumer.register(ThingCounted.event_type, count_effect)
        exporter.clear()
        async with running_app(app) as client:
            response = await client.post("/things/traced/1")
            assert response.status_code == 202
            traceparent = response.headers["traceparent"]
            await consumer.start()
            try:
                await wait_until(lambda: _processed(consumer, 1))
            finally:
                await consumer.stop()
        request_trace_id = int(traceparent.split("-")[1], 16)
        spans = exporter.get_finished_spans()
        server_spans = [
            s
            for s in spans
            if s.kind is trace.SpanKind.SERVER and s.context.trace_id == request_trace_id
        ]
        consumer_spans = [
            s for s in spans if s.kind is trace.SpanKind.CONSUMER and s.name == f"{topic} process"
        ]
        assert server_spans, "the HTTP request's span was exported"
        assert len(consumer_spans) == 1
        consumed = consumer_spans[0]
        assert consumed.context.trace_id == request_trace_id
        assert consumed.parent is not None  # a child within the request's trace, not a new root
        assert consumed.attributes is not None
        assert consumed.attributes["cloudevents.event_type"] == ThingCounted.event_type


class TestHandlersClaimingTheirRecord:
    """A handler may claim its record's inbox row in a statement of its own (one round trip
    fewer); effects stay exactly once whether it claims, finds a duplicate, or forgets to."""

    @staticmethod
    def record_of(event: CloudEvent, topic: str) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(
            topic=topic,
            partition=0,
            offset=0,
            timestamp=0,
            timestamp_type=0,
            key=b"k",
            value=event.to_bytes(),
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=0,
            headers=(),
        )

    async def test_a_record_delivered_twice_has_one_effect(
        self, database: Database, tables: MessagingTables, topic: str
    ) -> None:
        consumer = consumer_for(database, tables, "127.0.0.1:9", topic)
        folded = CloudEvent.from_event(ThingCounted(thing="folded", n=1))
        forgotten = CloudEvent.from_event(ThingCounted(thing="forgotten", n=1), source="/other")
        handled: list[bool | None] = []

        async def claims_itself(
            unit: DirectUnit, event: CloudEvent, _topic: str, claim: InboxClaim
        ) -> None:
            claim.taken = await unit.fetchrow(claim.statement, claim.values) is not None
            handled.append(claim.taken)
            if claim.taken:
                await unit.fetch(COUNT_EFFECT, {"id": event.id})

        async def never_claims(
            unit: DirectUnit, event: CloudEvent, _topic: str, claim: InboxClaim
        ) -> None:
            # before any claim: rolled back if a duplicate
            await unit.fetch(COUNT_EFFECT, {"id": event.id})

        consumer.register_claiming(ThingCounted.event_type, claims_itself)
        for _ in range(2):
            await consumer._process(self.record_of(folded, topic))
        assert handled == [True, False]
        other = consumer_for(database, tables, "127.0.0.1:9", topic, name=consumer.name + "-2")
        other.register_claiming(ThingCounted.event_type, never_claims)
        for _ in range(2):
            await other._process(self.record_of(forgotten, topic))

        assert (await counters(database)) == {folded.id: 1, forgotten.id: 1}
        async with database.transaction() as session:
            inbox = (
                await session.execute(
                    select(tables.inbox.c.consumer, tables.inbox.c.event_id).where(
                        tables.inbox.c.event_id.in_([folded.id, forgotten.id])
                    )
                )
            ).all()
        assert sorted(inbox) == sorted([(consumer.name, folded.id), (other.name, forgotten.id)])


class _CountingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """aiokafka's consumer, counting the offset commits it is asked for."""

    commits: ClassVar[list[dict[Any, Any]]] = []

    async def commit(self, offsets: Any = None) -> None:
        type(self).commits.append(dict(offsets or {}))
        await super().commit(offsets)


async def test_the_records_of_one_fetch_are_committed_together(
    database: Database, tables: MessagingTables, topic: str, kafka_bootstrap_servers: str
) -> None:
    """An offset commit is a request to Kafka and a wait: one per fetched batch, after the
    batch's units of work, not one per record; none is skipped."""
    await create_topics(kafka_bootstrap_servers, [topic])
    events = [CloudEvent.from_event(ThingCounted(thing="a", n=n)) for n in range(6)]
    for event in events:  # one key: one partition, fetched together
        await produce(kafka_bootstrap_servers, topic, event.to_bytes(), key=b"a")
    settings = settings_for(kafka_bootstrap_servers)
    _CountingConsumer.commits = []

    def counting(topics: Sequence[str], group: str) -> AIOKafkaConsumer:
        options = consumer_options(settings, group_id=group, session_timeout_ms=6000)
        return _CountingConsumer(*topics, **options)

    consumer = IdempotentConsumer(
        name=f"kerneltest-{secrets.token_hex(3)}",
        topics=[topic],
        database=database,
        inbox=tables.inbox,
        consumer_factory=counting,
        producer_factory=lambda: create_producer(settings),
    )
    await consume(consumer, count_effect, records=6)
    assert await counters(database) == {event.id: 1 for event in events}
    committed = [
        offset.offset for commit in _CountingConsumer.commits for offset in commit.values()
    ]
    assert max(committed) == 6  # the last record's offset + 1 (a new topic starts at 0)
    assert len(_CountingConsumer.commits) < len(events)
