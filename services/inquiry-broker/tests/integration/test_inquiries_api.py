"""The inquiry broker on real PostgreSQL and a real Kafka-protocol broker, with simulated
agencies answering over Kafka and callers presenting ES256 tokens verified through a JWKS."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from sqlalchemy import event as sa_event

from panjereh.agency_sdk import KafkaSettings, fetch_input_schemas
from panjereh.agency_simulators import special
from panjereh.agency_simulators.agencies import build, input_schemas
from panjereh.common.jwk import b64url, b64url_decode
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.queries import DriverLog, driver_queries
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.identifiers import complete_national_code
from panjereh.contracts.inquiry import AgencyActive, InquiryReply
from panjereh.contracts.requests import RequestStatusChanged, RequestSubmitted
from panjereh.contracts.samples import published_card
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries, agency_replies
from panjereh.devstack.embedded import free_port
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import REPLIES_GROUP, create_app
from panjereh.inquiry_broker.repository import InquiryRepository
from panjereh.inquiry_broker.signing import InvalidAnswerSignature, verify

pytestmark = pytest.mark.integration

#: Agencies simulated in these tests; ``education`` is deliberately absent: its inquiries stay
#: pending (an agency that reads and does not answer: ``test_undelivered.py``).
RUNNING_AGENCIES = ("civil-registry", "mobile-registry", "tax", "police")
ORDINARY = "0499370899"
CITIZEN_B = "0790419904"
TAX_CARD = "tax-clearance-certificate"
#: The platform purposes migration 0005 reserves to identity.
PLATFORM_PURPOSES = ("identity.login", "identity.registration")
#: What ``Broker.ask`` takes as "a fresh tracking code of a live request, please".
FRESH: Any = object()
_tracking_codes = itertools.count(8_000_000_001)


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def fresh_tracking_code() -> str:
    return str(next(_tracking_codes))


class Broker:
    """The running app, its database and a way to mint callers."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, kafka: str, tokens: TokenFactory
    ) -> None:
        self.client = client
        #: the application under test (its runtime: ``app.state.broker``)
        self.app: FastAPI | None = None
        self.url = url
        self.kafka = kafka
        self.tokens = tokens
        #: tracking codes this module opened a live purpose for, with their service and subject
        self.opened: dict[str, tuple[str, str]] = {}

    def client_token(
        self, role: str, agency: str | None = None, *, scopes: tuple[str, ...] = ("inquiries",)
    ) -> dict[str, str]:
        """A machine client's token, with the ``inquiries`` scope identity gives them."""
        sub = role.replace(":", "-")
        return bearer(
            self.tokens(
                roles=[role], agency=agency, sub=sub, national_code=None, scopes=list(scopes)
            )
        )

    async def open_purpose(self, tracking_code: str, service_code: str, subject: str) -> None:
        """The requests service's ``submitted`` event for a request, once the broker has it."""
        if tracking_code in self.opened:
            assert self.opened[tracking_code] == (service_code, subject), "one request per code"
            return
        await publish(
            self.kafka,
            RequestSubmitted.topic,
            RequestSubmitted(
                tracking_code=tracking_code,
                service_code=service_code,
                service_version=1,
                subject=subject,
                at=datetime.now(UTC),
            ),
            tracking_code,
        )
        await self.eventually(
            "SELECT 1 FROM inquiry_broker.live_purpose WHERE tracking_code = $1 "
            "AND opened_at IS NOT NULL",
            bool,
            tracking_code,
        )
        self.opened[tracking_code] = (service_code, subject)

    async def change_status(
        self, tracking_code: str, service_code: str, to: str, *, wait_for_close: bool = True
    ) -> None:
        """The requests service's ``status-changed`` event, once the broker has it."""
        await publish(
            self.kafka,
            RequestStatusChanged.topic,
            RequestStatusChanged.model_validate(
                {
                    "tracking_code": tracking_code,
                    "service_code": service_code,
                    "from": "awaiting_inquiries",
                    "to": to,
                    "at": datetime.now(UTC),
                }
            ),
            tracking_code,
        )
        if wait_for_close:
            await self.eventually(
                "SELECT 1 FROM inquiry_broker.live_purpose WHERE tracking_code = $1 "
                "AND closed_at IS NOT NULL",
                bool,
                tracking_code,
            )

    def citizen(self, national_code: str) -> dict[str, str]:
        return bearer(
            self.tokens(roles=["citizen"], national_code=national_code, sub=f"p-{national_code}")
        )

    async def ask(
        self,
        inquiry_type: str,
        *,
        caller: dict[str, str],
        subject: str = ORDINARY,
        params: dict[str, Any] | None = None,
        service_code: str = TAX_CARD,
        tracking_code: str | None = FRESH,
        wait: float = 5,
        live: bool = True,
    ) -> httpx.Response:
        """Ask, by default for a live request of the card about ``subject``.

        A card's purpose gets a fresh tracking code unless one is given, and its request is
        submitted (the broker has it) first, unless ``live`` is false.
        """
        if tracking_code is FRESH:
            tracking_code = fresh_tracking_code()
        if live and tracking_code is not None and service_code not in PLATFORM_PURPOSES:
            await self.open_purpose(tracking_code, service_code, subject)
        return await self.client.post(
            f"/api/v1/inquiries?wait={wait}",
            headers=caller,
            json={
                "type": inquiry_type,
                "subject": subject,
                "params": params or {},
                "purpose": {
                    "service_code": service_code,
                    "tracking_code": tracking_code,
                    "legal_basis": "درخواست شهروند",
                },
            },
        )

    async def sql(self, query: str, *args: Any) -> Any:
        connection = await asyncpg.connect(libpq(self.url))
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    async def eventually(self, query: str, expected: Callable[[Any], bool], *args: Any) -> None:
        async with asyncio.timeout(30):
            # another process's effect (a consumer's commit): nothing local to await
            while not expected(await self.sql(query, *args)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def publish(kafka: str, topic: str, event: Any, key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, CloudEvent.from_event(event).to_bytes(), key=key.encode()
        )
    finally:
        await producer.stop()


async def publish_card(broker: Broker, code: str, agency: str, inquiries: list[str]) -> None:
    card = published_card(code, agency=agency, inquiries=inquiries)
    await publish(
        broker.kafka,
        ServicePublished.topic,
        ServicePublished(code=code, version=1, card=card),
        code,
    )
    await broker.eventually(
        "SELECT 1 FROM inquiry_broker.published_card WHERE service_code = $1",
        bool,
        code,
    )


@pytest.fixture(scope="module")
async def broker(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    token_factory: TokenFactory,
    jwks_url: str,
) -> AsyncIterator[Broker]:
    url = await migrated_database("panjereh.inquiry_broker")
    await create_topics(
        kafka_bootstrap_servers,
        [
            *PLATFORM_TOPICS,
            *(agency_inquiries(a) for a in (*RUNNING_AGENCIES, "education")),
            *(agency_replies(a) for a in (*RUNNING_AGENCIES, "education")),
        ],
    )
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap_servers, idempotence=False)
    agencies = [build(code, kafka=kafka) for code in RUNNING_AGENCIES]
    tasks = [asyncio.create_task(agency.run()) for agency in agencies]
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        kafka_idempotence=False,
        jwks_url=jwks_url,
        environment="test",
        subject_hash_key="k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r",
        sweep_interval_seconds=0.05,
    )
    try:
        app = create_app(settings)
        async with running_app(app) as client:
            broker = Broker(client, url, kafka_bootstrap_servers, token_factory)
            broker.app = app
            await publish_card(broker, TAX_CARD, "tax", ["tax.clearance", "civil-registry.person"])
            yield broker
    finally:
        for agency in agencies:
            agency.stop()
        await asyncio.gather(*tasks)


