"""An SDK agency against a real Kafka-protocol broker: consume, answer, reply, commit."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from panjereh.agency_sdk import Agency, Inquiry, InquiryNotFound, KafkaSettings
from panjereh.agency_sdk.messages import inquiry_requested_event, replies_topic
from panjereh.common.messaging.kafka import create_topics

pytestmark = pytest.mark.integration

AGENCY = "sdk-test-registry"
#: the agency's own replies topic: the only one the broker accepts its answers on
REPLIES = replies_topic(AGENCY)


def inquiry_event(inquiry_id: uuid.UUID, subject: str, params: dict[str, Any]) -> bytes:
    return inquiry_requested_event(inquiry_id, f"{AGENCY}.record", subject, params)


async def test_an_agency_answers_each_inquiry_on_its_own_replies_topic(
    kafka_bootstrap_servers: str,
) -> None:
    await create_topics(kafka_bootstrap_servers, [f"agency.{AGENCY}.inquiries", REPLIES])
    agency = Agency(
        AGENCY,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers, idempotence=False),
        input_schemas={
            f"{AGENCY}.record": {
                "type": "object",
                "properties": {"year": {"type": "integer"}},
                "required": ["year"],
            }
        },
    )

    @agency.handler(f"{AGENCY}.record")
    async def record(inquiry: Inquiry) -> dict[str, Any]:
        if inquiry.subject == "missing":
            raise InquiryNotFound
        return {"echo": inquiry.subject, "year": inquiry.params["year"]}

    replies = AIOKafkaConsumer(
        REPLIES,
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=f"sdk-test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, enable_idempotence=False)
    running = asyncio.create_task(agency.run())
    await replies.start()
    await producer.start()
    try:
        asked = {
            uuid.uuid4(): ("someone", {"year": 1400}),
            uuid.uuid4(): ("missing", {"year": 1400}),
            uuid.uuid4(): ("someone", {"year": "not a number"}),
        }
        for inquiry_id, (subject, params) in asked.items():
            await producer.send_and_wait(
                f"agency.{AGENCY}.inquiries",
                inquiry_event(inquiry_id, subject, params),
                key=str(inquiry_id).encode(),
                headers=[
                    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                ],
            )
        answers: dict[str, dict[str, Any]] = {}
        headers: dict[str, dict[str, bytes]] = {}
        async with asyncio.timeout(30):
            while len(answers) < len(asked):
                batch = await replies.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        if event["source"] == f"agency/{AGENCY}":
                            answers[event["data"]["inquiry_id"]] = event["data"]
                            headers[event["data"]["inquiry_id"]] = dict(record.headers)
        first, second, third = (str(i) for i in asked)
        assert answers[first] == {
            "inquiry_id": first,
            "status": "ok",
            "result": {"echo": "someone", "year": 1400},
        }
        assert answers[second]["status"] == "not_found"
        assert answers[third]["status"] == "error"
        assert answers[third]["error"] == "invalid_input: year"
        assert headers[first]["traceparent"].startswith(b"00-0af7651916cd43dd")
    finally:
        agency.stop()
        await running
        await replies.stop()
        await producer.stop()

    # the offsets were committed: a restarted agency has nothing left to answer
    check = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=f"agency-{AGENCY}",
        enable_auto_commit=False,
    )
    await check.start()
    try:
        partitions = check.partitions_for_topic(f"agency.{AGENCY}.inquiries") or set()
        committed = [
            await check.committed(TopicPartition(f"agency.{AGENCY}.inquiries", p)) or 0
            for p in partitions
        ]
    finally:
        await check.stop()
    assert sum(committed) == len(asked)


async def test_an_inquiry_is_committed_when_read_not_when_answered(
    kafka_bootstrap_servers: str,
) -> None:
    """The broker starts an inquiry's deadline once its agency has read it (its committed
    offset): a handler slower than the deadline must leave the inquiry read, so the card's
    time-out rule applies; a lost answer is the broker's to resend."""
    agency_code = f"sdk-slow-{uuid.uuid4().hex[:8]}"
    inquiries = f"agency.{agency_code}.inquiries"
    await create_topics(kafka_bootstrap_servers, [inquiries, replies_topic(agency_code)])
    agency = Agency(
        agency_code,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers, idempotence=False),
        input_schemas={f"{agency_code}.record": {"type": "object"}},
    )
    started, release = asyncio.Event(), asyncio.Event()

    @agency.handler(f"{agency_code}.record")
    async def record(inquiry: Inquiry) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"echo": inquiry.subject}

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                f"agency-{agency_code}",
                partitions=[TopicPartition(inquiries, p) for p in range(3)],  # create_topics'
            )
        finally:
            await admin.close()
        return sum(max(meta.offset, 0) for meta in offsets.values())

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, enable_idempotence=False)
    running = asyncio.create_task(agency.run())
    await producer.start()
    try:
        inquiry_id = uuid.uuid4()
        event = json.loads(inquiry_event(inquiry_id, "someone", {}))
        event["data"]["type"] = f"{agency_code}.record"
        await producer.send_and_wait(
            inquiries, json.dumps(event).encode(), key=str(inquiry_id).encode()
        )
        async with asyncio.timeout(30):
            await started.wait()
            read = await committed()
            for _ in range(50):
                if read >= 1:
                    break
                await asyncio.sleep(0.1)
                read = await committed()
        assert read == 1
        assert not release.is_set()  # read and committed while the answer is still pending
    finally:
        release.set()
        agency.stop()
        await running
        await producer.stop()
