"""Requests processed by the worker: inquiries at the broker, the card's rules, the outcome.

A real app with its workers on its own migrated database, the embedded Kafka broker, and the
inquiry broker and identity as real HTTP servers on loopback (``panjereh.requests.testing``).
"""

from __future__ import annotations

import io
import secrets
from typing import Any

import pytest
import segno
from sqlalchemy import text

from panjereh.common import jwk
from panjereh.contracts.samples import published_card
from panjereh.requests.service.documents import QR_ERROR, QR_SCALE
from panjereh.requests.testing import PERSON, InquiryBrokerDouble

pytestmark = pytest.mark.integration

PERSON_INQUIRY = "civil-registry.person"
ALIVE = f'inquiries["{PERSON_INQUIRY}"].alive'


def qr_png_of(content: str) -> bytes:
    """The PNG the service renders for a QR code holding ``content``."""
    buffer = io.BytesIO()
    segno.make(content, error=QR_ERROR).save(buffer, kind="png", scale=QR_SCALE)
    return buffer.getvalue()


def new_code() -> str:
    return "98" + "".join(secrets.choice("0123456789") for _ in range(9))


def rule(rule_id: str, when: str, outcome: str, reason: str) -> dict[str, Any]:
    return {"id": rule_id, "when": when, "outcome": outcome, "reason": {"fa": reason, "en": reason}}


LOAN_RULES = [
    rule("deceased", f"!{ALIVE}", "reject", "متقاضی در قید حیات نیست"),
    rule("too-much", "inputs.amount > 1000", "reject", "مبلغ بیش از سقف وام است"),
    rule("eligible", f"{ALIVE} && citizen.first_name == 'سارا'", "approve", "واجد شرایط"),
]


async def smart_card(platform: Any, **overrides: Any) -> str:
    code = new_code()
    card: dict[str, Any] = {
        "agency": "student-welfare",
        "inquiries": [PERSON_INQUIRY],
        "rules": LOAN_RULES,
        "otherwise": "reject",
        **overrides,
    }
    await platform.publish(published_card(code, **card))
    return code


def me() -> str:
    return f"citizen-{secrets.token_hex(4)}"


async def outbox(platform: Any, tracking_code: str) -> list[tuple[str, dict[str, Any]]]:
    async with platform.database.transaction() as session:
        rows = await session.execute(
            text("SELECT topic, payload FROM requests.outbox_message WHERE key = :k ORDER BY id"),
            {"k": tracking_code},
        )
    return [(topic, payload["data"]) for topic, payload in rows.all()]


