"""Waking a caller that waits for an answer (or a purpose), whichever replica received it.

Every replica consumes the agencies' replies topics in one consumer group, so each reply is handled
once, by some replica, which stores the answer and runs ``NOTIFY inquiry_answered, '<id>'`` in
the same transaction. Every replica holds one ``LISTEN`` connection; a notification wakes the
local callers waiting on that id, who then read the answer from PostgreSQL. Notifications
can be lost (the listening connection drops and reconnects), so a waiter also re-reads the
inquiry every ``poll_interval``: the notification makes it fast, the poll makes it certain.

The same connection listens on ``live_purpose_recorded``: the purposes consumer NOTIFYs the
tracking code of each request it records, waking a caller that asked for it a moment before
the broker heard of it (see :meth:`AnswerListener.wait_for_purpose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from panjereh.inquiry_broker.repository import ANSWERED_CHANNEL, PURPOSE_CHANNEL

logger = logging.getLogger(__name__)

#: The channels listened on; a waiter waits for one payload on one of them.
_CHANNELS = (ANSWERED_CHANNEL, PURPOSE_CHANNEL)


class AnswerListener:
    """One LISTEN connection per process, fanning notifications out to local waiters."""

    def __init__(self, dsn: str, *, poll_interval: float = 1.0) -> None:
        self._dsn = dsn
        self.poll_interval = poll_interval
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._connection: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        #: Successful (re)connections so far, for observability.
        self.connects = 0

    async def start(self) -> None:
        """Listen in the background; until connected, waiters rely on polling alone."""
        self._lost.set()
        self._task = asyncio.create_task(self._keep_connected(), name="answer-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def wait(
        self, inquiry_id: str, *, seconds: float, is_final: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait up to ``seconds`` until ``is_final()``; returns its last value."""
        return await self._wait(
            (ANSWERED_CHANNEL, inquiry_id), seconds, is_final, self.poll_interval
        )

    async def wait_for_purpose(
        self,
        tracking_code: str,
        *,
        seconds: float,
        is_known: Callable[[], Awaitable[bool]],
        poll_interval: float,
    ) -> bool:
        """Wait up to ``seconds`` until ``is_known()``, woken by the purpose's NOTIFY."""
        return await self._wait((PURPOSE_CHANNEL, tracking_code), seconds, is_known, poll_interval)

    async def _wait(
        self,
        key: tuple[str, str],
        seconds: float,
        done: Callable[[], Awaitable[bool]],
        poll_interval: float,
    ) -> bool:
        woken = asyncio.Event()
        self._waiters[key].add(woken)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            # registered before the first look: a commit in between still wakes us
            while True:
                if await done():
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=min(remaining, poll_interval))
                woken.clear()
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[key]

    def _on_notification(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for woken in self._waiters.get((channel, payload), ()):
            woken.set()

    def _on_termination(self, _connection: Any) -> None:
        self._lost.set()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        for channel in _CHANNELS:
            await connection.add_listener(channel, self._on_notification)
        connection.add_termination_listener(self._on_termination)
        self._connection = connection
        self._lost.clear()
        self.connects += 1

    async def _keep_connected(self) -> None:
        first = True
        while True:
            await self._lost.wait()
            if not first:
                logger.warning("answer listener lost its connection; reconnecting")
            first = False
            await self._close()
            while True:
                try:
                    await self._connect()
                    break
                except Exception:
                    await asyncio.sleep(1.0)
            # anything announced meanwhile is found by the waiters' polling
            for waiters in self._waiters.values():
                for woken in waiters:
                    woken.set()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def libpq_dsn(sqlalchemy_url: str) -> str:
    """asyncpg's form of a ``postgresql+asyncpg://`` URL."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
