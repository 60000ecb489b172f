"""Agency mode: the queue of the caller's agencies, and decisions by officers and back offices."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from panjereh.contracts.catalog import PublishedCard
from panjereh.contracts.samples import published_card
from panjereh.requests.testing import PERSON, InquiryBrokerDouble

pytestmark = pytest.mark.integration

AGENCY = "student-welfare"
APPROVE = {"outcome": "approve", "reason": {"fa": "مدارک کامل است", "en": "All in order"}}


def new_code() -> str:
    return "96" + "".join(secrets.choice("0123456789") for _ in range(9))


async def in_review(
    platform: Any, people: Any, *, agency: str = AGENCY
) -> tuple[str, dict[str, str]]:
    """A request of an agency-mode card, waiting for the agency (its inquiry answered)."""
    code = new_code()
    await platform.publish(
        published_card(code, agency=agency, mode="agency", inquiries=["civil-registry.person"])
    )
    citizen = people.citizen(f"citizen-{secrets.token_hex(4)}")
    tracking_code = await platform.submit(citizen, code, {"note": "x"})
    body = await platform.settled(citizen, tracking_code)
    assert body["status"] == "in_review"
    return tracking_code, citizen


def decision_path(tracking_code: str) -> str:
    return f"/api/v1/agency/requests/{tracking_code}/decision"


class TestQueue:
    async def test_officers_see_their_agencys_requests_in_review(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        mine, _ = await in_review(platform, people)
        theirs, _ = await in_review(platform, people, agency="tax")

        page = await platform.client.get(
            "/api/v1/agency/requests?status=in_review&page_size=100",
            headers=people.officer(AGENCY),
        )

        assert page.status_code == 200
        listed = {item["tracking_code"] for item in page.json()["items"]}
        assert mine in listed
        assert theirs not in listed
        assert all(item["status"] == "in_review" for item in page.json()["items"])

    async def test_citizens_have_no_queue(self, platform: Any, people: Any) -> None:
        response = await platform.client.get("/api/v1/agency/requests", headers=people.citizen())
        assert response.status_code == 403
        assert response.json()["code"] == "not_agency_staff"


class TestOfficerDecision:
    async def test_an_officer_approves_and_the_document_and_receipt_follow(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, citizen = await in_review(platform, people)

        decided = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=people.officer(AGENCY)
        )

        assert decided.status_code == 200, decided.text
        assert decided.json()["decided_by"] == "officer"
        assert decided.json()["rule_id"] is None
        body = (
            await platform.client.get(f"/api/v1/requests/{tracking_code}", headers=citizen)
        ).json()
        assert body["status"] == "approved"
        assert (body["history"][-1]["actor"], body["history"][-1]["reason"]) == (
            "officer",
            APPROVE["reason"],
        )
        assert body["document"] is not None
        receipt = (
            await platform.client.get(f"/api/v1/requests/{tracking_code}/receipt", headers=citizen)
        ).json()
        assert receipt["payload"]["decided_by"] == "officer"
        replay = await platform.client.post(
            f"/api/v1/requests/{tracking_code}/receipt/replay", headers=citizen
        )
        # an officer's decision has no rules to re-run: the recorded one is reported
        assert replay.json() == {
            "same_outcome": True,
            "outcome": "approve",
            "rule_id": None,
            "evidence_intact": True,
        }

    async def test_an_officer_rejects_with_the_reason_and_no_document(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, citizen = await in_review(platform, people)
        reject = {"outcome": "reject", "reason": {"fa": "مدرک ناقص است"}}

        decided = await platform.client.post(
            decision_path(tracking_code), json=reject, headers=people.officer(AGENCY)
        )

        assert decided.status_code == 200
        body = (
            await platform.client.get(f"/api/v1/requests/{tracking_code}", headers=citizen)
        ).json()
        assert body["status"] == "rejected"
        assert body["decision"]["reason"] == {"fa": "مدرک ناقص است", "en": None}
        assert body["document"] is None

    async def test_another_agencys_officer_gets_404(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, _ = await in_review(platform, people)

        response = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=people.officer("tax")
        )

        assert response.status_code == 404
        assert response.json()["code"] == "request_not_found"

    async def test_a_request_not_in_review_is_409(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, _ = await in_review(platform, people)
        officer = people.officer(AGENCY)
        first = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=officer
        )
        assert first.status_code == 200

        again = await platform.client.post(
            decision_path(tracking_code),
            json={"outcome": "reject", "reason": {"fa": "نه"}},
            headers=officer,
        )

        assert again.status_code == 409
        assert again.json()["code"] == "request_not_in_review"

    async def test_the_same_idempotency_key_replays_the_decision(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, _ = await in_review(platform, people)
        headers = {**people.officer(AGENCY), "Idempotency-Key": secrets.token_hex(8)}

        first = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=headers
        )
        second = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=headers
        )

        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json() == second.json()
        assert second.headers["idempotent-replayed"] == "true"


class TestAgencySystemDecision:
    async def test_the_back_office_decides_with_its_scope(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, citizen = await in_review(platform, people)

        decided = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=people.agency_system(AGENCY)
        )

        assert decided.status_code == 200
        assert decided.json()["decided_by"] == "agency-system"
        history = (
            await platform.client.get(f"/api/v1/requests/{tracking_code}", headers=citizen)
        ).json()["history"]
        assert history[-1]["actor"] == "agency-system"

    async def test_without_the_scope_it_may_not(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, _ = await in_review(platform, people)

        refused = await platform.client.post(
            decision_path(tracking_code),
            json=APPROVE,
            headers=people.agency_system(AGENCY, scopes=("inquiries",)),
        )

        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"  # requests:work

    async def test_another_agencys_system_gets_404(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, _ = await in_review(platform, people)

        response = await platform.client.post(
            decision_path(tracking_code), json=APPROVE, headers=people.agency_system("tax")
        )

        assert response.status_code == 404


def view_path(tracking_code: str) -> str:
    return f"/api/v1/agency/requests/{tracking_code}"


class TestOfficerView:
    """An officer decides on evidence: the agency's view of a request carries each result."""

    async def test_an_officer_sees_each_inquirys_result(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, citizen = await in_review(platform, people)

        view = await platform.client.get(view_path(tracking_code), headers=people.officer(AGENCY))

        assert view.status_code == 200, view.text
        body = view.json()
        assert (body["tracking_code"], body["status"], body["agency"]) == (
            tracking_code,
            "in_review",
            AGENCY,
        )
        (inquiry,) = body["inquiries"]
        assert (inquiry["type"], inquiry["status"]) == ("civil-registry.person", "answered")
        assert inquiry["result"] == PERSON
        # the agency's back office, deciding for the same agency, reads the same evidence
        system = await platform.client.get(
            view_path(tracking_code), headers=people.agency_system(AGENCY)
        )
        assert system.status_code == 200
        assert system.json()["inquiries"][0]["result"] == PERSON
        # what the owner and the shared route show is the status only, as before
        owner = (
            await platform.client.get(f"/api/v1/requests/{tracking_code}", headers=citizen)
        ).json()
        assert "result" not in owner["inquiries"][0]

    async def test_only_the_data_items_the_card_names_are_shown(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = new_code()
        card = published_card(code, agency=AGENCY, mode="agency").model_dump(mode="json")
        card["inquiries"] = [{"type": "civil-registry.person", "data_items": ["alive", "gone"]}]
        await platform.publish(PublishedCard.model_validate(card))
        citizen = people.citizen(f"citizen-{secrets.token_hex(4)}")
        tracking_code = await platform.submit(citizen, code, {})
        assert (await platform.settled(citizen, tracking_code))["status"] == "in_review"

        view = await platform.client.get(view_path(tracking_code), headers=people.officer(AGENCY))

        assert view.status_code == 200, view.text
        assert view.json()["inquiries"][0]["result"] == {"alive": True}

    async def test_another_agencys_officer_gets_404_and_citizens_403(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        tracking_code, citizen = await in_review(platform, people)

        other_officer = await platform.client.get(
            view_path(tracking_code), headers=people.officer("tax")
        )
        other_system = await platform.client.get(
            view_path(tracking_code), headers=people.agency_system("tax")
        )
        owner = await platform.client.get(view_path(tracking_code), headers=citizen)
        unscoped = await platform.client.get(
            view_path(tracking_code), headers=people.agency_system(AGENCY, scopes=("inquiries",))
        )
        unknown = await platform.client.get(view_path("8100000001"), headers=people.officer(AGENCY))

        # another agency's request is the same 404 as an unknown code: codes cannot be probed
        assert (other_officer.status_code, other_officer.json()["code"]) == (
            404,
            "request_not_found",
        )
        assert (other_system.status_code, other_system.json()["code"]) == (
            404,
            "request_not_found",
        )
        assert (unknown.status_code, unknown.json()["code"]) == (404, "request_not_found")
        assert (owner.status_code, owner.json()["code"]) == (403, "not_agency_staff")
        assert (unscoped.status_code, unscoped.json()["code"]) == (403, "insufficient_scope")
        for refused in (other_officer, other_system, owner, unscoped, unknown):
            assert "سارا" not in refused.text
