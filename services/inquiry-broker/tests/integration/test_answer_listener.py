"""The LISTEN connection that wakes waiting callers: survives losing its connection, may be a
direct connection of its own, and is ready only when notifications really reach it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.inquiry_broker.repository import ANSWERED_CHANNEL, send_notification
from panjereh.inquiry_broker.waiting import AnswerListener, ListenerNotListening, libpq_dsn

pytestmark = pytest.mark.integration


async def test_a_waiter_is_woken_by_notify_even_after_the_connection_was_killed(
    migrated_database: MigratedDatabase,
) -> None:
    dsn = libpq_dsn(await migrated_database("panjereh.inquiry_broker"))
    # a poll interval longer than the test: only a notification can wake the waiter in time
    listener = AnswerListener(dsn, poll_interval=60)
    await listener.start()
    admin = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(10):
            while listener.connects < 1:  # noqa: ASYNC110 - a background task's progress
                await asyncio.sleep(0.05)
        killed = await admin.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        assert killed
        async with asyncio.timeout(10):  # reconnects on its own
            while listener.connects < 2:  # noqa: ASYNC110 - a background task's progress
                await asyncio.sleep(0.05)

        answered = asyncio.Event()

        async def is_final() -> bool:
            return answered.is_set()

        started = time.monotonic()
        waiting = asyncio.create_task(listener.wait("inquiry-1", seconds=20, is_final=is_final))
        await asyncio.sleep(0.2)
        answered.set()
        await admin.execute("SELECT pg_notify($1, $2)", ANSWERED_CHANNEL, "inquiry-1")
        assert await waiting is True
        assert time.monotonic() - started < 5
    finally:
        await admin.close()
        await listener.stop()


async def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - a background task's progress
            await asyncio.sleep(0.05)


async def test_the_listen_url_is_used_and_a_pooled_notify_arrives_through_it(
    migrated_database: MigratedDatabase,
) -> None:
    url = await migrated_database("panjereh.inquiry_broker")
    pooled = Database(url, pool_size=2)
    # the listener's own connection (settings.listen_database_url), told apart by its name
    dsn = libpq_dsn(url)
    listen_dsn = f"{dsn}{'&' if '?' in dsn else '?'}application_name=broker-listen"

    async def notify(channel: str, payload: str) -> None:
        async with pooled.transaction() as session:
            await send_notification(session, channel, payload)

    listener = AnswerListener(listen_dsn, poll_interval=60, notify=notify)
    await listener.start()
    admin = await asyncpg.connect(libpq_dsn(url))
    try:
        # ready only once its probe, sent the pooled way, came back on its own connection
        await _wait_for(lambda: listener.listening)
        await listener.check()
        names = await admin.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
        )
        assert [row["application_name"] for row in names] == ["broker-listen"]

        started = time.monotonic()
        waiting = asyncio.create_task(
            listener.wait("inquiry-2", seconds=20, is_final=_final_once_woken())
        )
        await asyncio.sleep(0.2)
        await notify(ANSWERED_CHANNEL, "inquiry-2")  # as an answer's unit of work does
        assert await waiting is True
        assert time.monotonic() - started < 5
    finally:
        await admin.close()
        await listener.stop()
        await pooled.dispose()


def _final_once_woken() -> Callable[[], Awaitable[bool]]:
    """``is_final`` for a waiter: false on the first look, true once woken."""
    looks = 0

    async def is_final() -> bool:
        nonlocal looks
        looks += 1
        return looks > 1

    return is_final


async def test_a_listener_that_hears_no_probe_is_not_ready(
    migrated_database: MigratedDatabase,
) -> None:
    dsn = libpq_dsn(await migrated_database("panjereh.inquiry_broker"))

    async def lost(channel: str, payload: str) -> None:
        """A NOTIFY that never reaches the listener (as behind a transaction pooler)."""

    listener = AnswerListener(dsn, poll_interval=60, notify=lost, probe_timeout=0.3)
    await listener.start()
    try:
        await _wait_for(lambda: listener.connects >= 1)
        await asyncio.sleep(0.6)  # past the probe's timeout
        assert not listener.listening
        with pytest.raises(ListenerNotListening):
            await listener.check()
    finally:
        await listener.stop()


async def test_an_answer_handed_over_in_process_needs_no_read(
    migrated_database: MigratedDatabase,
) -> None:
    listener = AnswerListener(
        libpq_dsn(await migrated_database("panjereh.inquiry_broker")), poll_interval=60
    )
    await listener.start()
    reads = 0

    async def is_final() -> bool:
        nonlocal reads
        reads += 1
        return False

    try:
        await _wait_for(lambda: listener.listening)
        waiting = asyncio.create_task(
            listener.wait(
                "inquiry-3",
                seconds=20,
                is_final=is_final,
                accept=lambda answer: answer == "answered",
                look_first=False,
            )
        )
        await asyncio.sleep(0.1)
        listener.deliver("inquiry-3", "answered")
        assert await waiting is True
        assert reads == 0
        assert listener.delivered == 1
    finally:
        await listener.stop()


async def test_an_answer_whose_notify_beats_its_hand_over_needs_no_read(
    migrated_database: MigratedDatabase,
) -> None:
    """This process records the answer: PostgreSQL may deliver its NOTIFY to the listener
    before the recording unit of work's commit returns and hands the answer over. The waiter
    takes the hand-over rather than reading the inquiry again."""
    dsn = libpq_dsn(await migrated_database("panjereh.inquiry_broker"))
    listener = AnswerListener(dsn, poll_interval=60)
    await listener.start()
    admin = await asyncpg.connect(dsn)
    reads = 0

    async def is_final() -> bool:
        nonlocal reads
        reads += 1
        return True

    try:
        await _wait_for(lambda: listener.listening)
        waiting = asyncio.create_task(
            listener.wait(
                "inquiry-4",
                seconds=20,
                is_final=is_final,
                accept=lambda answer: answer == "answered",
                look_first=False,
            )
        )
        await asyncio.sleep(0.05)
        # the recorder, before its commit: the answer will be handed over once committed
        hand_over = listener.handover("inquiry-4", "answered")
        await admin.execute("SELECT pg_notify($1, $2)", ANSWERED_CHANNEL, "inquiry-4")
        await asyncio.sleep(0.02)  # the NOTIFY arrived; the commit's reply has not yet
        hand_over()
        assert await waiting is True
        assert reads == 0
        assert listener.delivered == 1
    finally:
        await admin.close()
        await listener.stop()


async def test_a_hand_over_that_never_comes_still_wakes_the_waiter(
    migrated_database: MigratedDatabase,
) -> None:
    """The recording unit of work announced a hand-over and then rolled back after another
    replica's answer was committed: the NOTIFY still wakes the waiter, a moment later."""
    dsn = libpq_dsn(await migrated_database("panjereh.inquiry_broker"))
    listener = AnswerListener(dsn, poll_interval=60)
    await listener.start()
    admin = await asyncpg.connect(dsn)
    reads = 0

    async def is_final() -> bool:  # the other replica's answer is committed
        nonlocal reads
        reads += 1
        return True

    try:
        await _wait_for(lambda: listener.listening)
        started = time.monotonic()
        waiting = asyncio.create_task(
            listener.wait("inquiry-5", seconds=20, is_final=is_final, look_first=False)
        )
        await asyncio.sleep(0.05)
        listener.handover("inquiry-5", "answered")  # never called: rolled back
        await admin.execute("SELECT pg_notify($1, $2)", ANSWERED_CHANNEL, "inquiry-5")
        assert await waiting is True
        assert time.monotonic() - started < 2
        assert reads == 1
    finally:
        await admin.close()
        await listener.stop()
