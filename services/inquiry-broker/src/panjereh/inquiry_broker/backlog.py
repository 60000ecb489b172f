"""What Kafka says about an agency's topics before one of its inquiries is timed out.

An inquiry that went out on Kafka and is still pending at its deadline was either not
delivered (the agency is down, or behind) or delivered and not answered. Only the second is a
time-out: the first waits until the agency returns, so that a citizen's request finishes then
instead of failing. And an answer the agency did send may be waiting, not yet consumed, on its
replies topic (a broker replica was down past the deadline): it is consumed first. So, before
timing out, the sweeper asks Kafka two questions per agency, outside any transaction:

- has the agency's consumer group (``agency-<code>``, the agency SDK's) read the partition of
  ``agency.<code>.inquiries`` the inquiry went to? A committed offset behind the partition's
  end means it has not (the broker's producer places an inquiry by its key, the inquiry id,
  with Kafka's default partitioner);
- has the broker's replies group read ``agency.<code>.replies`` to its end?

One look per agency with expired inquiries per sweep, bounded by ``timeout``. What Kafka does
not answer counts as "not read, not consumed": while Kafka is unreachable nothing is delivered
either. The look needs ``Describe`` on the agencies' groups and topics (the broker's KafkaUser).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from panjereh.common.messaging.kafka import connection_options
from panjereh.common.settings import ServiceSettings
from panjereh.contracts.topics import agency_inquiries, agency_replies

logger = logging.getLogger(__name__)

#: How often a failed look at one agency's topics is logged (it is retried every sweep).
_WARN_EVERY_SECONDS = 60.0


def agency_group(agency: str) -> str:
    """The consumer group an agency reads its inquiries in (the agency SDK's)."""
    return f"agency-{agency}"


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client) gives ``key``."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class AgencyBacklog:
    """One agency's topics as one look saw them."""

    #: how many partitions ``agency.<code>.inquiries`` has (0: unknown)
    inquiry_partitions: int
    #: its partitions the agency's group has not read to the end
    unread_partitions: frozenset[int]
    #: since when the broker's replies group has been seen behind on ``agency.<code>.replies``
    #: (``None``: it had consumed everything)
    replies_pending_since: datetime | None

    def unread(self, inquiry_id: uuid.UUID) -> bool:
        """Whether the agency has not read (every copy of) this inquiry yet."""
        if self.inquiry_partitions <= 0:
            return True
        return partition_of(str(inquiry_id), self.inquiry_partitions) in self.unread_partitions

    @classmethod
    def unknown(cls, since: datetime) -> AgencyBacklog:
        """Kafka did not answer: nothing counts as read or consumed."""
        return cls(inquiry_partitions=0, unread_partitions=frozenset(), replies_pending_since=since)


def _behind(committed: dict[Any, Any], ends: dict[Any, int]) -> set[int]:
    """Partitions whose committed offset (``-1``: none) is behind their end."""
    behind = set()
    for partition, end in ends.items():
        meta = committed.get(partition)
        offset = meta.offset if meta is not None else -1
        if max(offset, 0) < end:
            behind.add(partition.partition)
    return behind


class KafkaBacklog:
    """Looks at agencies' topics for the sweeper (a long-lived admin client and an offsets-only
    consumer, connected at the first look: Kafka may be down when the broker starts)."""

    def __init__(
        self, settings: ServiceSettings, *, replies_group: str, timeout: float = 3.0
    ) -> None:
        self._options = connection_options(settings)
        self._client_id = f"{settings.service_name}-backlog"
        self._replies_group = replies_group
        self._timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._pending_since: dict[str, datetime] = {}
        self._warned_at: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to open yet (see the class)."""

    async def stop(self) -> None:
        await self._close()

    async def of(self, agencies: Iterable[str]) -> dict[str, AgencyBacklog]:
        """Each agency's backlog, one look each (one at a time: the clients are shared)."""
        async with self._lock:
            return {agency: await self._agency(agency) for agency in sorted(set(agencies))}

    async def _agency(self, agency: str) -> AgencyBacklog:
        now = datetime.now(UTC)
        try:
            async with asyncio.timeout(self._timeout):
                unread, partitions, replies_behind = await self._look(agency)
        except Exception as exc:  # any failure to look: count nothing as read
            self._warn(agency, exc)
            await self._close()  # reconnect at the next look
            return AgencyBacklog.unknown(self._pending_since.setdefault(agency, now))
        since: datetime | None = None
        if replies_behind:
            since = self._pending_since.setdefault(agency, now)
        else:
            self._pending_since.pop(agency, None)
        return AgencyBacklog(
            inquiry_partitions=partitions,
            unread_partitions=frozenset(unread),
            replies_pending_since=since,
        )

    async def _look(self, agency: str) -> tuple[set[int], int, bool]:
        admin, offsets = await self._clients()
        inquiries, replies = agency_inquiries(agency), agency_replies(agency)
        described = await admin.describe_topics([inquiries, replies])
        partitions = {
            topic["topic"]: [
                TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]
            ]
            for topic in described
            if not topic["error_code"] and topic["partitions"]
        }
        if inquiries not in partitions or replies not in partitions:
            msg = f"topics of {agency} not described"
            raise LookupError(msg)
        ends = await offsets.end_offsets([*partitions[inquiries], *partitions[replies]])
        read = await admin.list_consumer_group_offsets(
            agency_group(agency), partitions=partitions[inquiries]
        )
        consumed = await admin.list_consumer_group_offsets(
            self._replies_group, partitions=partitions[replies]
        )
        unread = _behind(read, {tp: ends[tp] for tp in partitions[inquiries]})
        replies_behind = _behind(consumed, {tp: ends[tp] for tp in partitions[replies]})
        return unread, len(partitions[inquiries]), bool(replies_behind)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            admin = AIOKafkaAdminClient(**self._options, client_id=self._client_id)
            offsets = AIOKafkaConsumer(
                **self._options, client_id=self._client_id, group_id=None, enable_auto_commit=False
            )
            self._admin, self._offsets = admin, offsets
            await admin.start()
            await offsets.start()
        return self._admin, self._offsets

    async def _close(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        closing = [
            *([offsets.stop] if offsets is not None else []),
            *([admin.close] if admin is not None else []),
        ]
        for close in closing:
            try:
                await close()
            except Exception:  # closing a broken client: nothing left to do
                logger.debug("closing a Kafka client failed", exc_info=True)

    def _warn(self, agency: str, exc: BaseException) -> None:
        last = self._warned_at.get(agency)
        if last is None or time.monotonic() - last >= _WARN_EVERY_SECONDS:
            self._warned_at[agency] = time.monotonic()
            logger.warning(
                "could not read an agency's Kafka offsets; its expired inquiries wait",
                extra={"agency": agency, "error": type(exc).__name__},
            )