async def send_reply(
    broker: Broker,
    inquiry_id: str,
    source: str,
    *,
    status: str = "ok",
    result: dict[str, Any] | None = None,
    event: CloudEvent | None = None,
) -> CloudEvent:
    """Put a reply in ``source``'s name on that agency's own replies topic (``event``: that
    reply again, the same record a second time); returns it."""
    if event is None:
        event = CloudEvent.from_event(
            InquiryReply(inquiry_id=inquiry_id, status=status, result=result),  # type: ignore[arg-type]
            source=source,
        )
    producer = AIOKafkaProducer(bootstrap_servers=broker.kafka, enable_idempotence=False)
    await producer.start()
    try:
        topic = agency_replies(source.removeprefix("agency/"))
        await producer.send_and_wait(topic, event.to_bytes(), key=inquiry_id.encode())
    finally:
        await producer.stop()
    return event


async def announced_lately(broker: Broker, agency: str) -> None:
    """``agency`` was announced active a moment ago: its next answers do not announce it."""
    await broker.sql(
        "INSERT INTO inquiry_broker.agency_announcement (agency, announced_at) "
        "VALUES ($1, now()) ON CONFLICT (agency) DO UPDATE SET announced_at = now()",
        agency,
    )


async def audit_count(broker: Broker, decision: str) -> int:
    rows = await broker.sql(
        "SELECT count(*) AS n FROM inquiry_broker.audit_entry WHERE decision = $1", decision
    )
    return int(rows[0]["n"])


class TestCardDerivedAccess:
    async def test_the_requests_service_gets_a_signed_answer_for_a_listed_type(
        self, broker: Broker
    ) -> None:
        response = await broker.ask(
            "civil-registry.person", caller=broker.client_token("service:requests")
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "answered"
        assert body["result"]["alive"] is True
        assert body["signature"].count(".") == 2

    async def test_a_client_of_the_cards_agency_may_ask(self, broker: Broker) -> None:
        response = await broker.ask(
            "tax.clearance", caller=broker.client_token("client:tax", agency="tax")
        )
        assert response.status_code == 200, response.text
        assert response.json()["result"] == {"has_debt": False, "debt_amount": 0}

    async def test_a_type_the_card_does_not_list_is_refused_and_audited(
        self, broker: Broker
    ) -> None:
        denied_before = await audit_count(broker, "denied")
        response = await broker.ask(
            "police.clean-record", caller=broker.client_token("service:requests")
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "inquiry_not_permitted"
        assert response.json()["reason"] == "type_not_on_card"
        assert await audit_count(broker, "denied") == denied_before + 1

    async def test_a_client_of_another_agency_is_refused(self, broker: Broker) -> None:
        response = await broker.ask(
            "tax.clearance", caller=broker.client_token("client:police", agency="police")
        )
        assert response.status_code == 403
        assert response.json()["reason"] == "caller_not_entitled"

    async def test_a_retired_card_allows_nothing_any_more(self, broker: Broker) -> None:
        await publish_card(broker, "retiring-service", "tax", ["tax.clearance"])
        caller = broker.client_token("service:requests")
        allowed = await broker.ask("tax.clearance", caller=caller, service_code="retiring-service")
        assert allowed.status_code == 200
        await publish(
            broker.kafka,
            ServiceRetired.topic,
            ServiceRetired(code="retiring-service", version=1),
            "retiring-service",
        )
        await broker.eventually(
            "SELECT 1 FROM inquiry_broker.published_card WHERE service_code = $1 AND retired",
            bool,
            "retiring-service",
        )
        refused = await broker.ask("tax.clearance", caller=caller, service_code="retiring-service")
        assert refused.status_code == 403
        assert refused.json()["reason"] == "card_retired"

    async def test_an_unknown_card_allows_nothing(self, broker: Broker) -> None:
        response = await broker.ask(
            "tax.clearance", caller=broker.client_token("service:requests"), service_code="nope"
        )
        assert response.json()["reason"] == "card_not_published"

    async def test_citizens_cannot_ask_inquiries(self, broker: Broker) -> None:
        response = await broker.ask("tax.clearance", caller=broker.citizen(ORDINARY))
        assert response.status_code == 403

    async def test_no_token_is_401(self, broker: Broker) -> None:
        response = await broker.ask("tax.clearance", caller={})
        assert response.status_code == 401


class TestGrants:
    async def test_identity_checks_mobile_ownership_by_its_grant(self, broker: Broker) -> None:
        identity = broker.client_token("service:identity")
        owned = await broker.ask(
            "mobile-registry.ownership",
            caller=identity,
            params={"mobile": "09121234567"},
            service_code="identity.login",
            tracking_code=None,
        )
        assert owned.status_code == 200, owned.text
        assert owned.json()["result"] == {"owned": True}
        nobody = await broker.ask(
            "mobile-registry.ownership",
            caller=identity,
            params={"mobile": "09121230000"},
            service_code="identity.login",
            tracking_code=None,
        )
        assert nobody.json()["result"] == {"owned": False}

    async def test_a_grant_covers_only_its_types(self, broker: Broker) -> None:
        response = await broker.ask(
            "police.clean-record",
            caller=broker.client_token("service:identity"),
            service_code="identity.login",
        )
        assert response.status_code == 403
        assert response.json()["reason"] == "type_not_granted"


class TestAnswers:
    async def test_the_signature_verifies_and_fails_after_one_changed_byte(
        self, broker: Broker
    ) -> None:
        response = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:requests"),
            subject=special.DECEASED,
        )
        keys = (await broker.client.get("/api/v1/inquiry-types/keys")).json()
        token = response.json()["signature"]
        payload = verify(token, keys)
        assert payload["inquiry_id"] == response.json()["inquiry_id"]
        assert payload["result"]["alive"] is False
        header, body, signature = token.split(".")
        raw = bytearray(b64url_decode(body))
        raw[raw.index(b"false")] = ord("t")  # one byte
        with pytest.raises(InvalidAnswerSignature):
            verify(f"{header}.{b64url(bytes(raw))}.{signature}", keys)

    async def test_a_subject_unknown_to_the_agency_is_not_found(self, broker: Broker) -> None:
        response = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:requests"),
            subject=special.NOT_FOUND,
        )
        assert response.status_code == 200
        assert response.json()["status"] == "not_found"

    async def test_without_wait_it_is_accepted_then_answered(self, broker: Broker) -> None:
        caller = broker.client_token("client:tax", agency="tax")
        accepted = await broker.ask(
            "tax.clearance", caller=caller, subject=special.TAX_DEBT, wait=0
        )
        assert accepted.status_code == 202
        assert accepted.json()["status"] == "pending"
        inquiry_id = accepted.json()["inquiry_id"]
        answered = await broker.client.get(f"/api/v1/inquiries/{inquiry_id}?wait=5", headers=caller)
        assert answered.json()["status"] == "answered"
        assert answered.json()["result"]["has_debt"] is True
        other = await broker.client.get(
            f"/api/v1/inquiries/{inquiry_id}", headers=broker.client_token("service:requests")
        )
        assert other.status_code == 404

    async def test_answers_are_published_as_inquiry_answered_events(self, broker: Broker) -> None:
        response = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:requests"),
            subject="0084575948",
            tracking_code="7009999999",
        )
        inquiry_id = response.json()["inquiry_id"]
        consumer = AIOKafkaConsumer(
            "inquiry.inquiry.answered",
            bootstrap_servers=broker.kafka,
            group_id=f"test-{uuid.uuid4()}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found = None
        try:
            async with asyncio.timeout(20):
                while found is None:
                    for records in (await consumer.getmany(timeout_ms=300)).values():
                        for record in records:
                            event = CloudEvent.from_bytes(record.value)
                            if event.data["inquiry_id"] == inquiry_id:
                                found = (record.key, event)
        finally:
            await consumer.stop()
        key, event = found
        assert key == b"7009999999"  # keyed by the request's tracking code
        assert event.type == "inquiry.inquiry.answered.v1"
        assert event.data["status"] == "ok"
        # no personal data on the event bus: no national code, no answer
        assert "0084575948" not in event.model_dump_json()
        assert event.data.get("result") is None
        assert response.json()["result"]["first_name"] not in event.model_dump_json()

    async def test_only_answers_a_request_waits_on_are_announced(self, broker: Broker) -> None:
        # identity's registration check has no request behind it (its tracking code is the
        # login challenge's reference): nobody consumes its InquiryAnswered, so none is written
        unannounced = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:identity"),
            subject=complete_national_code("555000778"),
            service_code="identity.registration",
            tracking_code=str(uuid.uuid4()),
        )
        untracked = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:identity"),
            subject=complete_national_code("555000779"),
            service_code="identity.registration",
            tracking_code=None,
        )
        announced = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:requests"),
            subject="0084575948",
        )
        assert unannounced.json()["status"] == announced.json()["status"] == "answered"
        assert untracked.json()["status"] == "answered"
        rows = await broker.sql(
            "SELECT payload->'data'->>'inquiry_id' AS inquiry_id"
            " FROM inquiry_broker.outbox_message"
            " WHERE topic = 'inquiry.inquiry.answered'"
            " AND payload->'data'->>'inquiry_id' = ANY($1::text[])",
            [
                unannounced.json()["inquiry_id"],
                untracked.json()["inquiry_id"],
                announced.json()["inquiry_id"],
            ],
        )
        assert [row["inquiry_id"] for row in rows] == [announced.json()["inquiry_id"]]

    async def test_the_same_question_within_the_ttl_is_answered_from_cache(
        self, broker: Broker
    ) -> None:
        caller = broker.client_token("service:requests")
        first = await broker.ask("civil-registry.person", caller=caller, subject="0963695398")
        allowed_before = await audit_count(broker, "allowed")
        started = time.monotonic()
        second = await broker.ask(
            "civil-registry.person", caller=caller, subject="0963695398", tracking_code="7002"
        )
        assert second.json()["cached"] is True
        assert second.json()["result"] == first.json()["result"]
        assert second.json()["inquiry_id"] != first.json()["inquiry_id"]
        assert time.monotonic() - started < 1.0
        # a cached answer is still an access: audited
        assert await audit_count(broker, "allowed") == allowed_before + 1


