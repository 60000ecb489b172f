"""What the simulated agencies cost the Kafka broker at idle, counted request by request.

The broker in front of the local stack (Tansu) spends about a millisecond of CPU on every
fetch, whatever its wait, and a little on every heartbeat: the simulators' idle cost is how
many of each they send. Counted through a proxy the clients are sent to by the broker's own
metadata, so every request of every client passes through it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from panjereh.agency_sdk import KafkaSettings
from panjereh.agency_sdk.messages import inquiry_requested_event
from panjereh.agency_simulators.__main__ import run
from panjereh.agency_simulators.agencies import AGENCIES, Faults
from panjereh.common.messaging.kafka import create_topics
from panjereh.devstack.embedded import EmbeddedKafka, free_port
from panjereh.devstack.kafka_requests import KafkaRequestCounter
from panjereh.devstack.stack import simulated_agency_topics

pytestmark = pytest.mark.integration

IDLE_WAIT_MS = 250
COUNTED_SECONDS = 2.0


@pytest.fixture
async def counted_kafka(tmp_path: Path) -> AsyncIterator[KafkaRequestCounter]:
    """A broker of its own whose clients all go through a counting proxy."""
    proxy_port = free_port()
    broker = EmbeddedKafka(free_port(), log_path=tmp_path / "kafka.log", advertised_port=proxy_port)
    await asyncio.to_thread(broker.start)
    counter = KafkaRequestCounter(proxy_port, broker.port)
    await counter.start()
    try:
        await create_topics(f"127.0.0.1:{proxy_port}", simulated_agency_topics(), partitions=1)
        yield counter
    finally:
        await counter.stop()
        await asyncio.to_thread(broker.stop)


def inquiry(agency_type: str, subject: str, params: dict[str, object]) -> tuple[str, bytes]:
    inquiry_id = str(uuid.uuid4())
    return inquiry_id, inquiry_requested_event(inquiry_id, agency_type, subject, params)


PARAMS: dict[str, dict[str, object]] = {"mobile-registry.ownership": {"mobile": "09121234567"}}


def agency_requests(counter: KafkaRequestCounter, api: str) -> int:
    """Requests of ``api`` the agencies' clients sent (their client ids: ``agency-...``)."""
    return sum(
        n
        for (name, client), n in counter.counts.items()
        if name == api and client.startswith("agency-")
    )


async def test_idle_simulated_agencies_share_one_fetch(
    counted_kafka: KafkaRequestCounter,
) -> None:
    """Seven idle agencies send one fetch per idle wait in all, not one each; yet each answers,
    and commits what it read in its own group ``agency-<code>``."""
    bootstrap = f"127.0.0.1:{counted_kafka.port}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        idempotence=False,
        fetch_max_wait_ms=25,
        idle_fetch_max_wait_ms=IDLE_WAIT_MS,
        quiet_after_seconds=0.5,
    )
    codes = sorted(AGENCIES)
    running = asyncio.create_task(run(codes, kafka=kafka, faults=Faults()))
    replies = AIOKafkaConsumer(
        *(f"agency.{code}.replies" for code in codes),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await replies.start()
    await producer.start()
    try:
        # every agency answers one inquiry: each is reading its topic
        asked = {}
        for code in codes:
            for name in AGENCIES[code]:
                inquiry_id, value = inquiry(name, "0499370899", PARAMS.get(name, {}))
                asked[inquiry_id] = code
                await producer.send_and_wait(
                    f"agency.{code}.inquiries", value, key=inquiry_id.encode()
                )
        answered: dict[str, str] = {}
        async with asyncio.timeout(30):
            while len(answered) < len(asked):
                for records in (await replies.getmany(timeout_ms=500)).values():
                    for record in records:
                        data = json.loads(record.value)["data"]
                        answered[data["inquiry_id"]] = data["status"]
        assert answered == dict.fromkeys(asked, "ok")

        # then idle: the fetch wait backs off from 25 ms to the idle wait
        await asyncio.sleep(3.0)
        counted_kafka.counts.clear()
        began = time.monotonic()
        await asyncio.sleep(COUNTED_SECONDS)
        seconds = time.monotonic() - began
        fetches = agency_requests(counted_kafka, "fetch")
        # one fetch per idle wait, and one more under way; seven agencies fetching on their
        # own sent seven times as many
        assert fetches <= seconds * 1000 / IDLE_WAIT_MS + 2, counted_kafka.counts
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await replies.stop()
        await producer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for code in codes:
            partition = TopicPartition(f"agency.{code}.inquiries", 0)
            read = await admin.list_consumer_group_offsets(f"agency-{code}", partitions=[partition])
            assert read[partition].offset == len(AGENCIES[code]), (code, read)
    finally:
        await admin.close()
