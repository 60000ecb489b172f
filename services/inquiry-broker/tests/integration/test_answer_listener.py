"""The LISTEN connection that wakes waiting callers survives losing its connection."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.inquiry_broker.repository import ANSWERED_CHANNEL
from panjereh.inquiry_broker.waiting import AnswerListener, libpq_dsn

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