class TestBadInput:
    @pytest.mark.parametrize(
        ("inquiry_type", "subject", "params", "code", "field", "field_code"),
        [
            (
                "civil-registry.person",
                "0684159415",
                {},
                "invalid_subject",
                "subject",
                "national_code_checksum",
            ),
            (
                "mobile-registry.ownership",
                ORDINARY,
                {"mobile": "12"},
                "validation_failed",
                "params.mobile",
                "pattern",
            ),
            (
                "mobile-registry.ownership",
                ORDINARY,
                {},
                "validation_failed",
                "params",
                "required",
            ),
            ("no-such.type", ORDINARY, {}, "inquiry_type_unknown", None, None),
        ],
    )
    async def test_is_422_and_changes_nothing(
        self,
        broker: Broker,
        inquiry_type: str,
        subject: str,
        params: dict[str, Any],
        code: str,
        field: str | None,
        field_code: str | None,
    ) -> None:
        before = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        response = await broker.ask(
            inquiry_type,
            caller=broker.client_token("service:identity"),
            subject=subject,
            params=params,
            live=False,
        )
        assert response.status_code == 422
        assert response.json()["code"] == code
        if field:
            assert response.json()["errors"][0]["field"] == field
            assert response.json()["errors"][0]["code"] == field_code
        after = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        assert after == before

    async def test_wait_above_ten_seconds_is_refused(self, broker: Broker) -> None:
        response = await broker.ask(
            "tax.clearance", caller=broker.client_token("service:requests"), wait=11
        )
        assert response.status_code == 422

    async def test_field_errors_speak_the_callers_language(self, broker: Broker) -> None:
        caller = {**broker.client_token("service:identity")}
        answers = {}
        for language in ("fa", "en"):
            response = await broker.ask(
                "mobile-registry.ownership",
                caller={**caller, "Accept-Language": language},
                params={"mobile": "12"},
                service_code="identity.login",
            )
            answers[language] = response.json()["errors"][0]
        assert answers["fa"]["code"] == answers["en"]["code"] == "pattern"
        assert answers["en"]["message"] == "The format is not valid"
        assert answers["fa"]["message"] == "قالب این مقدار درست نیست"


