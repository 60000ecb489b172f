"""Several agencies in one process, read with one Kafka fetch.

An :class:`~panjereh.agency_sdk.agency.Agency` run on its own holds a consumer of its own,
which fetches its topic on its own. A process that plays several agencies under one Kafka
identity (the simulated agencies: one KafkaUser that reads every simulated agency's topic and
commits in every one of their groups) would then hold as many fetches as agencies, and at idle
every fetch costs the broker CPU (about a millisecond each on the embedded Tansu, whatever its
wait): seven idle agencies made seven fetches per idle wait.

:class:`AgencyHost` keeps each agency's place in its own consumer group ``agency-<code>``,
exactly as an agency alone (the group assigns its partitions, shares them with any other
member and hands them over when a member fails; the broker reads the group's committed offsets
to tell "not read" from "read, not answered"), but those group members never fetch: one more
consumer, outside any group, fetches every partition the host's members hold, in one fetch.

- The fetch wait is shared: an inquiry to any agency tightens it for all of them, so the
  second inquiry of a login (the civil registry, right after the mobile registry) no longer
  meets an idle wait on a broker that does not answer a held fetch early.
- Offsets are committed in the agency's group when a batch is read, before it is answered, as
  an agency alone does; each agency answers its batches in turn (its partition is paused while
  one is answered), and a slow agency holds up no other.

The host is :attr:`~AgencyHost.ready` once every agency is connected and its group has
assigned its member here (an empty assignment too: the member has joined), not when its
clients have merely started: until then nobody reads the agency's topic. A stopped host is
no longer ready, and a host started again is ready only after its groups have assigned again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from panjereh.agency_sdk.agency import Agency, FetchPacing, KafkaSettings

logger = logging.getLogger(__name__)

#: The group members never fetch: their fetch routine has nothing to wake up for.
_MEMBER_TICK_MS = 60_000


class AgencyHost:
    """Answers the inquiries of every agency in ``agencies`` with one fetch and one producer.

    Each agency keeps its handlers, input schemas and events (``connected``: the host's
    clients started; ``ready``: its group has assigned since); the host's ``kafka`` settings
    (one identity for all) replace the agencies' own.
    """

    def __init__(
        self, agencies: Sequence[Agency], *, kafka: KafkaSettings, client_id: str = "agencies"
    ) -> None:
        codes = [agency.code for agency in agencies]
        if len(set(codes)) != len(codes):
            msg = "each agency at most once"
            raise ValueError(msg)
        self.agencies = list(agencies)
        self.kafka = kafka
        self.client_id = client_id
        self._by_topic = {agency.topic: agency for agency in self.agencies}
        self._stopping = asyncio.Event()
        self._answering: dict[TopicPartition, asyncio.Task[None]] = {}
        self._fetch: AIOKafkaConsumer | None = None
        self._members: dict[str, AIOKafkaConsumer] = {}
        #: the partitions the host's members hold, and the next offset to read in each
        self._held: dict[TopicPartition, int | None] = {}

    @property
    def ready(self) -> bool:
        """Every agency connected and its group joined (:attr:`Agency.is_ready`)."""
        return all(agency.is_ready for agency in self.agencies)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume and answer until :meth:`stop` is called (or the task is cancelled)."""
        options = self.kafka.client_options()
        fetch = AIOKafkaConsumer(
            **options,
            group_id=None,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms,
            # the fetch routine's safety tick, as for an agency alone (aiokafka's own: 200 ms)
            consumer_timeout_ms=1000,
        )
        self._fetch = fetch
        self._members = {
            agency.code: AIOKafkaConsumer(
                **options,
                group_id=f"agency-{agency.code}",
                client_id=f"agency-{agency.code}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                consumer_timeout_ms=_MEMBER_TICK_MS,
            )
            for agency in self.agencies
        }
        producer = AIOKafkaProducer(
            **options,
            client_id=self.client_id,
            enable_idempotence=self.kafka.idempotence,
            acks="all",
            linger_ms=0,
        )
        started: list[AIOKafkaConsumer | AIOKafkaProducer] = []
        for agency in self.agencies:
            agency.ready.clear()  # joined since this run connected, not in an earlier one
        try:
            for client in (producer, fetch, *self._members.values()):
                await client.start()
                started.append(client)
            fetch.assign([])
            for agency in self.agencies:
                member = self._members[agency.code]
                member.subscribe([agency.topic], listener=_Membership(self, agency, member))
                agency.connected.set()  # ready once its group has assigned (_Membership)
            await self._loop(fetch, producer)
        finally:
            for agency in self.agencies:
                agency.connected.clear()
            try:
                for task in list(self._answering.values()):
                    task.cancel()
                await asyncio.gather(*self._answering.values(), return_exceptions=True)
                for client in reversed(started):
                    await client.stop()
            finally:
                # after the members stopped: a join completing meanwhile sets no one ready again
                for agency in self.agencies:
                    agency.ready.clear()

    # ------------------------------------------------------------------ the members' partitions
    async def _hold(self, member: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """A member was given ``partitions``: fetch them from its group's committed offsets."""
        member.pause(*partitions)  # a member never fetches: the host's one fetch does
        for tp in partitions:
            self._held[tp] = await member.committed(tp)
        self._reassign()

    def _release(self, partitions: set[TopicPartition]) -> None:
        """A member gave ``partitions`` up (a rebalance, a stop): no longer fetched here."""
        for tp in partitions:
            self._held.pop(tp, None)
        self._reassign()

    def _reassign(self) -> None:
        fetch = self._fetch
        if fetch is None:
            return
        fetch.assign(list(self._held))
        for tp, offset in self._held.items():
            if offset is not None:
                fetch.seek(tp, offset)  # without one: from the start, as an agency alone
            if tp in self._answering:
                fetch.pause(tp)

    # ------------------------------------------------------------------ reading and answering
    async def _loop(self, fetch: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        pacing = FetchPacing(fetch, self.kafka)
        while not self._stopping.is_set():
            batches = await fetch.getmany(timeout_ms=pacing.poll_timeout_ms, max_records=500)
            pacing.observe(got_inquiries=bool(batches))
            read = [
                (tp, self._by_topic[tp.topic], records)
                for tp, records in batches.items()
                if tp in self._held
            ]
            for tp, _, records in read:
                fetch.pause(tp)  # this agency answers one batch at a time, as alone
                self._held[tp] = records[-1].offset + 1
            # read: committed before answering (see the agency module)
            committed = await asyncio.gather(
                *(self._commit(tp, agency, records[-1].offset + 1) for tp, agency, records in read)
            )
            for (tp, agency, records), mine in zip(read, committed, strict=True):
                if mine:
                    self._answering[tp] = asyncio.create_task(
                        self._answer(fetch, tp, agency, producer, records)
                    )
                elif tp in self._held:
                    # the group gave the partition back here: read the batch again
                    self._held[tp] = records[0].offset
                    fetch.seek(tp, records[0].offset)
                    fetch.resume(tp)

    async def _commit(self, tp: TopicPartition, agency: Agency, offset: int) -> bool:
        """Record ``agency`` read ``tp`` up to ``offset``; False when its group has given the
        partition to another member meanwhile (that member reads the batch and answers it)."""
        try:
            await self._members[agency.code].commit({tp: offset})
        except (CommitFailedError, IllegalStateError):
            logger.info("partition moved to another member", extra={"agency": agency.code})
            return False
        return True

    async def _answer(
        self,
        fetch: AIOKafkaConsumer,
        tp: TopicPartition,
        agency: Agency,
        producer: AIOKafkaProducer,
        records: list[Any],
    ) -> None:
        try:
            await agency.answer_records(producer, records)
        except Exception:
            # the replies of this batch may be lost: the broker resends what stays unanswered
            logger.exception("replies not sent", extra={"agency": agency.code})
        finally:
            self._answering.pop(tp, None)
            if tp in fetch.assignment():
                fetch.resume(tp)


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the host which partitions an agency's group gives its member here."""

    def __init__(self, host: AgencyHost, agency: Agency, member: AIOKafkaConsumer) -> None:
        self._host = host
        self._agency = agency
        self._member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._host._release(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """After every join, an empty assignment too: the member has joined its group."""
        await self._host._hold(self._member, set(assigned))
        self._agency.ready.set()
