"""The transactional outbox: events are written with the business change, published later.

``add`` inserts a row in the caller's transaction, so the event exists if and only if the
change committed (no dual write). :class:`OutboxRelay` publishes committed rows and marks them
sent only after the broker acknowledged them: a crash in between republishes (at least once),
which the consumers' inbox absorbs.

Waking up: every ``add`` wakes the process's own relay once its transaction commits (the
relay binds its ``wake`` to the database's sessions), so a row written here is published at
once, not at the next poll. Rows no local commit announced (another process or replica wrote
them, a publish failed) are found by polling: every ``poll_interval`` (0.2 s) while there is
work, the wait doubling after each empty poll up to ``idle_poll_interval`` (5 s), so an idle
relay costs a probe of the partial index on unsent rows every 5 s (every local commit that adds
a row wakes it: the long idle wait only delays rows another process wrote). Polling works
identically for every replica and needs no dedicated LISTEN connection that could be silently
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
import weakref
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from sqlalchemy import (
    BigInteger,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    distinct,
    func,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.dml import Insert

from panjereh.common.db import Database, DirectUnit, RowByName, Unit, after_commit
from panjereh.common.messaging.envelope import CloudEvent, inject_trace_context, kafka_headers
from panjereh.common.metrics import (
    OUTBOX_FAILURES,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PENDING,
    OUTBOX_PUBLISHED,
)
from panjereh.contracts.events import Event

logger = logging.getLogger(__name__)
#: how often the relay refreshes the backlog gauges (one index-only query) while it publishes
#: or the last look saw unsent rows
MEASURE_EVERY_SECONDS = 10.0
#: how often while idle: nothing published since the last look, and that look saw none unsent
#: (a row another process leaves unsent is seen by the polls, which publish it, or fail to:
#: either way the gauges are refreshed at the busy pace again)
MEASURE_IDLE_EVERY_SECONDS = 60.0
tracer = trace.get_tracer(__name__)

#: Called with the ids of a batch after the broker acknowledged it and before it is marked
#: sent. Only tests use it, to kill the relay at the worst moment.
AfterAckHook = Callable[[Sequence[int]], Awaitable[None]]


async def add(
    session: Unit,
    event: Event,
    *,
    key: str,
    topic: str | None = None,
    table: Table | None = None,
    subject: str | None = None,
    source: str | None = None,
) -> uuid.UUID:
    """Write ``event`` to the outbox in the caller's transaction; returns the CloudEvent id.

    ``key`` is the aggregate id (the Kafka record key: events of one aggregate stay in order).
    ``topic`` overrides the contract's topic and is required for templated ones
    (``agency.{agency}.inquiries``). The outbox table is found on the session's mapped
    session unless given (see :func:`bind`). The session is never committed: the boundary
    commits. ``session`` may be a :class:`~panjereh.common.db.DirectUnit`.
    """
    added = row(session, event, key=key, topic=topic, table=table, subject=subject, source=source)
    if isinstance(session, DirectUnit):
        await session.fetch(insert_statement(added.table), added.values)
    else:
        await session.execute(insert_statement(added.table), added.values)
    return added.event_id


@dataclass(frozen=True)
class Row:
    """An outbox row of the caller's transaction, not inserted yet: for a caller that inserts
    it in a statement of its own, e.g. :func:`insert_statement` with the business change as a
    CTE (one round trip for both)."""

    table: Table
    #: the parameters of :func:`insert_statement`
    values: dict[str, Any]
    event_id: uuid.UUID


def row(
    session: Unit,
    event: Event,
    *,
    key: str,
    topic: str | None = None,
    table: Table | None = None,
    subject: str | None = None,
    source: str | None = None,
) -> Row:
    """What :func:`add` inserts, for the caller to insert in this unit of work (or not at all:
    then the relay is only woken for nothing). The arguments are :func:`add`'s."""
    resolved_topic = topic or type(event).topic
    if "{" in resolved_topic:
        msg = f"{type(event).__name__} has a templated topic; pass topic=... explicitly"
        raise ValueError(msg)
    if not key:
        msg = "an outbox event needs a key (the aggregate id)"
        raise ValueError(msg)
    outbox = table if table is not None else _outbox_table(session)
    wake = session.info.get(SESSION_WAKE_KEY)
    if wake is not None:
        after_commit(session, wake)  # the process's relay publishes it right after the commit
    envelope = CloudEvent.from_event(event, source=source, subject=subject or key)
    event_id = uuid.UUID(envelope.id)
    values = {
        "event_id": event_id,
        "topic": resolved_topic,
        "key": key,
        "event_type": envelope.type,
        "payload": envelope.to_json(),
        "headers": inject_trace_context(),
    }
    return Row(table=outbox, values=values, event_id=event_id)