class TestDataTracker:
    async def test_a_citizen_sees_only_their_own_entries(self, broker: Broker) -> None:
        await broker.ask(
            "tax.clearance",
            caller=broker.client_token("client:tax", agency="tax"),
            subject=CITIZEN_B,
            tracking_code="7005555555",
        )
        mine = await broker.client.get("/api/v1/me/data-access", headers=broker.citizen(CITIZEN_B))
        assert mine.status_code == 200
        items = mine.json()["items"]
        assert items, "citizen B's own access must be listed"
        assert items[0]["purpose"]["tracking_code"] == "7005555555"
        assert items[0]["caller"] == {"principal": "client:tax", "agency": "tax"}
        assert items[0]["inquiry_type"] == "tax.clearance"
        assert items[0]["purpose"]["legal_basis"] == "قانون مالیات‌های مستقیم (ماده ۱۸۶)"
        assert items[0]["decision"] == "allowed"

        others = await broker.client.get(
            "/api/v1/me/data-access", headers=broker.citizen("0650451252")
        )
        assert others.status_code == 200
        assert others.json()["total"] == 0
        ordinary = await broker.client.get(
            "/api/v1/me/data-access", headers=broker.citizen(ORDINARY)
        )
        tracking_codes = {i["purpose"]["tracking_code"] for i in ordinary.json()["items"]}
        assert "7005555555" not in tracking_codes

    async def test_clients_have_no_data_tracker(self, broker: Broker) -> None:
        response = await broker.client.get(
            "/api/v1/me/data-access", headers=broker.client_token("service:requests")
        )
        assert response.status_code == 403

    async def test_a_citizen_token_without_a_national_code_is_refused(self, broker: Broker) -> None:
        token = broker.tokens(roles=["citizen"], national_code=None, sub="p-nobody")
        response = await broker.client.get("/api/v1/me/data-access", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"

    async def test_entries_are_paged(self, broker: Broker) -> None:
        subject = complete_national_code("555000111")
        caller = broker.client_token("client:tax", agency="tax")
        for tracking_code in ("7300000001", "7300000002", "7300000003"):
            await broker.ask(
                "tax.clearance", caller=caller, subject=subject, tracking_code=tracking_code
            )
        citizen = broker.citizen(subject)
        second = await broker.client.get(
            "/api/v1/me/data-access?page=2&page_size=2", headers=citizen
        )
        assert second.status_code == 200
        body = second.json()
        assert (body["total"], body["page"], body["page_size"]) == (3, 2, 2)
        # newest first: the second page holds the first access
        assert [i["purpose"]["tracking_code"] for i in body["items"]] == ["7300000001"]
        too_big = await broker.client.get("/api/v1/me/data-access?page_size=101", headers=citizen)
        assert too_big.status_code == 422


class TestRegistry:
    async def test_clients_read_the_seeded_registry(self, broker: Broker) -> None:
        response = await broker.client.get(
            "/api/v1/inquiry-types", headers=broker.client_token("client:tax", agency="tax")
        )
        assert response.status_code == 200
        by_type = {item["type"]: item for item in response.json()["items"]}
        assert set(by_type) >= {
            "civil-registry.person",
            "mobile-registry.ownership",
            "tax.clearance",
            "police.clean-record",
            "social-security.insurance-record",
            "vehicle-registry.ownership",
            "education.degree",
        }
        assert by_type["tax.clearance"]["topic"] == "agency.tax.inquiries"
        # the simulated agencies validate exactly what the registry publishes
        for name, schema in input_schemas().items():
            assert by_type[name]["input_schema"] == schema, name

    async def test_an_agency_fetches_its_input_schemas_with_the_sdk(self, broker: Broker) -> None:
        token = broker.client_token("client:mobile-registry", agency="mobile-registry")
        schemas = await fetch_input_schemas(
            "",
            agency="mobile-registry",
            access_token=token["Authorization"].removeprefix("Bearer "),
            client=broker.client,
        )
        assert list(schemas) == ["mobile-registry.ownership"]
        assert schemas["mobile-registry.ownership"]["required"] == ["mobile"]

    async def test_the_registry_needs_a_token(self, broker: Broker) -> None:
        assert (await broker.client.get("/api/v1/inquiry-types")).status_code == 401


class TestIdempotencyKey:
    async def test_the_same_key_and_body_return_the_first_inquiry(self, broker: Broker) -> None:
        caller = {**broker.client_token("service:requests"), "Idempotency-Key": "req-1-tax"}
        body = {
            "type": "tax.clearance",
            "subject": "1583250689",
            "purpose": {"service_code": TAX_CARD, "tracking_code": "7100000001"},
        }
        await broker.open_purpose("7100000001", TAX_CARD, "1583250689")
        first = await broker.client.post("/api/v1/inquiries?wait=5", headers=caller, json=body)
        again = await broker.client.post("/api/v1/inquiries?wait=5", headers=caller, json=body)
        assert first.status_code == again.status_code == 200
        assert again.json()["inquiry_id"] == first.json()["inquiry_id"]
        changed = {**body, "subject": "4032152314"}
        reused = await broker.client.post("/api/v1/inquiries", headers=caller, json=changed)
        assert reused.status_code == 409
        assert reused.json()["code"] == "idempotency_key_reused"

    async def test_a_replay_answers_with_the_inquirys_current_state(self, broker: Broker) -> None:
        caller = {**broker.client_token("service:requests"), "Idempotency-Key": "req-2-tax"}
        body = {
            "type": "tax.clearance",
            "subject": complete_national_code("555000222"),
            "purpose": {"service_code": TAX_CARD, "tracking_code": "7100000002"},
        }
        await broker.open_purpose("7100000002", TAX_CARD, body["subject"])
        first = await broker.client.post("/api/v1/inquiries?wait=0", headers=caller, json=body)
        assert first.status_code == 202
        assert "Idempotent-Replayed" not in first.headers
        inquiry_id = first.json()["inquiry_id"]
        answered = await broker.client.get(f"/api/v1/inquiries/{inquiry_id}?wait=5", headers=caller)
        assert answered.json()["status"] == "answered"

        again = await broker.client.post("/api/v1/inquiries?wait=0", headers=caller, json=body)
        # the first answer was "pending"; the replay says what is known now
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["inquiry_id"] == inquiry_id
        assert again.json()["status"] == "answered"
        assert again.json()["signature"] == answered.json()["signature"]

    async def test_concurrent_requests_with_one_key_ask_once(self, broker: Broker) -> None:
        caller = {**broker.client_token("service:requests"), "Idempotency-Key": "req-3-tax"}
        tracking_code = "7100000003"
        body = {
            "type": "tax.clearance",
            "subject": complete_national_code("555000333"),
            "purpose": {"service_code": TAX_CARD, "tracking_code": tracking_code},
        }
        await broker.open_purpose(tracking_code, TAX_CARD, body["subject"])
        responses = await asyncio.gather(
            *(
                broker.client.post("/api/v1/inquiries?wait=0", headers=caller, json=body)
                for _ in range(8)
            )
        )
        assert {r.status_code for r in responses} <= {200, 202}, [r.text for r in responses]
        assert len({r.json()["inquiry_id"] for r in responses}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
        inquiries = await broker.sql(
            "SELECT count(*) AS n FROM inquiry_broker.inquiry WHERE tracking_code = $1",
            tracking_code,
        )
        audited = await broker.sql(
            "SELECT count(*) AS n FROM inquiry_broker.audit_entry WHERE tracking_code = $1",
            tracking_code,
        )
        assert inquiries[0]["n"] == audited[0]["n"] == 1

    async def test_a_malformed_key_is_refused(self, broker: Broker) -> None:
        caller = {**broker.client_token("service:requests"), "Idempotency-Key": "x" * 201}
        response = await broker.ask("tax.clearance", caller=caller, wait=0)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_idempotency_key"


#: Connections of the broker's database that sat inside an open transaction, doing nothing,
#: for longer than any of the broker's own short units of work takes.
IDLE_IN_TRANSACTION = """
    SELECT count(*) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state LIKE 'idle in transaction%' AND now() - state_change > interval '300 milliseconds'
"""


class TestWaiting:
    """A caller waiting for an answer holds no transaction (nor a pooled connection)."""

    @pytest.fixture
    async def slow_type(self, broker: Broker) -> str:
        """A type whose agency is not running: its inquiries stay pending for 20 s."""
        await publish_card(broker, "degree-wait", "education", ["education.degree"])
        await broker.sql(
            "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 20000 WHERE name = $1",
            "education.degree",
        )
        return "education.degree"

    async def test_reading_with_wait_holds_no_transaction_while_it_waits(
        self, broker: Broker, slow_type: str
    ) -> None:
        caller = broker.client_token("service:requests")
        pending = await broker.ask(slow_type, caller=caller, service_code="degree-wait", wait=0)
        inquiry_id = pending.json()["inquiry_id"]
        waiting = asyncio.create_task(
            broker.client.get(f"/api/v1/inquiries/{inquiry_id}?wait=3", headers=caller)
        )
        try:
            await asyncio.sleep(1.0)
            assert not waiting.done()
            idle_in_transaction = (await broker.sql(IDLE_IN_TRANSACTION))[0]["n"]
        finally:
            response = await waiting
        assert idle_in_transaction == 0
        assert response.status_code == 200
        assert response.json()["status"] == "pending"

    async def test_asking_with_wait_holds_no_transaction_while_it_waits(
        self, broker: Broker, slow_type: str
    ) -> None:
        waiting = asyncio.create_task(
            broker.ask(
                slow_type,
                caller=broker.client_token("service:requests"),
                service_code="degree-wait",
                subject=complete_national_code("555000444"),
                wait=3,
            )
        )
        try:
            await asyncio.sleep(1.0)
            assert not waiting.done()
            idle_in_transaction = (await broker.sql(IDLE_IN_TRANSACTION))[0]["n"]
        finally:
            response = await waiting
        assert idle_in_transaction == 0
        assert response.status_code == 202
        assert response.json()["status"] == "pending"


class TestReplies:
    async def test_only_the_first_valid_reply_of_the_asked_agency_counts(
        self, broker: Broker
    ) -> None:
        await publish_card(broker, "degree-check", "education", ["education.degree"])
        await broker.sql(
            "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 20000 WHERE name = $1",
            "education.degree",
        )
        caller = broker.client_token("service:requests")
        pending = await broker.ask(
            "education.degree", caller=caller, service_code="degree-check", wait=0
        )
        assert pending.status_code == 202
        inquiry_id = pending.json()["inquiry_id"]
        good = {"degree": "master", "field": "حقوق", "university": "دانشگاه تهران"}

        async def reply(source: str, result: dict[str, Any]) -> None:
            await send_reply(broker, inquiry_id, source, result=result)

        inbox = "SELECT count(*) AS n FROM inquiry_broker.inbox_message WHERE topic = ANY($1)"
        on = [agency_replies("tax"), agency_replies("education")]
        seen_before = (await broker.sql(inbox, on))[0]["n"]
        await reply("agency/tax", good)  # not the agency that was asked: refused
        await reply("agency/education", {"degree": "wizard"})  # breaks the output schema
        await reply("agency/education", good)  # too late: the inquiry is already final
        answered = await broker.client.get(
            f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=caller
        )
        assert answered.json()["status"] == "failed"
        assert answered.json()["error"] == "invalid_result"
        # all three replies were handled (the late one too), and the answer did not change
        await broker.eventually(inbox, lambda rows: rows[0]["n"] >= seen_before + 3, on)
        final = await broker.client.get(f"/api/v1/inquiries/{inquiry_id}", headers=caller)
        assert final.json()["status"] == "failed"
        assert final.json()["signature"] is None  # failures are not signed as answers

    async def test_an_agency_error_is_retried_until_the_attempts_run_out(
        self, broker: Broker
    ) -> None:
        await publish_card(broker, "degree-check", "education", ["education.degree"])
        await broker.sql(
            "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 20000 WHERE name = $1",
            "education.degree",
        )
        caller = broker.client_token("service:requests")
        pending = await broker.ask(
            "education.degree",
            caller=caller,
            service_code="degree-check",
            subject="0650451252",
            wait=0,
        )
        inquiry_id = pending.json()["inquiry_id"]
        attempts = "SELECT attempts, status FROM inquiry_broker.inquiry WHERE id = $1"
        for expected in (2, 3):
            await send_reply(broker, inquiry_id, "agency/education", status="error")
            await broker.eventually(
                attempts, lambda rows, n=expected: rows[0]["attempts"] == n, uuid.UUID(inquiry_id)
            )
            assert (await broker.sql(attempts, uuid.UUID(inquiry_id)))[0]["status"] == "pending"
        await send_reply(broker, inquiry_id, "agency/education", status="error")
        failed = await broker.client.get(f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=caller)
        assert (failed.json()["status"], failed.json()["error"]) == ("failed", "agency_error")


DEGREE = {"degree": "master", "field": "حقوق", "university": "دانشگاه تهران"}
REPLIES = agency_replies("education")


def replies_counted(outcome: str) -> float:
    """The broker's replies consumer's records on the education agency's topic so far."""
    labels = {"consumer": REPLIES_GROUP, "topic": REPLIES, "outcome": outcome}
    return REGISTRY.get_sample_value("panjereh_consumer_records_total", labels) or 0.0


async def counted_beyond(outcome: str, before: float) -> None:
    """Until the replies consumer has finished one more record with ``outcome`` than
    ``before`` (its counter is this process's: the app runs in it)."""
    async with asyncio.timeout(30):
        while replies_counted(outcome) <= before:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


class InBetween:
    """Another writer (the sweeper, another replica), run for one inquiry between the read of
    its reply and the statement that writes the answer only if nothing changed since; what
    that statement then returned."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, inquiry_id: str, write: Callable[[], Any]
    ) -> None:
        self.returned: list[bool] = []
        original = InquiryRepository.answer_unchanged

        async def interposed(repository: InquiryRepository, inquiry: Any, **options: Any) -> bool:
            if str(inquiry.id) != inquiry_id:
                return await original(repository, inquiry, **options)
            await write()
            written = await original(repository, inquiry, **options)
            self.returned.append(written)
            return written

        monkeypatch.setattr(InquiryRepository, "answer_unchanged", interposed)


class TestRepliesRecordedOnce:
    """A reply is recorded by a read and one compare-and-set write; whatever changes the
    inquiry in between, and a reply that comes twice, still leave one answer."""

    async def _pending(self, broker: Broker, subject: str) -> str:
        """A pending inquiry of an agency that does not answer on its own, announced lately
        (its replies take the two statements' way), for a live request (its answer has an
        ``InquiryAnswered`` event)."""
        await publish_card(broker, "degree-check", "education", ["education.degree"])
        await broker.sql(
            "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 20000 WHERE name = $1",
            "education.degree",
        )
        await announced_lately(broker, "education")
        pending = await broker.ask(
            "education.degree",
            caller=broker.client_token("service:requests"),
            service_code="degree-check",
            subject=subject,
            wait=0,
        )
        assert pending.status_code == 202, pending.text
        return str(pending.json()["inquiry_id"])

    async def _stored(self, broker: Broker, inquiry_id: str) -> dict[str, Any]:
        rows = await broker.sql(
            "SELECT status, attempts, result, signature, answered_at, error "
            "FROM inquiry_broker.inquiry WHERE id = $1",
            uuid.UUID(inquiry_id),
        )
        stored = dict(rows[0])
        # JSONB comes as its text ('null' for a JSON null)
        stored["result"] = None if stored["result"] is None else json.loads(stored["result"])
        return stored

    async def _claimed(self, broker: Broker, event: CloudEvent) -> None:
        await broker.eventually(
            "SELECT 1 FROM inquiry_broker.inbox_message WHERE event_id = $1", bool, event.id
        )

    async def _answered_events(self, broker: Broker, inquiry_id: str) -> int:
        rows = await broker.sql(
            "SELECT count(*) AS n FROM inquiry_broker.outbox_message "
            "WHERE event_type = 'inquiry.inquiry.answered.v1' AND payload -> 'data' ->> "
            "'inquiry_id' = $1",
            inquiry_id,
        )
        return int(rows[0]["n"])

    async def test_the_same_reply_twice_is_one_answer_and_one_event(
        self, broker: Broker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inquiry_id = await self._pending(broker, complete_national_code("555000711"))
        written = InBetween(monkeypatch, inquiry_id, lambda: asyncio.sleep(0))
        duplicates = replies_counted("duplicate")
        event = await send_reply(broker, inquiry_id, "agency/education", result=DEGREE)
        caller = broker.client_token("service:requests")
        answered = await broker.client.get(
            f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=caller
        )
        assert answered.json()["status"] == "answered", answered.text
        first = await self._stored(broker, inquiry_id)

        await send_reply(broker, inquiry_id, "agency/education", event=event)
        await counted_beyond("duplicate", duplicates)
        # the first was written by the two statements' way; the second read a final inquiry
        # and went the locked way, where its inbox row told it was a duplicate
        assert written.returned == [True]
        assert await self._stored(broker, inquiry_id) == first
        assert await self._answered_events(broker, inquiry_id) == 1
        keys = (await broker.client.get("/api/v1/inquiry-types/keys")).json()
        assert verify(answered.json()["signature"], keys)["result"] == DEGREE

    async def test_a_record_handled_before_changes_nothing_even_on_a_pending_inquiry(
        self, broker: Broker
    ) -> None:
        inquiry_id = await self._pending(broker, complete_national_code("555000755"))
        event = CloudEvent.from_event(
            InquiryReply(inquiry_id=inquiry_id, status="ok", result=DEGREE),
            source="agency/education",
        )
        # its id is in the inbox already (say, first read on a topic where it was refused)
        await broker.sql(
            "INSERT INTO inquiry_broker.inbox_message (consumer, event_id, topic) "
            "VALUES ($1, $2, $3)",
            REPLIES_GROUP,
            event.id,
            REPLIES,
        )
        duplicates = replies_counted("duplicate")
        await send_reply(broker, inquiry_id, "agency/education", event=event)
        await counted_beyond("duplicate", duplicates)
        stored = await self._stored(broker, inquiry_id)
        assert (stored["status"], stored["result"], stored["signature"]) == ("pending", None, None)

    async def test_a_resend_in_between_sends_the_reply_the_locked_way(
        self, broker: Broker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inquiry_id = await self._pending(broker, complete_national_code("555000722"))
        resent = InBetween(
            monkeypatch,
            inquiry_id,
            lambda: broker.sql(
                "UPDATE inquiry_broker.inquiry SET attempts = attempts + 1, "
                "last_sent_at = now() WHERE id = $1",
                uuid.UUID(inquiry_id),
            ),
        )
        await send_reply(broker, inquiry_id, "agency/education", result=DEGREE)
        caller = broker.client_token("service:requests")
        answered = await broker.client.get(
            f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=caller
        )
        # the write found another attempt and wrote nothing; the locked unit recorded it
        assert resent.returned == [False]
        assert answered.json()["status"] == "answered", answered.text
        assert answered.json()["result"] == DEGREE
        stored = await self._stored(broker, inquiry_id)
        assert stored["attempts"] == 2
        assert await self._answered_events(broker, inquiry_id) == 1

    async def test_a_timeout_in_between_stays_the_inquiry_s_end(
        self, broker: Broker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inquiry_id = await self._pending(broker, complete_national_code("555000733"))
        timed_out = InBetween(
            monkeypatch,
            inquiry_id,
            lambda: broker.sql(
                "UPDATE inquiry_broker.inquiry SET status = 'timed_out', error = 'timeout', "
                "answered_at = now(), next_attempt_at = NULL WHERE id = $1",
                uuid.UUID(inquiry_id),
            ),
        )
        handled = replies_counted("handled")
        event = await send_reply(broker, inquiry_id, "agency/education", result=DEGREE)
        await self._claimed(broker, event)
        await counted_beyond("handled", handled)
        assert timed_out.returned == [False]
        stored = await self._stored(broker, inquiry_id)
        # a late reply: handled (its inbox row kept), the inquiry left as the sweeper ended it
        assert (stored["status"], stored["result"], stored["signature"]) == (
            "timed_out",
            None,
            None,
        )
        assert await self._answered_events(broker, inquiry_id) == 0

    async def test_the_same_reply_on_another_replica_in_between_is_a_duplicate_here(
        self, broker: Broker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inquiry_id = await self._pending(broker, complete_national_code("555000744"))
        event_id: list[str] = []

        async def recorded_elsewhere() -> None:
            # what the other replica's one statement wrote: the answer and the inbox row
            await broker.sql(
                "WITH claimed AS (INSERT INTO inquiry_broker.inbox_message "
                "(consumer, event_id, topic) VALUES ($2, $3, $4)) "
                "UPDATE inquiry_broker.inquiry SET status = 'not_found', answered_at = now(), "
                "next_attempt_at = NULL WHERE id = $1",
                uuid.UUID(inquiry_id),
                REPLIES_GROUP,
                event_id[0],
                REPLIES,
            )

        elsewhere = InBetween(monkeypatch, inquiry_id, recorded_elsewhere)
        duplicates = replies_counted("duplicate")
        event = CloudEvent.from_event(
            InquiryReply(inquiry_id=inquiry_id, status="ok", result=DEGREE),
            source="agency/education",
        )
        event_id.append(event.id)
        await send_reply(broker, inquiry_id, "agency/education", event=event)
        await counted_beyond("duplicate", duplicates)
        assert elsewhere.returned == [False]
        stored = await self._stored(broker, inquiry_id)
        assert (stored["status"], stored["result"]) == ("not_found", None)
        assert await self._answered_events(broker, inquiry_id) == 0


FLAKY_OWNER = "1583250689"


@pytest.fixture(scope="module")
async def land_registry() -> AsyncIterator[tuple[str, list[str]]]:
    """An agency with an HTTP connector (a real server on loopback) and the calls it got."""
    calls: list[str] = []
    app = FastAPI()

    @app.post("/connector")
    async def answer(body: dict[str, Any]) -> JSONResponse:
        calls.append(body["inquiry_id"])
        if body["subject"] == FLAKY_OWNER and calls.count(body["inquiry_id"]) == 1:
            return JSONResponse({"detail": "registry busy"}, status_code=503)
        return JSONResponse({"status": "ok", "result": {"parcels": 2}})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes no started event
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}/connector", calls
    server.should_exit = True
    await task


class TestHttpConnector:
    async def test_a_type_with_a_connector_is_answered_over_http_and_signed(
        self, broker: Broker, land_registry: tuple[str, list[str]]
    ) -> None:
        url, calls = land_registry
        await broker.sql(
            """INSERT INTO inquiry_broker.inquiry_type (name, provider_agency, title,
            subject_kind, input_schema, output_schema, delivery, connector_url, timeout_ms,
            max_attempts, cache_ttl_seconds, personal_data_class) VALUES ('land-registry.deeds',
            'land-registry', '{"fa": "اسناد ملکی"}', 'national_code', '{"type": "object"}',
            '{"type": "object", "required": ["parcels"]}', 'http', $1, 5000, 3, 0, 'property')
            ON CONFLICT (name) DO NOTHING""",
            url,
        )
        await publish_card(broker, "deed-service", "land-registry", ["land-registry.deeds"])
        caller = broker.client_token("service:requests")
        response = await broker.ask(
            "land-registry.deeds", caller=caller, service_code="deed-service"
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"
        assert response.json()["result"] == {"parcels": 2}
        keys = (await broker.client.get("/api/v1/inquiry-types/keys")).json()
        assert verify(response.json()["signature"], keys)["result"] == {"parcels": 2}
        assert calls.count(response.json()["inquiry_id"]) == 1
        # an agency answering over HTTP is as connected as one answering on Kafka
        assert await broker.sql(ANNOUNCEMENTS, "land-registry")

    async def test_a_failing_connector_is_called_again(
        self, broker: Broker, land_registry: tuple[str, list[str]]
    ) -> None:
        _, calls = land_registry
        response = await broker.ask(
            "land-registry.deeds",
            caller=broker.client_token("service:requests"),
            service_code="deed-service",
            subject=FLAKY_OWNER,
        )
        assert response.json()["status"] == "answered"
        assert calls.count(response.json()["inquiry_id"]) == 2


async def audited(broker: Broker, tracking_code: str) -> list[tuple[str, str]]:
    """The audit log's (decision, reason) for a tracking code, oldest first."""
    rows = await broker.sql(
        "SELECT decision, reason FROM inquiry_broker.audit_entry WHERE tracking_code = $1 "
        "ORDER BY seq",
        tracking_code,
    )
    return [(row["decision"], row["reason"]) for row in rows]


class TestPurposeBinding:
    """A card's inquiry is allowed only for a live request of that card, about that subject."""

    async def test_an_agency_client_naming_no_live_request_is_refused_at_once_and_audited(
        self, broker: Broker
    ) -> None:
        tracking_code = fresh_tracking_code()
        started = time.monotonic()
        response = await broker.ask(
            "tax.clearance",
            caller=broker.client_token("client:tax", agency="tax"),
            tracking_code=tracking_code,
            live=False,
        )
        assert response.status_code == 403
        assert response.json()["code"] == "inquiry_not_permitted"
        assert response.json()["reason"] == "purpose_unknown"
        assert time.monotonic() - started < 1.0  # an agency client is not kept waiting
        assert await audited(broker, tracking_code) == [("denied", "purpose_unknown")]

    async def test_a_live_request_about_another_subject_is_refused(self, broker: Broker) -> None:
        tracking_code = fresh_tracking_code()
        await broker.open_purpose(tracking_code, TAX_CARD, CITIZEN_B)
        response = await broker.ask(
            "tax.clearance",
            caller=broker.client_token("client:tax", agency="tax"),
            subject=ORDINARY,
            tracking_code=tracking_code,
            live=False,
        )
        assert response.status_code == 403
        assert response.json()["reason"] == "purpose_mismatch"
        assert await audited(broker, tracking_code) == [("denied", "purpose_mismatch")]

    async def test_a_live_request_of_another_service_is_refused(self, broker: Broker) -> None:
        tracking_code = fresh_tracking_code()
        await broker.open_purpose(tracking_code, "another-tax-service", ORDINARY)
        response = await broker.ask(
            "tax.clearance",
            caller=broker.client_token("client:tax", agency="tax"),
            tracking_code=tracking_code,
            live=False,
        )
        assert response.status_code == 403
        assert response.json()["reason"] == "purpose_mismatch"

    async def test_the_right_live_request_allows_the_inquiry(self, broker: Broker) -> None:
        tracking_code = fresh_tracking_code()
        await broker.open_purpose(tracking_code, TAX_CARD, ORDINARY)
        response = await broker.ask(
            "tax.clearance",
            caller=broker.client_token("client:tax", agency="tax"),
            tracking_code=tracking_code,
            live=False,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"
        assert await audited(broker, tracking_code) == [("allowed", "card")]
        # the purpose holds the subject's keyed hash, never the national code
        rows = await broker.sql(
            "SELECT * FROM inquiry_broker.live_purpose WHERE tracking_code = $1", tracking_code
        )
        assert ORDINARY not in str(dict(rows[0]))
        assert len(rows[0]["subject_hash"]) == 64

    async def test_once_the_request_is_decided_nothing_more_may_be_asked(
        self, broker: Broker
    ) -> None:
        tracking_code = fresh_tracking_code()
        caller = broker.client_token("client:tax", agency="tax")
        await broker.open_purpose(tracking_code, TAX_CARD, ORDINARY)
        handled = "SELECT count(*) AS n FROM inquiry_broker.inbox_message WHERE topic = $1"
        seen = (await broker.sql(handled, RequestStatusChanged.topic))[0]["n"]
        # a step that decides nothing leaves the purpose open
        await broker.change_status(tracking_code, TAX_CARD, "in_review", wait_for_close=False)
        await broker.eventually(
            handled, lambda rows: rows[0]["n"] > seen, RequestStatusChanged.topic
        )
        still_open = await broker.ask("tax.clearance", caller=caller, tracking_code=tracking_code)
        assert still_open.status_code == 200, still_open.text

        await broker.change_status(tracking_code, TAX_CARD, "approved")
        decided = await broker.ask("tax.clearance", caller=caller, tracking_code=tracking_code)
        assert decided.status_code == 403
        assert decided.json()["reason"] == "purpose_closed"
        assert await audited(broker, tracking_code) == [
            ("allowed", "card"),
            ("denied", "purpose_closed"),
        ]

    async def test_a_decision_that_arrives_before_the_submission_keeps_it_closed(
        self, broker: Broker
    ) -> None:
        """The two topics are not ordered with each other: the late opening reopens nothing."""
        tracking_code = fresh_tracking_code()
        await broker.change_status(tracking_code, TAX_CARD, "cancelled")
        await broker.open_purpose(tracking_code, TAX_CARD, ORDINARY)
        response = await broker.ask(
            "tax.clearance",
            caller=broker.client_token("service:requests"),
            tracking_code=tracking_code,
        )
        assert response.status_code == 403
        assert response.json()["reason"] == "purpose_closed"


class TestWaitingForThePurpose:
    """The requests service asks right after committing a request: its purpose may be late."""

    async def test_the_requests_service_is_allowed_once_the_request_arrives(
        self, broker: Broker
    ) -> None:
        tracking_code = fresh_tracking_code()
        asking = asyncio.create_task(
            broker.ask(
                "civil-registry.person",
                caller=broker.client_token("service:requests"),
                tracking_code=tracking_code,
                live=False,
            )
        )
        try:
            await asyncio.sleep(0.4)
            assert not asking.done()  # waiting for the request, not refused
            idle_in_transaction = (await broker.sql(IDLE_IN_TRANSACTION))[0]["n"]
            await broker.open_purpose(tracking_code, TAX_CARD, ORDINARY)
        finally:
            response = await asking
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"
        assert idle_in_transaction == 0  # the wait holds no transaction
        assert await audited(broker, tracking_code) == [("allowed", "card")]

    async def test_a_request_that_never_arrives_is_refused_after_a_bounded_wait(
        self, broker: Broker
    ) -> None:
        tracking_code = fresh_tracking_code()
        started = time.monotonic()
        response = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:requests"),
            tracking_code=tracking_code,
            live=False,
            wait=0,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 403
        assert response.json()["reason"] == "purpose_unknown"
        assert 1.8 <= elapsed < 4.0  # the 2 s wait, not less and not much more
        assert await audited(broker, tracking_code) == [("denied", "purpose_unknown")]


class TestScope:
    async def test_a_client_without_the_inquiries_scope_may_not_ask(self, broker: Broker) -> None:
        before = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        for caller in (
            broker.client_token("client:tax", agency="tax", scopes=()),
            broker.client_token("service:requests", scopes=("requests:work",)),
        ):
            response = await broker.ask("tax.clearance", caller=caller)
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "insufficient_scope"
        # refused before the policy is asked: not an access decision, nothing audited
        after = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        assert after == before


class TestPlatformPurposes:
    """Identity's checks are named purposes: its grants apply to them, and only it may use them."""

    async def test_the_registration_grant_reads_the_civil_registry(self, broker: Broker) -> None:
        response = await broker.ask(
            "civil-registry.person",
            caller=broker.client_token("service:identity"),
            subject=complete_national_code("555000777"),
            service_code="identity.registration",
            tracking_code=None,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"

    async def test_the_login_grant_cannot_be_used_for_another_purpose(self, broker: Broker) -> None:
        identity = broker.client_token("service:identity")
        ownership = {"params": {"mobile": "09121234567"}, "tracking_code": None}
        under_registration = await broker.ask(
            "mobile-registry.ownership",
            caller=identity,
            service_code="identity.registration",
            **ownership,  # type: ignore[arg-type]
        )
        assert under_registration.status_code == 403
        assert under_registration.json()["reason"] == "type_not_granted"
        # nor for a citizen's request: identity acts for no card
        under_a_card = await broker.ask("civil-registry.person", caller=identity)
        assert under_a_card.status_code == 403
        assert under_a_card.json()["reason"] == "caller_not_entitled"

    async def test_no_other_client_may_use_identitys_purposes(self, broker: Broker) -> None:
        denied_before = await audit_count(broker, "denied")
        callers = [
            broker.client_token("client:mobile-registry", agency="mobile-registry"),
            broker.client_token("service:requests"),
            broker.client_token("client:tax", agency="tax"),
        ]
        for caller in callers:
            response = await broker.ask(
                "mobile-registry.ownership",
                caller=caller,
                params={"mobile": "09121234567"},
                service_code="identity.login",
                tracking_code="7011111111",
            )
            assert response.status_code == 403
            assert response.json()["reason"] == "purpose_reserved"
        assert await audit_count(broker, "denied") == denied_before + len(callers)


ANNOUNCEMENTS = """
    SELECT event_id, payload FROM inquiry_broker.outbox_message
    WHERE event_type = 'inquiry.agency.active.v1' AND key = $1 ORDER BY id
"""


class TestAgencyActivity:
    async def test_an_answer_announces_its_agency_at_most_once_a_minute(
        self, broker: Broker
    ) -> None:
        await publish_card(broker, "clean-record-certificate", "police", ["police.clean-record"])
        # whatever earlier tests announced: the minute starts now
        await broker.sql("DELETE FROM inquiry_broker.agency_announcement WHERE agency = 'police'")
        before = len(await broker.sql(ANNOUNCEMENTS, "police"))
        caller = broker.client_token("service:requests")
        for subject in (complete_national_code("555000555"), complete_national_code("555000666")):
            answered = await broker.ask(
                "police.clean-record",
                caller=caller,
                subject=subject,
                service_code="clean-record-certificate",
            )
            assert answered.json()["status"] == "answered", answered.text
        announced = (await broker.sql(ANNOUNCEMENTS, "police"))[before:]
        assert len(announced) == 1  # two answers, one announcement
        envelope = json.loads(announced[0]["payload"])
        assert set(envelope["data"]) == {"agency", "at"}  # nothing about the inquiry
        throttle = await broker.sql(
            "SELECT announced_at FROM inquiry_broker.agency_announcement WHERE agency = 'police'"
        )
        assert len(throttle) == 1  # kept in the database: every replica shares it

        event = await consume_event(broker, AgencyActive.topic, str(announced[0]["event_id"]))
        assert event.type == "inquiry.agency.active.v1"
        assert event.data["agency"] == "police"

    async def test_a_cached_answer_is_not_the_agency_answering(self, broker: Broker) -> None:
        caller = broker.client_token("service:requests")
        subject = complete_national_code("555000888")
        await broker.ask("civil-registry.person", caller=caller, subject=subject)
        await broker.sql(
            "DELETE FROM inquiry_broker.agency_announcement WHERE agency = 'civil-registry'"
        )
        cached = await broker.ask("civil-registry.person", caller=caller, subject=subject)
        assert cached.json()["cached"] is True
        throttle = await broker.sql(
            "SELECT 1 FROM inquiry_broker.agency_announcement WHERE agency = 'civil-registry'"
        )
        assert throttle == []


class TestStatementsPerInquiry:
    """The round trip's units of work, statement by statement (``BEGIN``/``COMMIT`` aside)."""

    async def _statements_of_one_inquiry(
        self, broker: Broker, subject: str, *, wait: float | None = None
    ) -> list[str]:
        return (await self._one_inquiry(broker, subject, wait=wait))[0]

    async def _one_inquiry(
        self, broker: Broker, subject: str, *, wait: float | None = None
    ) -> tuple[list[str], DriverLog]:
        """The platform's statements of one inquiry, in order, and the driver's log of it."""
        assert broker.app is not None
        database = broker.app.state.broker.database
        engine = database.engine.sync_engine
        statements: list[str] = []

        def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        class SentByTheDriver(DriverLog):
            """The statements of units sent by the driver (the relay's, ``flush_wal``), in
            the same sequence."""

            def record(self, connection: Any, query: str) -> None:
                super().record(connection, query)
                # the platform's statements (not the driver's own type introspection)
                if "inquiry_broker." in query or "pg_logical_emit_message" in query:
                    statements.append(query)

        sa_event.listen(engine, "before_cursor_execute", record)
        log = SentByTheDriver()
        try:
            with driver_queries(database, log):
                response = await broker.ask(
                    "civil-registry.person",
                    caller=broker.client_token("service:identity"),
                    subject=subject,
                    service_code="identity.registration",
                    tracking_code=None,
                    **({} if wait is None else {"wait": wait}),
                )
                if wait == 0:
                    assert response.status_code == 202, response.text
                    inquiry_id = response.json()["inquiry_id"]
                    response = await broker.client.get(
                        f"/api/v1/inquiries/{inquiry_id}?wait=5",
                        headers=broker.client_token("service:identity"),
                    )
        finally:
            sa_event.remove(engine, "before_cursor_execute", record)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"
        return statements, await log.settled()

    async def test_a_new_inquiry_and_its_first_attempt_are_one_insert(self, broker: Broker) -> None:
        statements = await self._statements_of_one_inquiry(
            broker, complete_national_code("555000611")
        )
        inserts = [s for s in statements if "INSERT INTO inquiry_broker.inquiry " in s]
        assert len(inserts) == 1
        assert "INSERT INTO inquiry_broker.outbox_message" in inserts[0]
        assert "pg_advisory_xact_lock" in inserts[0]  # the audit chain's lock, same round trip

    async def test_only_the_answers_commit_waits_for_the_disk_when_an_answer_is_returned(
        self, broker: Broker
    ) -> None:
        statements = await self._statements_of_one_inquiry(
            broker, complete_national_code("555000613")
        )
        # set_config('synchronous_commit', 'off', true): the setting's name is a bound value;
        # the relay's mark of a published row is the other such unit (a lost mark republishes)
        unflushed = [
            s
            for s in statements
            if "set_config(" in s and not s.startswith("UPDATE inquiry_broker.outbox_message")
        ]
        # the new inquiry's unit: released to no one before the answer's commit flushes it
        assert len(unflushed) == 1
        assert "INSERT INTO inquiry_broker.inquiry " in unflushed[0]
        # the answer's unit (its inquiry locked, its inbox row claimed) waits for the disk
        assert all("FOR UPDATE OF inquiry" not in s for s in unflushed)
        assert not [s for s in statements if "pg_logical_emit_message" in s]

    async def test_pending_is_answered_only_once_the_new_inquiry_is_on_disk(
        self, broker: Broker
    ) -> None:
        statements = await self._statements_of_one_inquiry(
            broker, complete_national_code("555000614"), wait=0
        )
        inserted = next(
            n for n, s in enumerate(statements) if "INSERT INTO inquiry_broker.inquiry " in s
        )
        flushes = [n for n, s in enumerate(statements) if "pg_logical_emit_message" in s]
        assert len(flushes) == 1
        assert flushes[0] > inserted

    async def test_a_reply_is_a_read_and_one_write_with_no_transaction_and_no_lock(
        self, broker: Broker
    ) -> None:
        await announced_lately(broker, "civil-registry")
        statements, log = await self._one_inquiry(broker, complete_national_code("555000612"))
        claims = [s for s in statements if "INSERT INTO inquiry_broker.inbox_message" in s]
        # the reply's inbox row is claimed by the statement that writes the answer, with its
        # NOTIFY, only if the inquiry is still pending at the attempt that was read
        assert len(claims) == 1
        assert "UPDATE inquiry_broker.inquiry SET" in claims[0]
        assert "pg_notify" in claims[0]
        assert "inquiry.attempts = " in claims[0]
        # ... which was read without a lock, and neither ran inside a transaction
        assert not [s for s in statements if "FOR UPDATE OF inquiry" in s]
        assert log.in_transaction("INSERT INTO inquiry_broker.inbox_message") == [False]


async def consume_event(broker: Broker, topic: str, event_id: str) -> CloudEvent:
    """The CloudEvent ``event_id`` once the outbox relay has published it on ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.kafka,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        event = CloudEvent.from_bytes(record.value)
                        if event.id == event_id:
                            assert record.key == event.data["agency"].encode()
                            return event
    finally:
        await consumer.stop()
