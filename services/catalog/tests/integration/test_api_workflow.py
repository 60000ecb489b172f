"""The authenticated API: workflow, authorization, 422s, idempotency and the events it emits.

Tokens are real ES256 JWTs verified against a JWKS served over loopback HTTP; events travel
through the outbox relay to the real (embedded) broker and are read by a test consumer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.models import messaging
from panjereh.catalog.seed_data import cards
from panjereh.common.db import Database
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.common.messaging.kafka import create_consumer, create_producer
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts import topics
from panjereh.contracts.catalog import ServicePublished, ServiceRetired

pytestmark = pytest.mark.integration

SERVICES = "/api/v1/catalog/services"
_codes = itertools.count(1)


def next_code() -> str:
    return f"78{next(_codes):09d}"


def card_body(code: str, agency: str = "tax", **changes: Any) -> dict[str, Any]:
    base = next(c for c in cards() if c.code == "11050000001")  # tax clearance, smart
    return base.model_dump(mode="json") | {"code": code, "agency": agency} | changes


@pytest.fixture(scope="module")
def tokens(token_factory: TokenFactory) -> dict[str, dict[str, str]]:
    def staff(sub: str, *roles: str) -> dict[str, str]:
        return bearer(token_factory(sub=sub, roles=list(roles)))

    return {
        "tax_admin": staff("staff-tax", "agency-admin:tax"),
        "police_admin": staff("staff-police", "agency-admin:police"),
        "authority": staff("staff-authority", "catalog-authority"),
        "citizen": bearer(token_factory(sub="citizen-1", roles=["citizen"])),
        "broker": bearer(
            token_factory(
                roles=["service:inquiry-broker"], agency="platform", scopes=["agencies:activity"]
            )
        ),
        "broker_unscoped": bearer(
            token_factory(roles=["service:inquiry-broker"], agency="platform")
        ),
        "platform_admin": staff("staff-root", "platform-admin"),
    }


class Collected:
    """What the test consumer received, by CloudEvent type."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.arrived = asyncio.Event()

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def wait_for(
        self, match: Callable[[CloudEvent], bool], within: float = 20.0
    ) -> CloudEvent:
        async def look() -> CloudEvent:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(look(), timeout=within)


@pytest.fixture(scope="module")
async def consumed(api_catalog_url: str, platform_topics: str) -> AsyncIterator[Collected]:
    """A consumer of the catalog's topics, as another service would run it."""
    settings = ServiceSettings(kafka_bootstrap_servers=platform_topics, kafka_idempotence=False)
    database = Database(api_catalog_url, pool_size=2)  # its inbox: any schema with one will do
    collected = Collected()
    consumer = IdempotentConsumer(
        name="catalog-test-consumer",
        topics=[topics.CATALOG_SERVICE_PUBLISHED, topics.CATALOG_SERVICE_RETIRED],
        database=database,
        inbox=messaging.inbox,
        consumer_factory=lambda names, group: create_consumer(settings, *names, group_id=group),
        producer_factory=lambda: create_producer(settings),
    )
    consumer.register(ServicePublished.event_type, collected.handle)
    consumer.register(ServiceRetired.event_type, collected.handle)
    await consumer.start()
    try:
        yield collected
    finally:
        await consumer.stop()
        await database.dispose()