#: The columns of an outbox row an event fills (:func:`row`'s values, named as the columns).
ADDED_COLUMNS = ("event_id", "topic", "key", "event_type", "payload", "headers")
_inserts: weakref.WeakKeyDictionary[Table, Insert] = weakref.WeakKeyDictionary()


def insert_statement(table: Table) -> Insert:
    """``add``'s INSERT into ``table`` (parameters: :attr:`Row.values`), built once: compiled
    once, prepared once per connection."""
    statement = _inserts.get(table)
    if statement is None:
        statement = table.insert().values(
            {name: bindparam(name, type_=table.c[name].type) for name in ADDED_COLUMNS}
        )
        _inserts[table] = statement
    return statement


#: ``session.info`` key under which ``add`` finds the service's outbox table.
SESSION_INFO_KEY = "panjereh.outbox_table"
#: ``session.info`` key of the callback that wakes the relay publishing that outbox.
SESSION_WAKE_KEY = "panjereh.outbox_wake"


def bind(database: Database, table: Table, *, wake: Callable[[], None] | None = None) -> None:
    """Make ``table`` the outbox of every session ``database`` opens from now on.

    Call once in the lifespan (``OutboxRelay`` does it for its own database and table, with
    its ``wake``, run after each commit that added a row); then ``add(session, event,
    key=...)`` needs no ``table=``. Scoped to the ``Database``, not the process, so several
    services can share a test process without guessing.
    """
    info = dict(database.sessions.kw.get("info") or {})
    info[SESSION_INFO_KEY] = table
    if wake is not None:
        info[SESSION_WAKE_KEY] = wake
    database.sessions.configure(info=info)


def _outbox_table(session: Unit) -> Table:
    table = session.info.get(SESSION_INFO_KEY)
    if not isinstance(table, Table):
        msg = "which outbox table? call outbox.bind(database, table) or pass table=..."
        raise LookupError(msg)
    return table


def claim_statement(table: Table, *, lock_space: int, batch_size: int) -> Select[Any]:
    """The relay's claim, in one statement: the unsent rows, in id order, of keys this
    transaction could lock (at most ``batch_size`` rows).

    A key belongs to one relay transaction at a time (a transaction-scoped advisory lock in
    ``lock_space``, released at commit), and a relay locks only rows of keys it holds: no
    other replica can publish a later row of a key while this one still has an earlier one,
    so per-key order holds across replicas. Keys are locked lazily, oldest first, skipping
    keys held elsewhere, and only as many as the oldest ``batch_size`` rows hold: a busy
    replica leaves the rest of the backlog to the others instead of locking every key it
    happened to scan.

    Laziness rests on the plan's shape: the keys of a window of the oldest unsent rows
    become one array (an init plan), ``unnest`` yields them in order, the try-lock is a
    filter on that function scan and ``LIMIT`` stops pulling once enough keys are held; the
    held keys are a ``MATERIALIZED`` CTE, computed once whatever plan the final select gets.

    The statement's snapshot is taken before its locks. A row another relay published and
    marked sent after that snapshot is still seen unsent here, but ``FOR UPDATE`` re-reads
    the row's committed version before returning it (READ COMMITTED) and drops it; a row
    inserted after the snapshot waits for the next claim, behind the rows of its key seen
    now.
    """
    unsent = table.c.sent_at.is_(None)
    window = (
        select(table.c.id, table.c.key)
        .where(unsent)
        .order_by(table.c.id)
        .limit(batch_size * 4)
        .subquery("outbox_window")
    )
    first_seen = (
        select(window.c.key, func.min(window.c.id).label("first_id"))
        .group_by(window.c.key)
        .subquery("window_keys")
    )
    keys_in_order = select(
        func.array_agg(aggregate_order_by(first_seen.c.key, first_seen.c.first_id))
    ).scalar_subquery()
    oldest = (
        select(table.c.key).where(unsent).order_by(table.c.id).limit(batch_size).subquery("oldest")
    )
    wanted = select(func.count(distinct(oldest.c.key))).scalar_subquery()
    candidate = (
        func.unnest(type_coerce(keys_in_order, ARRAY(Text)))
        .table_valued("key")
        .render_derived("candidate")
    )
    held = (
        select(candidate.c.key)
        .where(func.pg_try_advisory_xact_lock(lock_space, func.hashtext(candidate.c.key)))
        .limit(wanted)
        .cte("held_keys")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(table.c.id, table.c.topic, table.c.key, table.c.payload, table.c.headers)
        .where(unsent, table.c.key.in_(select(held.c.key)))
        .order_by(table.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=table)
    )


