"""A reply counts only on the replies topic of the agency the inquiry was sent to.

Agency T (``tax``), allowed one inquiry of the civil registry, writes a reply in the civil
registry's name (its CloudEvent ``source``), on its own replies topic and on the retired
shared one. Neither is recorded, signed or cached; the one the broker reads is audited as a
refusal; the civil registry's own reply, on its own topic, then completes the inquiry.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.catalog import ServicePublished
from panjereh.contracts.inquiry import InquiryReply
from panjereh.contracts.requests import RequestSubmitted
from panjereh.contracts.samples import published_card
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries, agency_replies
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import create_app
from panjereh.inquiry_broker.signing import verify

pytestmark = pytest.mark.integration

TAX_CARD = "tax-clearance-certificate"
SUBJECT = "0499370899"
TRACKING_CODE = "8100000001"
#: the shared topic every agency could write to before per-agency replies topics
RETIRED_SHARED_REPLIES = "inquiry.replies"
REFUSED = "panjereh_inquiry_replies_refused_total"


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(libpq(url))
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def send(kafka: str, topic: str, event: CloudEvent, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.to_bytes(), key=key.encode())
    finally:
        await producer.stop()


async def until(url: str, query: str, *args: Any) -> None:
    """Until ``query`` returns a row (another process's commit: nothing local to await)."""
    async with asyncio.timeout(30):
        while not await sql(url, query, *args):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def refused(topic: str) -> float:
    return REGISTRY.get_sample_value(REFUSED, {"topic": topic, "reason": "wrong_topic"}) or 0.0


async def test_a_reply_forged_by_another_agency_is_refused_and_the_asked_one_answers(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    token_factory: TokenFactory,
    jwks_url: str,
) -> None:
    url = await migrated_database("panjereh.inquiry_broker")
    kafka = kafka_bootstrap_servers
    await create_topics(
        kafka,
        [
            *PLATFORM_TOPICS,
            RETIRED_SHARED_REPLIES,
            agency_inquiries("civil-registry"),
            agency_replies("civil-registry"),
            agency_replies("tax"),
        ],
    )
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=kafka,
        kafka_idempotence=False,
        jwks_url=jwks_url,
        environment="test",
        subject_hash_key=secrets.token_urlsafe(32),
        sweep_interval_seconds=0.05,
    )
    admin = bearer(token_factory(roles=["platform-admin"], national_code=SUBJECT))
    tax_client = bearer(
        token_factory(
            roles=["client:tax"],
            agency="tax",
            sub="client-tax",
            national_code=None,
            scopes=["inquiries"],
        )
    )
    # time enough for the forgeries and then the civil registry's answer
    await sql(
        url,
        "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 30000 WHERE name = $1",
        "civil-registry.person",
    )
    async with running_app(create_app(settings)) as client:
        # the tax administration may ask the civil registry once, for a live request of its card
        card = published_card(TAX_CARD, agency="tax", inquiries=["civil-registry.person"])
        await send(
            kafka,
            ServicePublished.topic,
            CloudEvent.from_event(ServicePublished(code=TAX_CARD, version=1, card=card)),
            TAX_CARD,
        )
        await until(
            url, "SELECT 1 FROM inquiry_broker.published_card WHERE service_code = $1", TAX_CARD
        )
        await send(
            kafka,
            RequestSubmitted.topic,
            CloudEvent.from_event(
                RequestSubmitted(
                    tracking_code=TRACKING_CODE,
                    service_code=TAX_CARD,
                    service_version=1,
                    subject=SUBJECT,
                    at=datetime.now(UTC),
                )
            ),
            TRACKING_CODE,
        )
        await until(
            url,
            "SELECT 1 FROM inquiry_broker.live_purpose WHERE tracking_code = $1 "
            "AND opened_at IS NOT NULL",
            TRACKING_CODE,
        )
        body = {
            "type": "civil-registry.person",
            "subject": SUBJECT,
            "params": {},
            "purpose": {
                "service_code": TAX_CARD,
                "tracking_code": TRACKING_CODE,
                "legal_basis": "درخواست شهروند",
            },
        }
        asked = await client.post("/api/v1/inquiries?wait=0", headers=tax_client, json=body)
        assert asked.status_code == 202, asked.text
        inquiry_id = asked.json()["inquiry_id"]

        forged = {
            "first_name": "جعلی",
            "last_name": "جعلی",
            "birth_date": "1990-01-01",
            "alive": False,
            "gender": "male",
        }
        refused_before = refused(agency_replies("tax"))
        on_shared, on_own = (
            CloudEvent.from_event(
                InquiryReply(inquiry_id=inquiry_id, status="ok", result=forged),
                source="agency/civil-registry",  # the sender writes whatever source it likes
            )
            for _ in range(2)
        )
        await send(kafka, RETIRED_SHARED_REPLIES, on_shared, inquiry_id)
        await send(kafka, agency_replies("tax"), on_own, inquiry_id)
        # until the forgery on T's own topic is handled, or (the bug) a forgery was accepted
        await until(
            url,
            "SELECT 1 FROM inquiry_broker.inbox_message WHERE event_id = $1 "
            "UNION ALL SELECT 1 FROM inquiry_broker.inquiry WHERE id = $2 AND status <> 'pending'",
            on_own.id,
            uuid.UUID(inquiry_id),
        )
        pending = await client.get(f"/api/v1/inquiries/{inquiry_id}", headers=tax_client)
        assert pending.json()["status"] == "pending", pending.json()
        assert pending.json()["signature"] is None
        assert pending.json()["result"] is None
        assert refused(agency_replies("tax")) == refused_before + 1
        # and kept in the audit chain as a refusal: who was asked, whose topic, whom it
        # claimed to be, why; nothing about the subject or the forged answer
        refusals = await sql(
            url,
            "SELECT inquiry_id, provider_agency, caller_agency, claimed_agency, reason, "
            "subject_hash, tracking_code FROM inquiry_broker.audit_entry "
            "WHERE decision = 'reply_refused'",
        )
        assert [dict(row) for row in refusals] == [
            {
                "inquiry_id": uuid.UUID(inquiry_id),
                "provider_agency": "civil-registry",
                "caller_agency": "tax",
                "claimed_agency": "civil-registry",
                "reason": "wrong_topic",
                "subject_hash": "",
                "tracking_code": None,
            }
        ]
        chain = await client.get("/api/v1/audit/verify", headers=admin)
        assert chain.json()["valid"] is True, chain.json()
        # nothing was cached: the same question is asked of the agency again
        again = await client.post("/api/v1/inquiries?wait=0", headers=tax_client, json=body)
        assert again.status_code == 202, again.text
        assert again.json()["cached"] is False

        # the civil registry itself answers, on its own topic (not through the simulator: its
        # consumer group would linger into the next module's and hold up its rebalance)
        real = {
            **forged,
            "first_name": "مریم",
            "last_name": "احمدی",
            "alive": True,
            "gender": "female",
        }
        genuine = CloudEvent.from_event(
            InquiryReply(inquiry_id=inquiry_id, status="ok", result=real),
            source="agency/civil-registry",
        )
        await send(kafka, agency_replies("civil-registry"), genuine, inquiry_id)
        answered = await client.get(f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=tax_client)
        keys = (await client.get("/api/v1/inquiry-types/keys")).json()
    assert answered.json()["status"] == "answered", answered.json()
    assert answered.json()["result"] == real
    assert verify(answered.json()["signature"], keys)["result"] == real
