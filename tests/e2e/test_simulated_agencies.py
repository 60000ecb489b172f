"""The simulated agencies that ``make run`` starts answer on Kafka like real agencies."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from panjereh.agency_simulators import special
from panjereh.devstack.testing import RunningStack

pytestmark = pytest.mark.e2e


def kafka_of(platform: RunningStack) -> str:
    # the stack's broker listens on the port after the gateway's block (see start_stack)
    port = int(platform.gateway.rsplit(":", 1)[1]) + 5
    return f"127.0.0.1:{port}"


async def test_the_civil_registry_simulator_answers_its_topic(platform: RunningStack) -> None:
    bootstrap = kafka_of(platform)
    inquiry_id = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    replies = AIOKafkaConsumer(
        "agency.civil-registry.replies",  # its own replies topic: no other agency may write it
        bootstrap_servers=bootstrap,
        group_id=f"e2e-{inquiry_id}",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await replies.start()
    try:
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/panjereh/e2e",
            "type": "inquiry.inquiry.requested.v1",
            "time": "2026-11-28T12:00:00Z",
            "data": {
                "inquiry_id": inquiry_id,
                "type": "civil-registry.person",
                "subject": special.DECEASED,
                "params": {},
                "purpose": {"service_code": "e2e", "legal_basis": "test"},
            },
        }
        await producer.send_and_wait(
            "agency.civil-registry.inquiries",
            json.dumps(event).encode(),
            key=inquiry_id.encode(),
        )
        answer = None
        async with asyncio.timeout(30):
            while answer is None:
                for records in (await replies.getmany(timeout_ms=500)).values():
                    for record in records:
                        data = json.loads(record.value)["data"]
                        if data["inquiry_id"] == inquiry_id:
                            answer = data
    finally:
        await producer.stop()
        await replies.stop()
    assert answer["status"] == "ok"
    assert answer["result"]["alive"] is False


class TestBrokerThroughTheGateway:
    def test_the_answer_signing_keys_are_public(self, gateway: httpx.Client) -> None:
        response = gateway.get("/api/v1/inquiry-types/keys")
        assert response.status_code == 200
        (key,) = response.json()["keys"]
        assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-256", "ES256")
        assert "d" not in key  # never the private part

    def test_asking_without_a_token_is_401(self, gateway: httpx.Client) -> None:
        response = gateway.post(
            "/api/v1/inquiries",
            json={
                "type": "civil-registry.person",
                "subject": special.DECEASED,
                "purpose": {"service_code": "x"},
            },
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