async def create(api: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    code = body.pop("code", None) or next_code()
    return await api.post(SERVICES, json=card_body(code, **body), headers=headers)


class TestAuthentication:
    async def test_writing_needs_a_token(self, api: httpx.AsyncClient) -> None:
        response = await api.post(SERVICES, json=card_body(next_code()))
        assert response.status_code == 401
        assert response.json()["code"] == "token_missing"
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_a_forged_token_is_refused(
        self, api: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        forged = token_factory.unsigned(roles=["catalog-authority"])
        response = await api.post(f"{SERVICES}/11050000001/approve", headers=bearer(forged))
        assert response.status_code == 401


class TestWorkflowOverHttp:
    async def test_draft_submit_approve_publishes_and_announces(
        self,
        api: httpx.AsyncClient,
        tokens: dict[str, dict[str, str]],
        consumed: Collected,
    ) -> None:
        code = next_code()
        created = await create(api, tokens["tax_admin"], code=code)
        assert created.status_code == 201
        assert created.headers["location"] == f"{SERVICES}/{code}/draft"
        assert (await api.get(f"{SERVICES}/{code}")).status_code == 404  # drafts are not public
        submitted = await api.post(f"{SERVICES}/{code}/submit", headers=tokens["tax_admin"])
        assert submitted.json()["state"] == "submitted"
        approved = await api.post(f"{SERVICES}/{code}/approve", headers=tokens["authority"])
        assert approved.status_code == 200
        assert (approved.json()["version"], approved.json()["approved_by"]) == (
            1,
            "staff-authority",
        )
        public = await api.get(f"{SERVICES}/{code}")
        assert public.json()["version"] == 1

        event = await consumed.wait_for(
            lambda e: e.type == ServicePublished.event_type and e.subject == code
        )
        published = ServicePublished.model_validate(event.data)
        assert (published.code, published.version) == (code, 1)
        assert published.card.decision.model_dump(mode="json") == public.json()["decision"]
        # the event carries exactly the public card: no staff contact details, nothing lost
        assert event.data["card"] == public.json()
        assert "filled_by" not in event.data["card"]

        retired = await api.post(
            f"{SERVICES}/{code}/retire", headers=tokens["tax_admin"], json={"reason": "ادغام شد"}
        )
        assert retired.json()["card_status"] == "retired"
        gone = await consumed.wait_for(
            lambda e: e.type == ServiceRetired.event_type and e.subject == code
        )
        assert ServiceRetired.model_validate(gone.data).version == 1
        steps = await api.get(f"{SERVICES}/{code}/transitions", headers=tokens["authority"])
        assert [s["action"] for s in steps.json()] == [
            "created",
            "submitted",
            "approved",
            "retired",
        ]

    async def test_reject_with_reason_then_fix_and_resubmit(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        code = next_code()
        await create(api, tokens["tax_admin"], code=code)
        await api.post(f"{SERVICES}/{code}/submit", headers=tokens["tax_admin"])
        rejected = await api.post(
            f"{SERVICES}/{code}/reject",
            headers=tokens["authority"],
            json={"reason": "مبنای قانونی ناقص است"},
        )
        assert (rejected.json()["state"], rejected.json()["rejection_reason"]) == (
            "rejected",
            "مبنای قانونی ناقص است",
        )
        fixed = card_body(code) | {"sla_days": 2}
        del fixed["code"], fixed["agency"]
        edited = await api.put(f"{SERVICES}/{code}/draft", headers=tokens["tax_admin"], json=fixed)
        assert (edited.status_code, edited.json()["state"]) == (200, "editing")

    async def test_who_may_do_what(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        code = next_code()
        # admin of another agency cannot create, edit, submit or retire tax's cards
        refused = await create(api, tokens["police_admin"], code=code)
        assert (refused.status_code, refused.json()["code"]) == (403, "not_your_agency")
        await create(api, tokens["tax_admin"], code=code)
        content = card_body(code)
        del content["code"], content["agency"]
        for method, path, body in [
            ("PUT", f"{SERVICES}/{code}/draft", content),
            ("POST", f"{SERVICES}/{code}/submit", None),
        ]:
            response = await api.request(method, path, headers=tokens["police_admin"], json=body)
            assert (response.status_code, response.json()["code"]) == (403, "not_your_agency")
        await api.post(f"{SERVICES}/{code}/submit", headers=tokens["tax_admin"])
        # only the catalog authority approves or rejects
        for who in ("tax_admin", "citizen", "police_admin"):
            response = await api.post(f"{SERVICES}/{code}/approve", headers=tokens[who])
            assert response.status_code == 403
        response = await api.post(
            f"{SERVICES}/{code}/reject", headers=tokens["tax_admin"], json={"reason": "خیر"}
        )
        assert response.status_code == 403
        draft = await api.get(f"{SERVICES}/{code}/draft", headers=tokens["citizen"])
        assert draft.status_code == 403

    async def test_a_published_version_never_changes(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        code = next_code()
        await create(api, tokens["tax_admin"], code=code)
        await api.post(f"{SERVICES}/{code}/submit", headers=tokens["tax_admin"])
        await api.post(f"{SERVICES}/{code}/approve", headers=tokens["authority"])
        v1 = (await api.get(f"{SERVICES}/{code}/versions/1")).json()
        content = card_body(code) | {"sla_days": 9}
        del content["code"], content["agency"]
        await api.put(f"{SERVICES}/{code}/draft", headers=tokens["tax_admin"], json=content)
        await api.post(f"{SERVICES}/{code}/submit", headers=tokens["tax_admin"])
        await api.post(f"{SERVICES}/{code}/approve", headers=tokens["authority"])
        assert (await api.get(f"{SERVICES}/{code}")).json()["version"] == 2
        after = (await api.get(f"{SERVICES}/{code}/versions/1")).json()
        # the approved content and its approval never change; only its standing does
        assert after | {"status": "published"} == v1
        assert after["status"] == "superseded"
        again = await api.post(f"{SERVICES}/{code}/approve", headers=tokens["authority"])
        assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")


class TestValidationErrors:
    async def test_an_invalid_form_schema_is_422_naming_it(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": "ten"}}}
        response = await create(api, tokens["tax_admin"], form_schema=schema)
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_failed"
        assert [e["field"] for e in body["errors"]] == ["form_schema.properties.age.minimum"]

    async def test_a_rule_that_does_not_compile_is_422_naming_it(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        decision = card_body("x")["decision"]
        decision["rules"][1]["when"] = 'inquiries["tax.clearance"].has_debt =='
        english = tokens["tax_admin"] | {"Accept-Language": "en"}
        response = await create(api, english, decision=decision)
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert (error["field"], error["code"]) == ("decision.rules.1.when", "decision_rule_not_cel")
        assert "'no-debt' does not compile" in error["message"]
        persian = await create(api, tokens["tax_admin"], decision=decision)
        (error,) = persian.json()["errors"]
        assert error["code"] == "decision_rule_not_cel"
        assert "'no-debt' عبارت CEL درستی نیست" in error["message"]

    async def test_an_inconsistent_maturity_is_422_naming_it(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        decision = {"mode": "agency", "rules": [], "otherwise": "agency"}
        english = tokens["tax_admin"] | {"Accept-Language": "en"}
        response = await create(api, english, decision=decision)
        assert response.status_code == 422
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("decision.mode", "smart_needs_automatic_decision")
        ]
        assert "smart" in response.json()["errors"][0]["message"]

    async def test_an_unknown_agency_is_422_naming_it(
        self, api: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        headers = bearer(token_factory(sub="staff-x", roles=["agency-admin:nowhere"]))
        response = await create(api, headers, agency="nowhere")
        assert response.status_code == 422
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("agency", "unknown_agency")
        ]

    async def test_a_schema_rule_of_the_card_is_422_with_its_code(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        english = tokens["tax_admin"] | {"Accept-Language": "en"}
        response = await create(api, english, processing_time="three days")
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert (error["field"], error["code"]) == ("processing_time", "iso_duration")
        assert error["message"] == "must be an ISO-8601 duration such as P3D or PT2H"

    async def test_persian_is_required_on_human_text(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        response = await create(api, tokens["tax_admin"], title={"en": "Only English"})
        assert response.status_code == 422
        assert "title.fa" in [e["field"] for e in response.json()["errors"]]

    async def test_a_refused_card_leaves_nothing_behind(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        code = next_code()
        await create(api, tokens["tax_admin"], code=code, in_person_visits=3)
        draft = await api.get(f"{SERVICES}/{code}/draft", headers=tokens["tax_admin"])
        assert draft.status_code == 404


class TestIdempotency:
    async def test_same_key_same_body_returns_the_first_answer(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        body = card_body(next_code())
        headers = tokens["tax_admin"] | {"Idempotency-Key": "create-1"}
        first = await api.post(SERVICES, json=body, headers=headers)
        again = await api.post(SERVICES, json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"

    async def test_same_key_other_body_is_409(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        headers = tokens["tax_admin"] | {"Idempotency-Key": "create-2"}
        await api.post(SERVICES, json=card_body(next_code()), headers=headers)
        other = await api.post(SERVICES, json=card_body(next_code()), headers=headers)
        assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")

    async def test_the_reused_key_leaves_the_first_answer_and_creates_nothing(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        first_body, other_body = card_body(next_code()), card_body(next_code())
        headers = tokens["tax_admin"] | {"Idempotency-Key": "create-reused"}
        first = await api.post(SERVICES, json=first_body, headers=headers)
        other = await api.post(SERVICES, json=other_body, headers=headers)
        assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
        assert other.headers["content-type"] == "application/problem+json"
        refused = await api.get(
            f"{SERVICES}/{other_body['code']}/draft", headers=tokens["tax_admin"]
        )
        assert refused.status_code == 404  # the refused body created nothing
        again = await api.post(SERVICES, json=first_body, headers=headers)
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.headers["idempotent-replayed"] == "true"

    async def test_a_fresh_answer_is_not_marked_replayed(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        headers = tokens["tax_admin"] | {"Idempotency-Key": "create-fresh"}
        first = await api.post(SERVICES, json=card_body(next_code()), headers=headers)
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers

    async def test_keys_belong_to_their_caller(
        self, api: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        """Two admins using one key do not meet: each gets the answer to their own request."""
        one = bearer(token_factory(sub="staff-tax-1", roles=["agency-admin:tax"]))
        two = bearer(token_factory(sub="staff-tax-2", roles=["agency-admin:tax"]))
        key = {"Idempotency-Key": "shared-key"}
        first = await api.post(SERVICES, json=card_body(next_code()), headers=one | key)
        second = await api.post(SERVICES, json=card_body(next_code()), headers=two | key)
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["code"] != second.json()["code"]
        assert "idempotent-replayed" not in second.headers

    @pytest.mark.parametrize("key", [b"x" * 201, "clé".encode(), b"tab\there"])
    async def test_a_malformed_key_is_422_naming_the_header(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]], key: bytes
    ) -> None:
        code = next_code()
        # raw bytes: a client may send what httpx would refuse to encode from text
        headers = [(name.encode(), value.encode()) for name, value in tokens["tax_admin"].items()]
        headers.append((b"Idempotency-Key", key))
        response = await api.post(SERVICES, json=card_body(code), headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_idempotency_key"
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("Idempotency-Key", "invalid_idempotency_key")
        ]
        draft = await api.get(f"{SERVICES}/{code}/draft", headers=tokens["tax_admin"])
        assert draft.status_code == 404

    async def test_without_a_key_a_repeat_is_a_conflict(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        body = card_body(next_code())
        await api.post(SERVICES, json=body, headers=tokens["tax_admin"])
        again = await api.post(SERVICES, json=body, headers=tokens["tax_admin"])
        assert (again.status_code, again.json()["code"]) == (409, "service_code_taken")


class TestAgencies:
    async def test_the_broker_reports_agency_activity(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        before = (await api.get("/api/v1/catalog/agencies/police")).json()
        assert before["connected"] is False
        refused = await api.post(
            "/api/v1/catalog/agencies/police/activity", headers=tokens["citizen"]
        )
        assert refused.status_code == 403
        unscoped = await api.post(
            "/api/v1/catalog/agencies/police/activity", headers=tokens["broker_unscoped"]
        )
        assert unscoped.status_code == 403
        assert unscoped.json()["code"] == "insufficient_scope"
        reported = await api.post(
            "/api/v1/catalog/agencies/police/activity", headers=tokens["broker"]
        )
        assert reported.status_code == 204
        after = (await api.get("/api/v1/catalog/agencies/police")).json()
        assert after["connected"] is True
        stats = (await api.get("/api/v1/catalog/stats")).json()
        assert stats["agencies_connected_share"] > 0

    async def test_only_platform_admins_register_agencies(
        self, api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
    ) -> None:
        agency = {
            "code": "meteorology",
            "name": {"fa": "سازمان هواشناسی کشور", "en": "Meteorological Organization"},
            "kind": "organisation",
            "parent": "interior",
        }
        refused = await api.post(
            "/api/v1/catalog/agencies", json=agency, headers=tokens["tax_admin"]
        )
        assert refused.status_code == 403
        created = await api.post(
            "/api/v1/catalog/agencies", json=agency, headers=tokens["platform_admin"]
        )
        assert (created.status_code, created.json()["parent"]) == (201, "interior")


async def test_concurrent_requests_with_one_key_create_one_card(
    api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
) -> None:
    body = card_body(next_code())
    headers = tokens["tax_admin"] | {"Idempotency-Key": "create-concurrently"}
    first, second = await asyncio.gather(
        api.post(SERVICES, json=body, headers=headers),
        api.post(SERVICES, json=body, headers=headers),
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    replayed = sorted(str(r.headers.get("idempotent-replayed")) for r in (first, second))
    assert replayed == ["None", "true"]  # one created it, the other got the same answer
    steps = await api.get(f"{SERVICES}/{body['code']}/transitions", headers=tokens["authority"])
    assert [s["action"] for s in steps.json()] == ["created"]  # one card, created once
