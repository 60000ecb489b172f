"""Whole-platform journeys through the gateway, as a mobile app, an agency and a stranger.

Every process is real and separate (``make run``'s stack): the gateway, identity, the catalog,
the requests service, the inquiry broker, the simulated agencies, PostgreSQL and the embedded
broker. The journeys:

1. a citizen logs in by OTP, finds a smart service by a Persian search, submits, is approved by
   the card's rules, downloads the document, a stranger verifies it, and the data tracker shows
   which agency was asked what, by whom and why;
2. a request the rules reject, with the reason, as the citizen sees it;
3. an agency-mode request an officer decides, the citizen told by SMS;
4. an agency admin drafts a new smart card, the catalog authority (another person) approves
   it, and within seconds it is found by search and decides requests (events, no restart);
5. an agency system's inquiry that a live request allows, and ones it does not.

Then the platform's KPIs (catalog and request stats) agree with what the journeys did.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from panjereh.devstack.testing import RunningStack
from tests.e2e.platform_api import (
    BIRTH_REGISTRATION,
    CATALOG_AUTHORITY,
    CIVIL_REGISTRY_ADMIN,
    CIVIL_REGISTRY_OFFICER,
    COPY_OF_BIRTH_CERTIFICATE,
    CRIMINAL_RECORD,
    CRIMINAL_RECORD_CERTIFICATE,
    PLATFORM_ADMIN,
    People,
    client_token,
    login,
    polite,
    read_sms,
    submit,
    until_logins_work,
    wait_for,
)

pytestmark = pytest.mark.e2e

NEW_CARD_WORDS = "گواهی آزمایشی سکونت"  # "test certificate of residence": no seeded card says it
#: the request's end reaches the broker as an event (outbox, Kafka, its purposes consumer)
CLOSE_WITHIN = 30.0


@dataclass
class Ledger:
    """What this module did, to check the platform's KPIs against at the end."""

    catalog_before: dict[str, Any]
    requests_before: dict[str, Any]
    #: tracking code → the final status the journey saw
    requests: dict[str, str] = field(default_factory=dict)
    cards_published: int = 0
    smart_cards_published: int = 0


@pytest.fixture(scope="module")
def gateway_client(platform: RunningStack, people: People) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway, timeout=15.0) as client:
        until_logins_work(client, people)
        yield client


@pytest.fixture(scope="module")
def people() -> People:
    return People("2730", "093673")


@pytest.fixture(scope="module")
def ledger(gateway_client: httpx.Client) -> Ledger:
    return Ledger(
        catalog_before=gateway_client.get("/api/v1/catalog/stats").json(),
        requests_before=gateway_client.get("/api/v1/requests/stats").json(),
    )


def jws_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


