"""Several agencies on one host, against a real Kafka-protocol broker: one fetch for all,
each agency's reads committed in its own group, one slow agency holding up no other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from panjereh.agency_sdk import Agency, Inquiry, KafkaSettings
from panjereh.agency_sdk.host import AgencyHost
from panjereh.agency_sdk.messages import inquiries_topic, inquiry_requested_event, replies_topic
from panjereh.common.messaging.kafka import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 3  # create_topics' default: each agency's topic read on every partition


class Hosted:
    """Two agencies of a test's own, their topics, a producer and a replies reader."""

    def __init__(self, bootstrap: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.codes = [f"host-a-{suffix}", f"host-b-{suffix}"]
        self.kafka = KafkaSettings(
            bootstrap_servers=bootstrap, idempotence=False, fetch_max_wait_ms=25
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        self.replies = AIOKafkaConsumer(
            *(replies_topic(code) for code in self.codes),
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self.answered: dict[str, dict[str, Any]] = {}
        #: the inquiry id of every reply read, repeats included
        self.seen: list[str] = []

    async def __aenter__(self) -> Hosted:
        await create_topics(
            self.bootstrap,
            [
                topic
                for code in self.codes
                for topic in (inquiries_topic(code), replies_topic(code))
            ],
        )
        await self.producer.start()
        await self.replies.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.replies.stop()
        await self.producer.stop()

    def agencies(self, handlers: dict[str, Any]) -> list[Agency]:
        built = []
        for code in self.codes:
            agency = Agency(code, kafka=self.kafka)
            agency.handler(f"{code}.record")(handlers.get(code, echo))
            built.append(agency)
        return built

    async def ask(self, code: str, subject: str = "someone") -> str:
        inquiry_id = uuid.uuid4()
        await self.producer.send_and_wait(
            inquiries_topic(code),
            inquiry_requested_event(inquiry_id, f"{code}.record", subject),
            key=str(inquiry_id).encode(),
        )
        return str(inquiry_id)

    async def answers(self, *inquiry_ids: str, within: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while not set(inquiry_ids) <= set(self.answered):
                for records in (await self.replies.getmany(timeout_ms=200)).values():
                    for record in records:
                        data = json.loads(record.value)["data"]
                        self.answered[data["inquiry_id"]] = data
                        self.seen.append(data["inquiry_id"])
        return {inquiry_id: self.answered[inquiry_id] for inquiry_id in inquiry_ids}

    async def read_to_end(self, code: str) -> None:
        """Commit in ``code``'s group every inquiry its topic holds, as if it had read them."""
        group = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=f"agency-{code}", enable_auto_commit=False
        )
        await group.start()
        try:
            partitions = [TopicPartition(inquiries_topic(code), p) for p in range(PARTITIONS)]
            group.assign(partitions)
            await group.commit(await group.end_offsets(partitions))
        finally:
            await group.stop()

    async def committed(self, code: str) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                f"agency-{code}",
                partitions=[TopicPartition(inquiries_topic(code), p) for p in range(PARTITIONS)],
            )
        finally:
            await admin.close()
        return sum(max(meta.offset, 0) for meta in offsets.values())


async def echo(inquiry: Inquiry) -> dict[str, Any]:
    return {"echo": inquiry.subject}


async def test_a_host_answers_each_agency_from_its_groups_offsets_and_commits_there(
    kafka_bootstrap_servers: str,
) -> None:
    """And it is ready only once every group has assigned, no longer once stopped."""
    async with Hosted(kafka_bootstrap_servers) as hosted:
        a, b = hosted.codes
        # b's group has already read its first inquiry (an earlier run of the agency): a host
        # starts where each agency's group left off, a new group from the start of its topic
        earlier = await hosted.ask(b)
        await hosted.read_to_end(b)
        asked = [await hosted.ask(a), await hosted.ask(a), await hosted.ask(b)]
        agencies = hosted.agencies({})
        host = AgencyHost(agencies, kafka=hosted.kafka)
        running = asyncio.create_task(host.run())
        try:
            async with asyncio.timeout(20):
                await asyncio.gather(*(agency.connected.wait() for agency in agencies))
            # connected (clients started, topics subscribed), no group joined yet: a join
            # takes several round trips (seconds on the embedded broker), and nobody reads the
            # topics until then
            assert not any(agency.is_ready for agency in agencies)
            assert not host.ready
            async with asyncio.timeout(20):
                await asyncio.gather(*(agency.ready.wait() for agency in agencies))
            assert host.ready
            # joined: the host's one fetch reads every partition the groups gave its members
            assert {tp.topic for tp in host._held} == {agency.topic for agency in agencies}
            answers = await hosted.answers(*asked)
            assert {data["status"] for data in answers.values()} == {"ok"}
            assert await hosted.committed(a) == 2
            assert await hosted.committed(b) == 2
            await asyncio.sleep(0.5)  # time for an answer to the earlier one, had one been sent
            with contextlib.suppress(TimeoutError):
                await hosted.answers(str(uuid.uuid4()), within=0.5)  # read what came
            assert earlier not in hosted.seen
            assert sorted(hosted.seen) == sorted(asked), "an inquiry answered twice"
        finally:
            host.stop()
            await running
        # stopped: disconnected, and no longer joined (ready again only after a new join)
        assert not any(agency.connected.is_set() for agency in agencies)
        assert not any(agency.ready.is_set() for agency in agencies), "still ready once stopped"
        assert not host.ready


async def test_a_slow_agency_holds_up_no_other_agency_of_its_host(
    kafka_bootstrap_servers: str,
) -> None:
    release = asyncio.Event()

    async def slow(inquiry: Inquiry) -> dict[str, Any]:
        await release.wait()
        return {"echo": inquiry.subject}

    async with Hosted(kafka_bootstrap_servers) as hosted:
        a, b = hosted.codes
        host = AgencyHost(hosted.agencies({a: slow}), kafka=hosted.kafka)
        running = asyncio.create_task(host.run())
        try:
            stuck = await hosted.ask(a)
            await asyncio.sleep(0.3)  # a's batch is being answered
            quick = [await hosted.ask(b), await hosted.ask(b)]
            answers = await hosted.answers(*quick, within=10)
            assert {data["status"] for data in answers.values()} == {"ok"}
            assert stuck not in hosted.answered
            release.set()
            assert (await hosted.answers(stuck))[stuck]["status"] == "ok"
        finally:
            release.set()
            host.stop()
            await running