class OutboxRelay:
    """Publishes unsent outbox rows, in id order, and marks them sent after the broker's ack.

    Several replicas may run at once: each claims rows with ``FOR UPDATE SKIP LOCKED`` (no
    row is published by two relays concurrently) and only rows whose key it can take a
    transaction-scoped advisory lock on, so while one replica publishes a key's rows no other
    can overtake them with later ones: per-key order holds across replicas too. A replica
    that loses the race for a row re-checks it after the winner commits (READ COMMITTED
    re-evaluates locked rows) and sees it sent. While the broker is
    down the relay backs off exponentially (capped, with jitter) and resumes on its own.
    """

    def __init__(
        self,
        *,
        database: Database,
        table: Table,
        producer_factory: Callable[[], AIOKafkaProducer],
        batch_size: int = 100,
        poll_interval: float = 0.2,
        idle_poll_interval: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        after_ack: AfterAckHook | None = None,
    ) -> None:
        self._database = database
        self._table = table
        self._producer_factory = producer_factory
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._idle_poll_interval = max(idle_poll_interval, poll_interval)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._after_ack = after_ack
        # advisory locks are database-wide: one lock space per outbox table keeps services
        # sharing a database (tests, small deployments) from blocking each other's keys
        self._lock_space = zlib.crc32(f"{table.schema}.{table.name}".encode()) & 0x7FFFFFFF
        self._claim_statement = claim_statement(
            table, lock_space=self._lock_space, batch_size=batch_size
        )
        self._mark_sent = (
            update(table)
            .where(
                # the ids as an array built by a subquery: the plan never depends on how many
                # a batch has, so the server settles on one generic plan instead of planning
                # every mark anew (as it does for ``= ANY(:ids)``)
                table.c.id
                == any_(
                    func.array(
                        select(
                            func.unnest(bindparam("ids", type_=ARRAY(BigInteger)))
                        ).scalar_subquery()
                    )
                ),
                # the relay's commit does not wait for its WAL to reach the disk: a mark lost
                # in a server crash only publishes its rows again, which the consumers' inboxes
                # absorb (as after a relay that stops between the ack and the mark); WAL is
                # written in order, so what a crash loses is a key's latest marks, never an
                # earlier one. One fsync less per relay transaction, in the same statement.
                func.set_config("synchronous_commit", "off", True).is_not(None),
            )
            .values(sent_at=func.now())
        )
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0
        #: polls that found nothing to publish, for tests and the idle-cost accounting
        self.empty_polls = 0
        bind(database, table, wake=self.wake)

    async def start(self) -> None:
        """Start publishing in the background (call from a lifespan)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the batch in flight finish (up to ``grace`` s), then stop.

        A batch cut short stays unsent and is published again later: at least once, never
        lost.
        """
        self._stopping.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=grace)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_producer()

    def wake(self) -> None:
        """Publish without waiting for the next poll (e.g. right after a commit)."""
        self._wakeup.set()

    async def run(self) -> None:
        """The relay loop; runs until :meth:`stop` (or cancellation)."""
        backoff = self._backoff_initial
        interval = self._poll_interval
        measured_at = 0.0
        measure_every = MEASURE_EVERY_SECONDS
        try:
            while not self._stopping.is_set():
                if time.monotonic() - measured_at >= measure_every:
                    measured_at = time.monotonic()
                    pending = 1  # unknown: measured again at the busy pace
                    with contextlib.suppress(Exception):  # a metric must never stop the relay
                        pending = await self.measure()
                    measure_every = (
                        MEASURE_IDLE_EVERY_SECONDS if pending == 0 else MEASURE_EVERY_SECONDS
                    )
                try:
                    published = await self.publish_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    measure_every = MEASURE_EVERY_SECONDS
                    await self._close_producer()
                    delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter only
                    logger.warning(
                        "outbox relay: publishing failed; retrying",
                        extra={"error": repr(exc), "retry_in_seconds": round(delay, 2)},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                backoff = self._backoff_initial
                if published == 0:
                    # nothing unsent: wait longer each time, until a local commit wakes us
                    self.empty_polls += 1
                    interval = min(interval * 2, self._idle_poll_interval)
                else:
                    interval = self._poll_interval
                    measure_every = MEASURE_EVERY_SECONDS
                if published < self._batch_size:
                    await self._wait_for_work(interval)
        finally:
            await self._close_producer()

    async def publish_once(self) -> int:
        """Claim, publish and mark one batch; returns how many rows were published.

        The one place the platform talks to the network with a transaction open, on purpose:
        the claim's row locks and per-key advisory locks are what keep one key's events in
        order across relay replicas until the broker has acknowledged them. A session-level
        lock held outside a transaction would do the same but breaks behind a
        transaction-mode pooler. The locks cover only outbox rows no request writes to, and
        the producer's request timeout bounds how long they are held.
        """
        producer = await self._ensure_producer()
        # the claim and the mark are sent by the driver (Database.direct): the relay's
        # transaction is two statements, run for every batch and every empty poll
        async with self._database.direct() as unit:
            rows = await unit.fetch(self._claim_statement)
            if not rows:
                return 0
            ids = [row["id"] for row in rows]
            try:
                await self._publish(producer, rows)
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
                if self._after_ack is not None:
                    await self._after_ack(ids)
                await unit.fetch(self._mark_sent, {"ids": ids})
        if failure is not None:
            OUTBOX_FAILURES.inc()
            await self._record_failure(ids, failure)
            raise failure
        for row in rows:
            OUTBOX_PUBLISHED.labels(row["topic"]).inc()
        self.published += len(ids)
        return len(ids)

    async def measure(self) -> int:
        """Set the backlog gauges: unpublished events and the oldest one's age (index-only);
        returns how many are unpublished."""
        outbox = self._table
        async with self._database.transaction() as session:
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.coalesce(
                            func.extract("epoch", func.now() - func.min(outbox.c.created_at)), 0
                        ),
                    ).where(outbox.c.sent_at.is_(None))
                )
            ).one()
        OUTBOX_PENDING.set(int(row[0]))
        OUTBOX_OLDEST_AGE.set(float(row[1]))
        return int(row[0])

    async def _publish(self, producer: AIOKafkaProducer, rows: Sequence[RowByName]) -> None:
        with tracer.start_as_current_span(
            "outbox publish", kind=trace.SpanKind.PRODUCER, attributes={"batch.size": len(rows)}
        ):
            pending = [
                await producer.send(
                    row["topic"],
                    value=_encode(row["payload"]),
                    key=row["key"].encode(),
                    headers=kafka_headers(row["headers"] or {}),
                )
                for row in rows
            ]
            # Only acknowledged records may be marked sent: wait for every one.
            await asyncio.gather(*pending)

    async def _record_failure(self, ids: Sequence[int], error: Exception) -> None:
        """Count the failed try on the rows (operators see stuck events), best effort."""
        outbox = self._table
        try:
            async with self._database.transaction() as session:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids), outbox.c.sent_at.is_(None))
                    .values(attempts=outbox.c.attempts + 1, last_error=repr(error)[:2000])
                )
        except Exception:
            logger.exception("outbox relay: could not record a failed publish")

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _wait_for_work(self, interval: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=interval)
        self._wakeup.clear()


def _encode(payload: Any) -> bytes:
    return CloudEvent.model_validate(payload).to_bytes()