class TestCitizenJourneys:
    def test_1_search_submit_approved_document_verified_and_tracked(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        citizen = login(gateway, people.national_code(), people.mobile())
        me = gateway.get("/api/v1/me", headers=citizen.headers).json()
        assert me["national_code"] == citizen.national_code

        # written as people type it: Arabic yeh and kaf, a ZWNJ-less compound
        found = gateway.get("/api/v1/catalog/services", params={"q": "المثني شناسنامه"}).json()
        smart = [item for item in found["items"] if item["maturity"] == 5]
        assert smart, found
        assert smart[0]["code"] == COPY_OF_BIRTH_CERTIFICATE
        card = gateway.get(f"/api/v1/catalog/services/{smart[0]['code']}").json()
        assert card["decision"]["mode"] == "automatic"

        tracking_code = submit(gateway, citizen, card["code"])
        request = wait_for(gateway, citizen, tracking_code)
        ledger.requests[tracking_code] = request["status"]
        assert request["status"] == "approved", request
        assert request["decision"]["decided_by"] == "rules"
        assert [h["to"] for h in request["history"]] == [
            "submitted",
            "awaiting_inquiries",
            "deciding",
            "approved",
        ]
        mine = gateway.get("/api/v1/requests", headers=citizen.headers).json()
        assert [item["tracking_code"] for item in mine["items"]] == [tracking_code]

        document = gateway.get(
            f"/api/v1/requests/{tracking_code}/document", headers=citizen.headers
        )
        assert document.status_code == 200, document.text
        held = document.json()
        assert held["payload"]["service_code"] == COPY_OF_BIRTH_CERTIFICATE
        # a stranger (no token) checks the document the citizen shows them
        with httpx.Client(base_url=str(gateway.base_url), timeout=10.0) as stranger:
            verified = stranger.get(f"/api/v1/verify/{held['document_id']}").json()
            assert verified["valid"] is True
            assert citizen.national_code not in json.dumps(verified)
            presented = stranger.post(
                f"/api/v1/verify/{held['document_id']}", json={"jws": held["jws"]}
            )
            assert presented.status_code == 200, presented.text
            assert presented.json()["valid"] is True
            # the same document with one claim changed (the signature kept) is not valid
            header, _, signature = held["jws"].split(".")
            changed = jws_payload(held["jws"]) | {"service_code": CRIMINAL_RECORD_CERTIFICATE}
            body = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
            forged = stranger.post(
                f"/api/v1/verify/{held['document_id']}",
                json={"jws": f"{header}.{body}.{signature}"},
            )
            assert forged.status_code == 200, forged.text
            assert forged.json()["valid"] is False

        # the data tracker: which agency was asked what, by whom, and why
        tracker = gateway.get("/api/v1/me/data-access", headers=citizen.headers).json()["items"]
        for_request = [e for e in tracker if e["purpose"]["tracking_code"] == tracking_code]
        # one read of the civil registry; an ask the broker refused a moment earlier because it
        # had not yet heard of the request (then asked again) is listed too, as a refusal
        assert {e["inquiry_type"] for e in for_request} == {"civil-registry.person"}
        allowed = [e for e in for_request if e["decision"] == "allowed"]
        assert len(allowed) == 1, for_request
        entry = allowed[0]
        assert entry["provider_agency"] == "civil-registry"
        assert entry["caller"]["principal"] == "service:requests"
        assert entry["purpose"]["service_code"] == COPY_OF_BIRTH_CERTIFICATE
        assert entry["purpose"]["legal_basis"]
        # the registration check at first login is there too, under the platform's purpose
        assert {"identity.registration", "identity.login"} & {
            e["purpose"]["service_code"] for e in tracker
        }

    def test_2_the_rules_reject_with_the_reason(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        citizen = login(gateway, CRIMINAL_RECORD, people.mobile())
        tracking_code = submit(gateway, citizen, CRIMINAL_RECORD_CERTIFICATE)
        request = wait_for(gateway, citizen, tracking_code)
        ledger.requests[tracking_code] = request["status"]
        assert request["status"] == "rejected", request
        assert request["decision"]["decided_by"] == "rules"
        assert request["decision"]["rule_id"] == "has-record"
        assert request["decision"]["reason"]["fa"]
        assert request["decision"]["reason"]["en"] == "A criminal record is on file"
        assert {(i["type"], i["status"]) for i in request["inquiries"]} == {
            ("civil-registry.person", "answered"),
            ("police.clean-record", "answered"),
        }
        no_document = gateway.get(
            f"/api/v1/requests/{tracking_code}/document", headers=citizen.headers
        )
        assert no_document.status_code == 404
        replay = gateway.post(
            f"/api/v1/requests/{tracking_code}/receipt/replay", headers=citizen.headers
        ).json()
        assert replay["same_outcome"] is True
        assert replay["outcome"] == "reject"

    def test_3_an_officer_decides_and_the_citizen_is_told_by_sms(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        citizen = login(gateway, people.national_code(), people.mobile())
        tracking_code = submit(gateway, citizen, BIRTH_REGISTRATION)
        wait_for(gateway, citizen, tracking_code, {"in_review"})
        sent_before = len(read_sms(gateway, citizen.mobile))

        officer = login(gateway, CIVIL_REGISTRY_OFFICER, people.mobile())
        queue = gateway.get(
            "/api/v1/agency/requests",
            params={"status": "in_review", "page_size": 100},
            headers=officer.headers,
        ).json()
        assert tracking_code in {item["tracking_code"] for item in queue["items"]}
        seen_by_officer = gateway.get(f"/api/v1/requests/{tracking_code}", headers=officer.headers)
        assert seen_by_officer.status_code == 200
        decided = gateway.post(
            f"/api/v1/agency/requests/{tracking_code}/decision",
            json={
                "outcome": "reject",
                "reason": {"fa": "گواهی ولادت بیمارستان ناخواناست", "en": "Illegible"},
            },
            headers=officer.headers,
        )
        assert decided.status_code == 200, decided.text
        request = wait_for(gateway, citizen, tracking_code)
        ledger.requests[tracking_code] = request["status"]
        assert request["status"] == "rejected"
        assert request["decision"]["decided_by"] == "officer"
        assert request["decision"]["reason"]["en"] == "Illegible"
        messages = read_sms(gateway, citizen.mobile, count=sent_before + 1)
        assert tracking_code in messages[0]["tokens"]
        # decided once: a second decision is refused
        again = gateway.post(
            f"/api/v1/agency/requests/{tracking_code}/decision",
            json={"outcome": "approve", "reason": {"fa": "دوباره", "en": "Again"}},
            headers=officer.headers,
        )
        assert again.status_code == 409, again.text


class TestNewSmartCard:
    def test_4_drafted_approved_by_another_person_then_searchable_and_deciding(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        # a code of the admin's agency no other module uses (this journey runs on replicas too)
        new_card = f"11010{people.code_prefix}99"
        admin = login(gateway, CIVIL_REGISTRY_ADMIN, people.mobile())
        authority = login(gateway, CATALOG_AUTHORITY, people.mobile())
        base = gateway.get(f"/api/v1/catalog/services/{COPY_OF_BIRTH_CERTIFICATE}").json()
        content = {
            key: value
            for key, value in base.items()
            if key
            not in {
                "version",
                "status",
                "approved_by",
                "approving_organisation",
                "approved_at",
                "code",
                "agency",
            }
        }
        content |= {
            "code": new_card,
            "agency": "civil-registry",
            "title": {"fa": NEW_CARD_WORDS, "en": "Test certificate of residence"},
            "keywords": ["سکونت", "محل اقامت"],
            "decision": {
                "mode": "automatic",
                "rules": [
                    {
                        "id": "living",
                        "when": 'inquiries["civil-registry.person"].alive',
                        "outcome": "approve",
                        "reason": {"fa": "متقاضی در قید حیات است", "en": "Alive"},
                    }
                ],
                "otherwise": "reject",
            },
        }
        created = gateway.post(
            "/api/v1/catalog/services",
            json=content,
            headers={**admin.headers, "Idempotency-Key": f"journey-4-{new_card}"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["latest_version"] == 0
        assert created.json()["state"] != "submitted"
        # a draft is nobody's business but its agency's: not searchable, not requestable
        assert gateway.get(f"/api/v1/catalog/services/{new_card}").status_code == 404

        submitted = gateway.post(
            f"/api/v1/catalog/services/{new_card}/submit", headers=admin.headers
        )
        assert submitted.status_code == 200, submitted.text
        # the author cannot approve (no catalog-authority role); another person does
        self_approval = gateway.post(
            f"/api/v1/catalog/services/{new_card}/approve", headers=admin.headers
        )
        assert self_approval.status_code == 403
        approved = gateway.post(
            f"/api/v1/catalog/services/{new_card}/approve", headers=authority.headers
        )
        assert approved.status_code == 200, approved.text
        published_at = time.monotonic()
        assert approved.json()["version"] == 1
        assert approved.json()["approved_by"] == jws_payload(authority.bearer())["sub"]
        assert approved.json()["approved_by"] != jws_payload(admin.bearer())["sub"]
        ledger.cards_published += 1
        ledger.smart_cards_published += 1

        found: list[dict[str, Any]] = []
        while time.monotonic() < published_at + 10:
            search = gateway.get("/api/v1/catalog/services", params={"q": NEW_CARD_WORDS})
            assert search.status_code == 200, search.text
            found = search.json()["items"]
            if found:
                break
            time.sleep(0.2)
        assert found, "the new card was not found within 10 s"
        assert new_card in {item["code"] for item in found}, found

        # the requests service and the broker learn of it from catalog.service.published
        citizen = login(gateway, people.national_code(), people.mobile())
        tracking_code = ""
        while time.monotonic() < published_at + 15:
            # polite: this poll is a write, under the gateway's per-caller limit (2/s, a
            # burst of 10); a replica that learns of the card late must not turn into a 429
            response = polite(
                gateway,
                "POST",
                "/api/v1/requests",
                json={"service_code": new_card, "inputs": {}},
                headers={**citizen.headers, "Idempotency-Key": f"j4-{time.monotonic_ns()}"},
            )
            if response.status_code == 201:
                tracking_code = response.json()["tracking_code"]
                break
            assert response.status_code in {404, 422}, response.text
            time.sleep(0.5)
        assert tracking_code, "the new card did not accept requests within 15 s"
        request = wait_for(gateway, citizen, tracking_code)
        ledger.requests[tracking_code] = request["status"]
        assert request["status"] == "approved", request
        assert request["decision"]["rule_id"] == "living"
        assert request["service_version"] == 1
        print(
            f"\nnew card accepting requests {time.monotonic() - published_at:.1f} s after approval"
        )


class TestAgencyInquiries:
    def test_5_an_inquiry_a_live_request_allows_and_ones_it_does_not(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        citizen = login(gateway, people.national_code(), people.mobile())
        stranger = people.national_code()
        tracking_code = submit(gateway, citizen, BIRTH_REGISTRATION)
        wait_for(gateway, citizen, tracking_code, {"in_review"})
        agency = client_token(gateway, "agency-civil-registry")
        purpose = {
            "service_code": BIRTH_REGISTRATION,
            "tracking_code": tracking_code,
            "legal_basis": "قانون ثبت احوال، ماده ۱۲",
        }

        def ask(subject: str, headers: dict[str, str], **changes: Any) -> httpx.Response:
            return polite(
                gateway,
                "POST",
                "/api/v1/inquiries",
                params={"wait": 5},
                json={
                    "type": "civil-registry.person",
                    "subject": subject,
                    "params": {},
                    "purpose": purpose | changes,
                },
                headers=headers,
            )

        allowed = ask(citizen.national_code, agency)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["status"] == "answered"
        assert allowed.json()["signature"]
        inquiry_id = allowed.json()["inquiry_id"]

        # the same request does not open anyone else's data
        other_subject = ask(stranger, agency)
        assert other_subject.status_code == 403
        assert other_subject.json()["reason"] == "purpose_mismatch"
        # nor does another agency's system act for this agency's card
        tax = client_token(gateway, "agency-tax")
        not_entitled = ask(citizen.national_code, tax)
        assert not_entitled.status_code == 403
        assert not_entitled.json()["reason"] == "caller_not_entitled"
        # another agency cannot read the answer either
        assert gateway.get(f"/api/v1/inquiries/{inquiry_id}", headers=tax).status_code == 404
        assert gateway.get(f"/api/v1/inquiries/{inquiry_id}", headers=agency).status_code == 200

        # once decided, the purpose is closed
        officer = login(gateway, CIVIL_REGISTRY_OFFICER, people.mobile())
        decided = gateway.post(
            f"/api/v1/agency/requests/{tracking_code}/decision",
            json={"outcome": "approve", "reason": {"fa": "کامل است", "en": "Complete"}},
            headers=officer.headers,
        )
        assert decided.status_code == 200, decided.text
        request = wait_for(gateway, citizen, tracking_code)
        ledger.requests[tracking_code] = request["status"]
        decided_at = time.monotonic()
        closed = ask(citizen.national_code, agency)
        while closed.status_code == 200 and time.monotonic() < decided_at + CLOSE_WITHIN:
            time.sleep(0.5)  # the status change reaches the broker over Kafka
            closed = ask(citizen.national_code, agency)
        print(f"\npurpose closed {time.monotonic() - decided_at:.1f} s after the decision")
        assert closed.status_code == 403, closed.text
        assert closed.json()["reason"] == "purpose_closed"

        # the citizen sees the agency's allowed access and the refused attempts
        tracker = gateway.get(
            "/api/v1/me/data-access", params={"page_size": 100}, headers=citizen.headers
        ).json()["items"]
        by_agency = [
            (e["caller"]["principal"], e["decision"])
            for e in tracker
            if e["purpose"]["tracking_code"] == tracking_code
        ]
        assert ("client:civil-registry", "allowed") in by_agency
        assert ("client:civil-registry", "denied") in by_agency
        assert ("client:tax", "denied") in by_agency
        # the stranger's data was never read: only a refusal is on their record
        # (no token of theirs here: the audit chain is checked by the platform admin below)


class TestPlatformKpis:
    def test_catalog_and_request_stats_agree_with_what_the_journeys_did(
        self, gateway_client: httpx.Client, people: People, ledger: Ledger
    ) -> None:
        gateway = gateway_client
        catalog = gateway.get("/api/v1/catalog/stats").json()
        before = ledger.catalog_before
        assert catalog["services_total"] == before["services_total"] + ledger.cards_published
        assert (
            catalog["by_maturity"]["5"] == before["by_maturity"]["5"] + ledger.smart_cards_published
        )
        assert catalog["smart_share"] == pytest.approx(
            catalog["by_maturity"]["5"] / catalog["services_total"], abs=1e-3
        )
        # the simulated agencies answered: the catalog hears of them from the broker
        assert catalog["agencies_connected_share"] > 0

        stats = gateway.get("/api/v1/requests/stats").json()
        then = ledger.requests_before
        assert stats["requests_total"] == then["requests_total"] + len(ledger.requests)
        assert sum(stats["by_status"].values()) == stats["requests_total"]
        did: dict[str, int] = {}
        for status in ledger.requests.values():
            did[status] = did.get(status, 0) + 1
        for status in {*did, *stats["by_status"], *then["by_status"]}:
            assert stats["by_status"].get(status, 0) == then["by_status"].get(status, 0) + did.get(
                status, 0
            ), (status, stats, then, did)
        assert 0 < stats["decided_without_human_share"] < 1

        # and the broker's audit chain, which every journey wrote to, is whole
        admin = login(gateway, PLATFORM_ADMIN, people.mobile())
        audit = gateway.get("/api/v1/audit/verify", headers=admin.headers).json()
        assert audit["valid"] is True, audit
        assert audit["checked"] > 0