class TestSmartDecision:
    async def test_an_eligible_request_is_approved_end_to_end(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await smart_card(platform)
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 500})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "approved"
        assert [(h["from"], h["to"], h["actor"]) for h in body["history"]] == [
            (None, "submitted", "citizen"),
            ("submitted", "awaiting_inquiries", "system"),
            ("awaiting_inquiries", "deciding", "system"),
            ("deciding", "approved", "rules"),
        ]
        assert body["decision"]["rule_id"] == "eligible"
        assert body["decision"]["decided_by"] == "rules"
        assert body["decision"]["reason"]["fa"] == "واجد شرایط"
        assert body["inquiries"][0]["status"] == "answered"
        # asked once, under the request's purpose, with the key that makes retries replays
        ((key, asked),) = broker.asked_for(tracking_code)
        assert key == f"{tracking_code}:{PERSON_INQUIRY}"
        assert asked["subject"] == "0013542419"
        assert asked["purpose"]["service_code"] == code
        assert asked["purpose"]["legal_basis"]

        document = await platform.client.get(
            f"/api/v1/requests/{tracking_code}/document", headers=citizen
        )
        assert document.status_code == 200
        issued = document.json()
        assert issued["payload"]["holder"] == {"national_code": "0013542419"}
        assert issued["payload"]["decision"] == {
            "outcome": "approve",
            "rule_id": "eligible",
            "decided_by": "rules",
        }
        assert issued["document_id"] == body["document"]["document_id"]
        # a person scanning the QR lands on the public page, not on the JSON API
        base = platform.app.state.settings.public_base_url.rstrip("/")
        page = f"{base}/verify/{issued['document_id']}"
        assert issued["verify_url"] == page
        assert body["document"]["verify_url"] == page
        keys = (await platform.client.get("/api/v1/verify/keys")).json()
        header, payload = jwk.verify_compact(issued["jws"], keys)
        assert header["typ"] == "panjereh-document+jws"
        assert payload == issued["payload"]

        verified = await platform.client.get(f"/api/v1/verify/{issued['document_id']}")
        assert verified.status_code == 200
        assert verified.json()["valid"] is True
        assert verified.json()["holder_masked"] == "0********9"
        assert verified.json()["service_code"] == code

        qr = await platform.client.get(f"/api/v1/verify/{issued['document_id']}/qr.png")
        assert qr.status_code == 200
        assert qr.headers["content-type"] == "image/png"
        assert qr.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert qr.content == qr_png_of(page)

        events = await outbox(platform, tracking_code)
        decided = [data for topic, data in events if topic == "requests.request.decided"]
        assert decided == [
            {
                "tracking_code": tracking_code,
                "service_code": code,
                "outcome": "approve",
                "decided_by": "rules",
                "rule_id": "eligible",
                "at": decided[0]["at"],
            }
        ]
        changed = [
            (data["from"], data["to"])
            for topic, data in events
            if topic == "requests.request.status-changed"
        ]
        assert changed[-1] == ("deciding", "approved")
        assert all(
            "0013542419" not in str(data) for topic, data in events if "submitted" not in topic
        )

    async def test_decisions_show_in_the_metrics_by_rule(self, platform: Any, people: Any) -> None:
        from prometheus_client import REGISTRY  # noqa: PLC0415

        code = await smart_card(platform)
        labels = {
            "outcome": "approve",
            "decided_by": "rules",
            "service_code": code,
            "rule_id": "eligible",
        }
        before = REGISTRY.get_sample_value("panjereh_request_decisions_total", labels) or 0.0
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 500})
        assert (await platform.settled(citizen, tracking_code))["status"] == "approved"
        assert REGISTRY.get_sample_value("panjereh_request_decisions_total", labels) == before + 1
        text = (await platform.client.get("/metrics")).text
        assert "panjereh_request_transitions_total" in text
        assert tracking_code not in text

    async def test_a_matching_reject_rule_rejects_with_its_reason(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await smart_card(platform)
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 5000})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "rejected"
        assert body["decision"]["rule_id"] == "too-much"
        assert body["decision"]["reason"] == {
            "fa": "مبلغ بیش از سقف وام است",
            "en": "مبلغ بیش از سقف وام است",
        }
        assert body["document"] is None
        missing = await platform.client.get(
            f"/api/v1/requests/{tracking_code}/document", headers=citizen
        )
        assert missing.status_code == 404
        assert missing.json()["code"] == "document_not_found"

    async def test_no_matching_rule_rejects_when_the_card_says_so(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await smart_card(platform, rules=[rule("never", "false", "approve", "هرگز")])
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "rejected"
        assert body["decision"]["rule_id"] is None
        assert body["decision"]["reason"]["en"] == (
            "No decision rule of this service matched the request"
        )

    async def test_no_matching_rule_goes_to_the_agency_when_the_card_says_so(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await smart_card(
            platform, rules=[rule("never", "false", "approve", "هرگز")], otherwise="agency"
        )
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "in_review"
        assert body["decision"] is None
        assert body["history"][-1]["actor"] == "rules"
        items = [
            data
            for topic, data in await outbox(platform, tracking_code)
            if topic == "agency.student-welfare.requests"
        ]
        assert len(items) == 1
        assert items[0]["status"] == "in_review"
        assert items[0]["inputs"] == {"amount": 1}

    async def test_a_rule_that_cannot_be_evaluated_sends_the_request_to_review(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble, caplog: Any
    ) -> None:
        rules = [
            rule("broken", "inputs.semester > 2", "reject", "—"),
            rule("all", "true", "approve", "—"),
        ]
        code = await smart_card(platform, rules=rules, otherwise="reject")
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        # never approved by the later "true", never rejected by "otherwise"
        assert body["status"] == "in_review"
        assert body["decision"] is None
        assert (body["history"][-1]["to"], body["history"][-1]["actor"]) == ("in_review", "system")
        assert "could not be evaluated" in body["history"][-1]["reason"]["en"]
        logged = [r for r in caplog.records if "rules not evaluated" in r.getMessage()]
        assert logged
        assert all("0013542419" not in str(r.__dict__) for r in logged)

    async def test_a_hostile_rule_is_bounded_and_the_worker_goes_on(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        hostile = rule(
            "hostile", "inputs.l.map(x, inputs.l.map(y, x + y).size()).size() > 0", "approve", "—"
        )
        code = await smart_card(platform, rules=[hostile], otherwise="reject")
        citizen = people.citizen(me())
        timeouts = platform.app.state.evaluator.timeouts
        tracking_code = await platform.submit(citizen, code, {"l": list(range(3000))})

        body = await platform.settled(citizen, tracking_code, within=15)

        assert body["status"] == "in_review"
        assert platform.app.state.evaluator.timeouts == timeouts + 1
        # the worker is alive and the next request is decided normally
        fine = await platform.submit(citizen, await smart_card(platform), {"amount": 10})
        assert (await platform.settled(citizen, fine))["status"] == "approved"

    async def test_a_card_without_inquiries_is_decided_directly(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await smart_card(
            platform, inquiries=[], rules=[rule("small", "inputs.amount < 10", "approve", "کم")]
        )
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "approved"
        assert [h["to"] for h in body["history"]] == ["submitted", "deciding", "approved"]
        assert broker.asked_for(tracking_code) == []

    async def test_citizen_fields_come_from_the_civil_registry(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        when = (
            f"citizen.national_code == '0013542419' && citizen.last_name == '{PERSON['last_name']}'"
            " && citizen.birth_date == '1990-03-21'"
        )
        code = await smart_card(platform, rules=[rule("me", when, "approve", "—")])
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {})

        assert (await platform.settled(citizen, tracking_code))["decision"]["rule_id"] == "me"


class TestInquiries:
    async def test_no_civil_registry_record_fails_the_request_with_a_reason(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        broker.registry[PERSON_INQUIRY] = lambda subject: ("not_found", None)
        code = await smart_card(platform, otherwise="reject")
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "failed"
        assert body["inquiries"][0]["status"] == "not_found"
        reason = body["history"][-1]["reason"]
        assert PERSON_INQUIRY in reason["en"]
        assert "no record" in reason["en"]
        assert PERSON_INQUIRY in reason["fa"]
        assert body["decision"] is None

    async def test_a_failed_inquiry_goes_to_the_agency_when_the_card_hands_over(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        broker.registry[PERSON_INQUIRY] = lambda subject: ("timed_out", None)
        code = await smart_card(platform, otherwise="agency")
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "in_review"
        assert body["inquiries"][0]["status"] == "failed"
        assert "could not be answered" in body["history"][-1]["reason"]["en"]

    async def test_a_purpose_the_broker_does_not_know_yet_is_asked_again(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        broker.refuse_unknown_purpose = 2
        code = await smart_card(platform)
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "approved"
        keys = [key for key, _ in broker.asked_for(tracking_code)]
        assert keys == [f"{tracking_code}:{PERSON_INQUIRY}"] * 3
        assert len(broker.of_request(tracking_code)) == 1

    async def test_a_refusal_by_policy_is_final(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        broker.refuse[PERSON_INQUIRY] = "type_not_on_card"
        code = await smart_card(platform, otherwise="reject")
        citizen = people.citizen(me())
        tracking_code = await platform.submit(citizen, code, {"amount": 1})

        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "failed"
        assert body["inquiries"][0]["status"] == "failed"
        assert len(broker.asked_for(tracking_code)) == 1  # asking again cannot help


class TestServiceToken:
    async def test_the_token_is_cached_and_renewed_once_the_broker_refuses_it(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble, doubles: Any
    ) -> None:
        token = platform.app.state.service_token
        code = await smart_card(platform)
        citizen = people.citizen(me())
        await platform.settled(citizen, await platform.submit(citizen, code, {"amount": 1}))
        fetched = token.fetched

        again = await platform.submit(citizen, code, {"amount": 2})
        assert (await platform.settled(citizen, again))["status"] == "approved"
        assert token.fetched == fetched  # cached: no new token for the next request

        doubles.identity.revoke_all()  # the broker now answers 401 to the cached token
        renewed = await platform.submit(citizen, code, {"amount": 3})
        assert (await platform.settled(citizen, renewed))["status"] == "approved"
        assert token.fetched == fetched + 1
