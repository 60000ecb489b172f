"""The idempotent consumer: at-least-once delivery made exactly-once in effect.

For each record: one DB transaction inserts the inbox row (consumer name + event id) and runs
the handler; only after it commits is the offset + 1 committed to Kafka (once per fetched
batch, and before the consumer's partitions are revoked). A crash anywhere
before the offset commit redelivers the record, and the inbox row turns the second delivery
into a no-op. A record that keeps failing is parked on ``<topic>.dlq`` with the error in its
headers, and consumption goes on: one poison event must not stop a service. A failure that
says the database is away (a restart, a dropped connection) is no fault of the event: the
record waits for the database, however long, and is never parked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import trace
from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from panjereh.common.db import Database, DirectUnit
from panjereh.common.errors import database_unavailable
from panjereh.common.messaging.envelope import CloudEvent, extract_trace_context
from panjereh.common.messaging.kafka import IDLE_FETCH_MAX_WAIT_MS, FetchPacer
from panjereh.common.metrics import CONSUMER_LAG, CONSUMER_RECORDS

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
#: A handler that also gets the topic its record arrived on: for a consumer of topics whose
#: name says who could write them (Kafka ACLs), where the event's own ``source`` proves nothing.
TopicHandler = Callable[[AsyncSession, CloudEvent, str], Awaitable[None]]


class _LeftForLater(Exception):
    """The consumer stops while the record in hand waits for the database: it is left
    uncommitted, and whichever member owns its partition next handles it."""


@dataclass
class InboxClaim:
    """The inbox row of the record in hand, for a handler that claims it in a statement of
    its own (:meth:`IdempotentConsumer.register_claiming`): one round trip fewer per record.

    The handler runs :attr:`statement` (``INSERT … ON CONFLICT DO NOTHING RETURNING
    event_id``, parameters :attr:`values`) inside its first statement, typically as a CTE,
    before any effect, and sets :attr:`taken`: ``True`` when the row was inserted, ``False``
    for a duplicate (then it changes nothing). A handler that returns without running it
    leaves :attr:`taken` ``None``: the consumer then claims the record itself, after the
    handler, and rolls the unit of work back if it was a duplicate.
    """

    statement: Insert
    values: dict[str, Any]
    taken: bool | None = None


#: A claiming handler's unit of work is sent by the driver (:meth:`Database.direct`): such a
#: handler is a hot path of a few Core statements (an agency's reply), nothing ORM.
ClaimingHandler = Callable[[DirectUnit, CloudEvent, str, InboxClaim], Awaitable[None]]


class _Duplicate(Exception):
    """Rolls back the unit of work of a record whose inbox row was already there."""


#: Record headers a dead-lettered record carries in addition to its own.
DLQ_ERROR_HEADER = "panjereh-dlq-error"
DLQ_ORIGIN_HEADERS = ("panjereh-dlq-topic", "panjereh-dlq-partition", "panjereh-dlq-offset")
DLQ_ATTEMPTS_HEADER = "panjereh-dlq-attempts"
MAX_ERROR_CHARS = 2000


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until the record in hand is handled and the offsets of the records
    handled so far are committed."""

    def __init__(self, lock: asyncio.Lock, commit: Callable[[], Awaitable[None]]) -> None:
        self._lock = lock
        self._commit = commit

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            await self._commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class IdempotentConsumer:
    """Consumes ``topics`` in group ``name``; handlers are registered per CloudEvent ``type``.

    ``consumer_factory`` builds an unstarted ``AIOKafkaConsumer`` (see
    ``panjereh.common.messaging.kafka.create_consumer``) and ``producer_factory`` the producer
    used for dead letters. Unknown types are recorded in the inbox and skipped.

    ``idle_fetch_wait_ms``: the longest fetch wait once no record came for a while (see
    :class:`.kafka.FetchPacer`). On a broker that does not answer a held fetch when a record
    lands (the embedded Tansu), the first record after a quiet spell waits up to this long, and
    every fetch costs the broker CPU: a consumer of events whose handling may lag by seconds
    (catalog changes, notifications) takes a long one, a consumer on a caller's path a short
    one. On Apache Kafka a long wait costs no latency.
    """

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        database: Database,
        inbox: Table,
        consumer_factory: Callable[[Sequence[str], str], AIOKafkaConsumer],
        producer_factory: Callable[[], AIOKafkaProducer],
        max_attempts: int = 3,
        retry_backoff: float = 0.1,
        reconnect_backoff_max: float = 10.0,
        idle_fetch_wait_ms: int = IDLE_FETCH_MAX_WAIT_MS,
    ) -> None:
        if max_attempts < 1:
            msg = "max_attempts must be at least 1"
            raise ValueError(msg)
        self.name = name
        self.topics = tuple(topics)
        self._database = database
        self._inbox = inbox
        # built once: a statement rebuilt per record paid its construction and cache key
        # again for every event consumed
        self._claim_event = (
            insert(inbox)
            .values(
                consumer=bindparam("consumer", type_=inbox.c.consumer.type),
                event_id=bindparam("event_id", type_=inbox.c.event_id.type),
                topic=bindparam("topic", type_=inbox.c.topic.type),
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._reconnect_backoff_max = reconnect_backoff_max
        self._idle_fetch_wait_ms = idle_fetch_wait_ms
        self._handlers: dict[str, TopicHandler] = {}
        self._claiming: dict[str, ClaimingHandler] = {}
        self._record_lock = asyncio.Lock()
        #: offsets of records handled (their units of work committed) and not committed to
        #: Kafka yet: committed once per fetched batch, and before any rebalance
        self._handled: dict[TopicPartition, OffsetAndMetadata] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        #: the fetch wait of the consumer connected now (tight under traffic, long when idle)
        self.pacer: FetchPacer | None = None
        #: Records fully dealt with (handled, duplicate, skipped or dead-lettered).
        self.processed = 0
        self.dead_lettered = 0

    def expect_records(self) -> None:
        """Records are due soon (this process just asked for them): fetch with the tight wait
        again rather than the idle one (see :class:`.kafka.FetchPacer`)."""
        if self.pacer is not None:
            self.pacer.tighten()

    def register(self, event_type: str, handler: Handler) -> None:
        async def ignoring_topic(session: AsyncSession, event: CloudEvent, _topic: str) -> None:
            await handler(session, event)

        self.register_with_topic(event_type, ignoring_topic)

    def register_with_topic(self, event_type: str, handler: TopicHandler) -> None:
        """Like :meth:`register`, for a handler that also takes the record's topic."""
        if event_type in self._handlers or event_type in self._claiming:
            msg = f"a handler for {event_type!r} is already registered"
            raise ValueError(msg)
        self._handlers[event_type] = handler

    def register_claiming(self, event_type: str, handler: ClaimingHandler) -> None:
        """Like :meth:`register_with_topic`, for a handler that claims the record's inbox row
        in its own first statement (see :class:`InboxClaim`); its unit of work is sent by the
        driver (:class:`~panjereh.common.db.DirectUnit`)."""
        if event_type in self._handlers or event_type in self._claiming:
            msg = f"a handler for {event_type!r} is already registered"
            raise ValueError(msg)
        self._claiming[event_type] = handler

    def handles(self, event_type: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(event_type, handler)
            return handler

        return decorate

    async def start(self) -> None:
        """Start consuming in the background (call from a lifespan)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name=f"consumer-{self.name}")

    async def stop(self, grace: float = 30.0) -> None:
        """Finish the record in hand, commit it, leave the group. Cancelled after ``grace`` s.

        A record in hand that waits for the database is left uncommitted instead."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnects with capped backoff while the broker is down."""
        backoff = self._retry_backoff
        while not self._stopping.is_set():
            try:
                await self._connect()
                backoff = self._retry_backoff
                await self._consume()
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except Exception as exc:
                logger.warning(
                    "consumer failed; reconnecting",
                    extra={"consumer": self.name, "error": repr(exc)},
                )
                await self._disconnect()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, self._reconnect_backoff_max)
        await self._disconnect()

    async def _connect(self) -> None:
        consumer = self._consumer_factory(self.topics, self.name)
        self._handled = {}
        consumer.subscribe(
            list(self.topics), listener=_DrainOnRevoke(self._record_lock, self._commit_handled)
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def _disconnect(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()  # leaves the group: partitions move on at once
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        pacer = self.pacer = FetchPacer(consumer, idle_ms=self._idle_fetch_wait_ms)
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=pacer.poll_timeout_ms, max_records=100)
            pacer.observe(got_records=bool(batches))
            if batches:
                await self._measure_lag(consumer)
            try:
                for tp, records in batches.items():
                    for record in records:
                        if self._stopping.is_set():
                            return
                        async with self._record_lock:
                            # after a rebalance the partition may belong to another member now
                            if tp not in consumer.assignment():
                                break
                            await self._process(record)
                            self._handled[tp] = OffsetAndMetadata(record.offset + 1, "")
                        self.processed += 1
            except _LeftForLater:
                return  # stopping while the database is away
            finally:
                # one offset commit per fetched batch (a request to Kafka and its wait), not
                # one per record; a record handled and not committed (a crash in between) comes
                # back, and the inbox makes its second delivery a no-op
                async with self._record_lock:
                    await self._commit_handled()

    async def _commit_handled(self) -> None:
        """Commit the offsets of the records handled since the last commit."""
        handled, self._handled = self._handled, {}
        consumer = self._consumer
        if not handled or consumer is None:
            return
        try:
            await consumer.commit(handled)
        except KafkaError as exc:
            # the records come back to whichever member owns their partitions: no-ops there
            logger.warning(
                "consumer could not commit its offsets",
                extra={"consumer": self.name, "error": repr(exc)},
            )

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Records still to read per topic: the partitions' high watermarks minus positions.

        Both are known locally after a fetch (no request to the broker); partitions not
        fetched yet are left out rather than guessed.
        """
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
        for topic, value in lag.items():
            CONSUMER_LAG.labels(self.name, topic).set(value)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = CloudEvent.from_bytes(record.value)
        except ValueError as exc:
            # A record that is not a CloudEvent will never become one: no point retrying.
            await self._dead_letter(record, exc, attempts=1)
            return
        context = extract_trace_context(record.headers)
        with tracer.start_as_current_span(
            f"{record.topic} process",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": event.id,
                "cloudevents.event_type": event.type,
            },
        ):
            attempt = 0
            outage_wait = self._retry_backoff
            while True:
                try:
                    await self._handle_once(record, event)
                except Exception as exc:
                    if database_unavailable(exc):
                        # Not the event's fault, and not one of its attempts: a restart cuts
                        # every connection and is over in well under a second, faster than the
                        # attempts' backoff. The record waits for the database, in hand.
                        logger.warning(
                            "database unavailable; the record waits for it",
                            extra={
                                "consumer": self.name,
                                "event_id": event.id,
                                "retry_in_seconds": outage_wait,
                            },
                        )
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopping.wait(), timeout=outage_wait)
                        if self._stopping.is_set():
                            raise _LeftForLater from exc  # uncommitted: comes back
                        outage_wait = min(outage_wait * 2, self._reconnect_backoff_max)
                        continue
                    attempt += 1
                    logger.warning(
                        "event handler failed",
                        extra={
                            "consumer": self.name,
                            "event_id": event.id,
                            "event_type": event.type,
                            "attempt": attempt,
                            "error": repr(exc),
                        },
                    )
                    if attempt >= self._max_attempts:
                        # An outage the error did not name is not the event's fault either:
                        # raise (the record stays uncommitted and comes back after
                        # reconnecting) instead of parking every event met while it lasts.
                        await self._database.ping()
                        await self._dead_letter(record, exc, attempts=attempt)
                        return
                    await asyncio.sleep(self._retry_backoff * 2 ** (attempt - 1))
                else:
                    return

    async def _handle_once(self, record: ConsumerRecord[bytes, bytes], event: CloudEvent) -> None:
        values = {"consumer": self.name, "event_id": event.id, "topic": record.topic}
        claiming = self._claiming.get(event.type)
        if claiming is not None:
            try:
                await self._handle_claiming(claiming, record, event, values)
            except _Duplicate:
                self._duplicate(record, event)
            return
        async with self._database.transaction() as session:
            claimed = await session.execute(self._claim_event, values)
            if claimed.first() is None:
                self._duplicate(record, event)
                return
            handler = self._handlers.get(event.type)
            if handler is None:
                logger.info(
                    "event type not handled here; skipped",
                    extra={"consumer": self.name, "event_type": event.type},
                )
                CONSUMER_RECORDS.labels(self.name, record.topic, "skipped").inc()
                return
            await handler(session, event, record.topic)
        CONSUMER_RECORDS.labels(self.name, record.topic, "handled").inc()

    async def _handle_claiming(
        self,
        handler: ClaimingHandler,
        record: ConsumerRecord[bytes, bytes],
        event: CloudEvent,
        values: dict[str, Any],
    ) -> None:
        """One unit of work in which ``handler`` claims the inbox row itself (or, if it did
        not, the consumer does after it); a duplicate is rolled back whole."""
        async with self._database.direct() as unit:
            claim = InboxClaim(statement=self._claim_event, values=values)
            await handler(unit, event, record.topic, claim)
            if claim.taken is None:
                claim.taken = await unit.fetchrow(self._claim_event, values) is not None
            if not claim.taken:
                raise _Duplicate
        CONSUMER_RECORDS.labels(self.name, record.topic, "handled").inc()

    def _duplicate(self, record: ConsumerRecord[bytes, bytes], event: CloudEvent) -> None:
        logger.info("duplicate event ignored", extra={"consumer": self.name, "event_id": event.id})
        CONSUMER_RECORDS.labels(self.name, record.topic, "duplicate").inc()

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int
    ) -> None:
        """Park the record, unchanged, on ``<topic>.dlq`` with why and where it came from."""
        if self._producer is None:
            producer = self._producer_factory()
            await producer.start()
            self._producer = producer
        detail = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        topic_h, partition_h, offset_h = DLQ_ORIGIN_HEADERS
        headers = [
            *(record.headers or ()),
            (DLQ_ERROR_HEADER, detail.encode()),
            (topic_h, record.topic.encode()),
            (partition_h, str(record.partition).encode()),
            (offset_h, str(record.offset).encode()),
            (DLQ_ATTEMPTS_HEADER, str(attempts).encode()),
        ]
        await self._producer.send_and_wait(
            f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers
        )
        self.dead_lettered += 1
        CONSUMER_RECORDS.labels(self.name, record.topic, "dead_lettered").inc()
        logger.error(
            "event dead-lettered",
            extra={
                "consumer": self.name,
                "topic": record.topic,
                "offset": record.offset,
                "attempts": attempts,
                "error": type(error).__name__,
            },
        )
