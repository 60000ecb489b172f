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

Two refinements keep a wait cheap. When the answer is recorded by this very process (one
replica, or the replica whose consumer got the reply), the recorder hands the answer to the
local waiters right after its commit (:meth:`AnswerListener.handover`): no re-read at all, even
when the answer's own NOTIFY reaches the listener before that commit returns. And
a caller that has just asked (its inquiry was pending when it committed) need not look before
waiting: it is registered before its task yields, so no answer can be announced unseen.

The LISTEN connection may be a direct (session-mode) connection of its own
(``listen_database_url``): behind a transaction-mode pooler LISTEN silently hears nothing.
Each time it connects, the listener sends a probe NOTIFY the way every answer's NOTIFY goes
(through the service's pooled database) and counts itself listening only once that probe
arrived; readiness reports exactly that (:meth:`AnswerListener.check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from panjereh.inquiry_broker.repository import ANSWERED_CHANNEL, PURPOSE_CHANNEL

logger = logging.getLogger(__name__)

#: The channel of the listener's own probe (payload: a nonce of this connection).
PROBE_CHANNEL = "inquiry_broker_listener_probe"
#: The channels listened on; a waiter waits for one payload on one of them.
_CHANNELS = (ANSWERED_CHANNEL, PURPOSE_CHANNEL, PROBE_CHANNEL)

#: How long a NOTIFY of an answer this process is committing waits for its hand-over before it
#: wakes the waiters anyway (the hand-over normally follows within a millisecond).
HANDOVER_GRACE = 0.05

#: Sends ``NOTIFY channel, payload`` the way the service's own NOTIFYs go.
Notify = Callable[[str, str], Awaitable[None]]


class ListenerNotListening(RuntimeError):
    """Readiness: the LISTEN connection is down, or its probe notification never arrived."""


class _Waiter:
    """One waiting caller: woken by a notification, or handed the answer in-process."""

    __slots__ = ("delivered", "woken")

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.delivered: Any = None


class AnswerListener:
    """One LISTEN connection per process, fanning notifications out to local waiters.

    ``notify`` sends the probe NOTIFY on each (re)connection: pass the path the service's
    answers take (its pooled database). Without it the probe goes through a connection of
    its own to ``dsn``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        poll_interval: float = 1.0,
        notify: Notify | None = None,
        probe_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.poll_interval = poll_interval
        self._notify = notify or self._notify_directly
        self._probe_timeout = probe_timeout
        self._waiters: dict[tuple[str, str], set[_Waiter]] = defaultdict(set)
        #: answers this process is committing, to be handed over (see :meth:`handover`)
        self._handing_over: set[tuple[str, str]] = set()
        self._connection: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._probe: tuple[str, asyncio.Event] | None = None
        self._confirmed = False
        #: Successful (re)connections so far, for observability.
        self.connects = 0
        #: Answers handed to local waiters without a re-read, for tests and metrics.
        self.delivered = 0

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
        """Connected, and this connection's probe notification arrived."""
        return self._confirmed and self._connection is not None and not self._connection.is_closed()

    async def check(self) -> None:
        """Readiness: raise unless notifications really arrive (see :attr:`listening`)."""
        if not self.listening:
            raise ListenerNotListening("the answer listener hears no notifications")

    async def wait(
        self,
        inquiry_id: str,
        *,
        seconds: float,
        is_final: Callable[[], Awaitable[bool]],
        accept: Callable[[Any], bool] | None = None,
        look_first: bool = True,
    ) -> bool:
        """Wait up to ``seconds`` until ``is_final()``; returns its last value.

        ``accept`` takes what :meth:`deliver` handed over for this inquiry and says whether
        it is final (then ``is_final`` is not called). ``look_first=False`` skips the first
        ``is_final()``: only for a caller that saw the inquiry pending in a transaction it
        committed without yielding since (see the module's docstring).
        """
        return await self._wait(
            (ANSWERED_CHANNEL, inquiry_id),
            seconds,
            is_final,
            self.poll_interval,
            accept=accept,
            look_first=look_first,
        )

    def handover(self, inquiry_id: str, answer: Any) -> Callable[[], None]:
        """Called by a unit of work of this process that records ``answer`` (before its
        commit); returns what hands it to the local waiters once committed.

        The answer's NOTIFY may reach the listener before the commit returns here: while a
        hand-over is announced, a NOTIFY of that inquiry wakes its waiters only
        :data:`HANDOVER_GRACE` seconds later, so they take the answer handed over instead of
        reading it again. Should the unit of work roll back (another replica answered first),
        that late wake is what they get.
        """
        key = (ANSWERED_CHANNEL, inquiry_id)
        if key in self._waiters:
            self._handing_over.add(key)
        return lambda: self.deliver(inquiry_id, answer)

    def deliver(self, inquiry_id: str, answer: Any) -> None:
        """Hand ``answer`` (just committed by this process) to the local waiters of the inquiry."""
        key = (ANSWERED_CHANNEL, inquiry_id)
        self._handing_over.discard(key)
        for waiter in self._waiters.get(key, ()):
            waiter.delivered = answer
            waiter.woken.set()
            self.delivered += 1

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
        *,
        accept: Callable[[Any], bool] | None = None,
        look_first: bool = True,
    ) -> bool:
        waiter = _Waiter()
        self._waiters[key].add(waiter)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        look = look_first
        try:
            # registered before the first look: a commit in between still wakes us
            while True:
                delivered, waiter.delivered = waiter.delivered, None
                if delivered is not None and accept is not None and accept(delivered):
                    return True
                if look and await done():
                    return True
                look = True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        waiter.woken.wait(), timeout=min(remaining, poll_interval)
                    )
                waiter.woken.clear()
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]
                    self._handing_over.discard(key)

    def _on_notification(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        probe = self._probe
        if channel == PROBE_CHANNEL:
            if probe is not None and payload == probe[0]:
                probe[1].set()
            return
        key = (channel, payload)
        if key in self._handing_over:
            # this process is committing that answer: its hand-over is due at once
            asyncio.get_running_loop().call_later(HANDOVER_GRACE, self._wake, key)
            return
        self._wake(key)

    def _wake(self, key: tuple[str, str]) -> None:
        self._handing_over.discard(key)
        for waiter in self._waiters.get(key, ()):
            waiter.woken.set()

    def _on_termination(self, _connection: Any) -> None:
        self._lost.set()

    async def _connect(self) -> None:
        self._confirmed = False
        connection = await asyncpg.connect(self._dsn)
        try:
            for channel in _CHANNELS:
                await connection.add_listener(channel, self._on_notification)
            connection.add_termination_listener(self._on_termination)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection = connection
        self._lost.clear()
        self.connects += 1

    async def _confirm(self) -> bool:
        """Send a probe NOTIFY the service's way; whether it arrived on this connection."""
        arrived = asyncio.Event()
        self._probe = (secrets.token_hex(8), arrived)
        try:
            await self._notify(PROBE_CHANNEL, self._probe[0])
            await asyncio.wait_for(arrived.wait(), timeout=self._probe_timeout)
        except Exception as exc:
            logger.warning(
                "answer listener: its probe notification did not arrive",
                extra={"error": type(exc).__name__},
            )
            return False
        finally:
            self._probe = None
        return True

    async def _notify_directly(self, channel: str, payload: str) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            await connection.execute("SELECT pg_notify($1, $2)", channel, payload)
        finally:
            await connection.close()

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
                for waiter in waiters:
                    waiter.woken.set()
            # a connection that hears no probe (e.g. behind a transaction pooler) is dropped
            # and opened again: readiness says "not listening" meanwhile
            self._confirmed = await self._confirm()
            if not self._confirmed:
                await asyncio.sleep(1.0)
                self._lost.set()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def libpq_dsn(sqlalchemy_url: str) -> str:
    """asyncpg's form of a ``postgresql+asyncpg://`` URL."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
