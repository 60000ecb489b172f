"""An SDK agency against a real Kafka-protocol broker: consume, answer, reply, commit."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from panjereh.agency_sdk import Agency, Inquiry, InquiryNotFound, KafkaSettings
from panjereh.agency_sdk.messages import INQUIRY_REQUESTED_TYPE, replies_topic
from panjereh.common.messaging.kafka import create_topics

pytestmark = pytest.mark.integration

AGENCY = "sdk-test-registry"
#: the agency's own replies topic: the only one the broker accepts its answers on
REPLIES = replies_topic(AGENCY)


def inquiry_event(inquiry_id: uuid.UUID, subject: str, params: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "inquiry-broker",
            "type": INQUIRY_REQUESTED_TYPE,
            "time": "2026-11-28T12:00:00Z",
            "datacontenttype": "application/json",
            "data": {
                "inquiry_id": str(inquiry_id),
                "type": f"{AGENCY}.record",
                "subject": subject,
                "params": params,
                "purpose": {"service_code": "S1", "tracking_code": "T1"},
            },
        }
    ).encode()


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
        from aiokafka import TopicPartition  # noqa: PLC0415

        partitions = check.partitions_for_topic(f"agency.{AGENCY}.inquiries") or set()
        committed = [
            await check.committed(TopicPartition(f"agency.{AGENCY}.inquiries", p)) or 0
            for p in partitions
        ]
    finally:
        await check.stop()
    assert sum(committed) == len(asked)
