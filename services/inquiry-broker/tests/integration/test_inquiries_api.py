"""The inquiry broker on real PostgreSQL and a real Kafka-protocol broker, with simulated
agencies answering over Kafka and callers presenting ES256 tokens verified through a JWKS."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from panjereh.agency_sdk import KafkaSettings, fetch_input_schemas
from panjereh.agency_simulators import special
from panjereh.agency_simulators.agencies import build, input_schemas
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.inquiry import InquiryReply
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries
from panjereh.common.messaging.kafka import create_topics
from panjereh.devstack.embedded import free_port
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import create_app
from panjereh.inquiry_broker.signing import InvalidAnswerSignature, b64url, b64url_decode, verify

pytestmark = pytest.mark.integration

#: Agencies simulated in these tests; ``education`` is deliberately absent (timeouts).
RUNNING_AGENCIES = ("civil-registry", "mobile-registry", "tax", "police")
ORDINARY = "0499370899"
CITIZEN_B = "0790419904"
TAX_CARD = "tax-clearance-certificate"


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Broker:
    """The running app, its database and a way to mint callers."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, kafka: str, tokens: TokenFactory
    ) -> None:
        self.client = client
        self.url = url
        self.kafka = kafka
        self.tokens = tokens

    def client_token(self, role: str, agency: str | None = None) -> dict[str, str]:
        sub = role.replace(":", "-")
        return bearer(self.tokens(roles=[role], agency=agency, sub=sub, national_code=None))

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
        tracking_code: str | None = "7001234567",
        wait: float = 5,
    ) -> httpx.Response:
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
    card = {
        "code": code,
        "agency": agency,
        "inquiries": [{"type": name} for name in inquiries],
        # the catalog's shape: LegalResource objects
        "legal_basis": [
            {
                "title": {"fa": "قانون مالیات‌های مستقیم", "en": "Direct Taxes Act"},
                "reference": "ماده ۱۸۶",
            }
        ],
    }
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
        [*PLATFORM_TOPICS, *(agency_inquiries(a) for a in (*RUNNING_AGENCIES, "education"))],
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
        sweep_interval_seconds=0.05,
    )
    try:
        async with running_app(create_app(settings)) as client:
            broker = Broker(client, url, kafka_bootstrap_servers, token_factory)
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
) -> None:
    """Put an agency's reply on ``inquiry.replies`` as if ``source`` had sent it."""
    event = CloudEvent.from_event(
        InquiryReply(inquiry_id=inquiry_id, status=status, result=result),  # type: ignore[arg-type]
        source=source,
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker.kafka, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait("inquiry.replies", event.to_bytes(), key=inquiry_id.encode())
    finally:
        await producer.stop()


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
            service_code="citizen-registration",
            tracking_code=None,
        )
        assert owned.status_code == 200, owned.text
        assert owned.json()["result"] == {"owned": True}
        nobody = await broker.ask(
            "mobile-registry.ownership",
            caller=identity,
            params={"mobile": "09121230000"},
            service_code="citizen-registration",
            tracking_code=None,
        )
        assert nobody.json()["result"] == {"owned": False}

    async def test_a_grant_covers_only_its_types(self, broker: Broker) -> None:
        response = await broker.ask(
            "police.clean-record",
            caller=broker.client_token("service:identity"),
            service_code="citizen-registration",
        )
        assert response.status_code == 403


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

    async def test_an_agency_that_never_answers_times_out_after_retries(
        self, broker: Broker
    ) -> None:
        await publish_card(broker, "degree-service", "education", ["education.degree"])
        await broker.sql(
            "UPDATE inquiry_broker.inquiry_type SET timeout_ms = 900 WHERE name = $1",
            "education.degree",
        )
        started = time.monotonic()
        response = await broker.ask(
            "education.degree",
            caller=broker.client_token("service:requests"),
            service_code="degree-service",
            wait=10,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.json()["status"] == "timed_out"
        assert elapsed < 3.0  # at the type's deadline, not after the caller's 10 s
        rows = await broker.sql(
            "SELECT attempts FROM inquiry_broker.inquiry WHERE id = $1",
            uuid.UUID(response.json()["inquiry_id"]),
        )
        assert rows[0]["attempts"] >= 2  # resent before giving up


class TestBadInput:
    @pytest.mark.parametrize(
        ("inquiry_type", "subject", "params", "code", "field"),
        [
            ("civil-registry.person", "0684159415", {}, "invalid_subject", None),
            (
                "mobile-registry.ownership",
                ORDINARY,
                {"mobile": "12"},
                "validation_failed",
                "params.mobile",
            ),
            ("no-such.type", ORDINARY, {}, "inquiry_type_unknown", None),
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
    ) -> None:
        before = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        response = await broker.ask(
            inquiry_type,
            caller=broker.client_token("service:identity"),
            subject=subject,
            params=params,
        )
        assert response.status_code == 422
        assert response.json()["code"] == code
        if field:
            assert response.json()["errors"][0]["field"] == field
        after = await broker.sql("SELECT count(*) AS n FROM inquiry_broker.audit_entry")
        assert after == before

    async def test_wait_above_ten_seconds_is_refused(self, broker: Broker) -> None:
        response = await broker.ask(
            "tax.clearance", caller=broker.client_token("service:requests"), wait=11
        )
        assert response.status_code == 422


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
        first = await broker.client.post("/api/v1/inquiries?wait=5", headers=caller, json=body)
        again = await broker.client.post("/api/v1/inquiries?wait=5", headers=caller, json=body)
        assert first.status_code == again.status_code == 200
        assert again.json()["inquiry_id"] == first.json()["inquiry_id"]
        changed = {**body, "subject": "4032152314"}
        reused = await broker.client.post("/api/v1/inquiries", headers=caller, json=changed)
        assert reused.status_code == 409
        assert reused.json()["code"] == "idempotency_key_reused"


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

        inbox = "SELECT count(*) AS n FROM inquiry_broker.inbox_message WHERE topic = $1"
        seen_before = (await broker.sql(inbox, "inquiry.replies"))[0]["n"]
        await reply("agency/tax", good)  # not the agency that was asked: ignored
        await reply("agency/education", {"degree": "wizard"})  # breaks the output schema
        await reply("agency/education", good)  # too late: the inquiry is already final
        answered = await broker.client.get(
            f"/api/v1/inquiries/{inquiry_id}?wait=10", headers=caller
        )
        assert answered.json()["status"] == "failed"
        assert answered.json()["error"] == "invalid_result"
        # all three replies were handled (the late one too), and the answer did not change
        await broker.eventually(
            inbox, lambda rows: rows[0]["n"] >= seen_before + 3, "inquiry.replies"
        )
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
