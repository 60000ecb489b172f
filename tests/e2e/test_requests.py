"""A citizen asks for services through the gateway and the platform decides them.

Everything is real and separate processes, as ``make run`` starts them: the gateway, identity,
the catalog (its seed cards), the requests service deciding by the cards' CEL rules, the
inquiry broker and the simulated agencies answering over Kafka.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e import platform_api
from tests.e2e.platform_api import read_sms

pytestmark = pytest.mark.e2e

ADULT = "0499370899"  # any valid code: a living adult in the simulated civil registry
ANOTHER_ADULT = "0013542419"
CRIMINAL_RECORD = "9900000031"  # the simulators' special code: police has a record
NO_TAX_FILE = "9900000080"  # the simulators' special code: the tax office has no file
CIVIL_REGISTRY_OFFICER = "3010010011"  # seeded staff: officer:civil-registry

COPY_OF_BIRTH_CERTIFICATE = "11010000001"  # smart: approves a living applicant
CRIMINAL_RECORD_CERTIFICATE = "11030000001"  # smart: rejects when a record is on file
BIRTH_REGISTRATION = "11010000002"  # agency mode: an officer decides
TUITION_LOAN = "11080000001"  # smart, with a form of several field types
TAX_CLEARANCE = "11050000001"  # smart: decided on the tax office's answer


def login(gateway: httpx.Client, national_code: str, mobile: str) -> dict[str, str]:
    return platform_api.login(gateway, national_code, mobile).headers


def submit(
    gateway: httpx.Client, headers: dict[str, str], code: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    response = gateway.post(
        "/api/v1/requests",
        json={"service_code": code, "inputs": inputs},
        headers={**headers, "Idempotency-Key": f"e2e-{code}-{time.monotonic_ns()}"},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_for(
    gateway: httpx.Client, headers: dict[str, str], tracking_code: str, statuses: set[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = gateway.get(f"/api/v1/requests/{tracking_code}", headers=headers).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"request stayed {body.get('status')}: {body}")


FINAL = {"approved", "rejected", "failed", "cancelled"}


class TestSmartRequests:
    def test_approved_with_no_human_step_and_a_document_anyone_can_verify(
        self, gateway: httpx.Client
    ) -> None:
        citizen = login(gateway, ADULT, "09121112233")
        created = submit(gateway, citizen, COPY_OF_BIRTH_CERTIFICATE, {})
        request = wait_for(gateway, citizen, created["tracking_code"], FINAL)
        assert request["status"] == "approved", request
        assert request["decision"]["decided_by"] == "rules"
        assert request["decision"]["rule_id"] == "alive"
        assert [i["status"] for i in request["inquiries"]] == ["answered"]
        assert [h["to"] for h in request["history"]] == [
            "submitted",
            "awaiting_inquiries",
            "deciding",
            "approved",
        ]

        document = gateway.get(
            f"/api/v1/requests/{created['tracking_code']}/document", headers=citizen
        )
        assert document.status_code == 200
        document_id = document.json()["document_id"]
        with httpx.Client(base_url=str(gateway.base_url), timeout=10.0) as stranger:
            verified = stranger.get(f"/api/v1/verify/{document_id}").json()
            assert verified["valid"] is True
            assert verified["service_code"] == COPY_OF_BIRTH_CERTIFICATE
            assert verified["holder_masked"].startswith("0")
            assert ADULT not in str(verified)
            qr = stranger.get(f"/api/v1/verify/{document_id}/qr.png")
            assert qr.headers["content-type"] == "image/png"
            assert qr.content.startswith(b"\x89PNG\r\n\x1a\n")

        receipt = gateway.post(
            f"/api/v1/requests/{created['tracking_code']}/receipt/replay", headers=citizen
        ).json()
        assert receipt == {
            "same_outcome": True,
            "outcome": "approve",
            "rule_id": "alive",
            "evidence_intact": True,
        }

        # the data tracker shows the civil registry was asked, for this request
        tracker = gateway.get("/api/v1/me/data-access", headers=citizen).json()["items"]
        purposes = {(e["inquiry_type"], e["purpose"]["tracking_code"]) for e in tracker}
        assert ("civil-registry.person", created["tracking_code"]) in purposes

    def test_rejected_with_the_rules_reason(self, gateway: httpx.Client) -> None:
        citizen = login(gateway, CRIMINAL_RECORD, "09121112244")
        created = submit(gateway, citizen, CRIMINAL_RECORD_CERTIFICATE, {})
        request = wait_for(gateway, citizen, created["tracking_code"], FINAL)
        assert request["status"] == "rejected", request
        assert request["decision"]["rule_id"] == "has-record"
        assert request["decision"]["reason"]["en"] == "A criminal record is on file"
        missing = gateway.get(
            f"/api/v1/requests/{created['tracking_code']}/document", headers=citizen
        )
        assert missing.status_code == 404

    def test_a_missing_record_fails_with_a_reason_instead_of_hanging(
        self, gateway: httpx.Client
    ) -> None:
        citizen = login(gateway, NO_TAX_FILE, "09121112288")
        created = submit(gateway, citizen, TAX_CLEARANCE, {})
        request = wait_for(gateway, citizen, created["tracking_code"], FINAL)
        assert request["status"] == "failed", request
        assert [(i["type"], i["status"]) for i in request["inquiries"]] == [
            ("tax.clearance", "not_found")
        ]
        reason = request["history"][-1]["reason"]
        assert "tax.clearance" in reason["en"]

    def test_a_form_with_several_field_types_is_checked_then_decided(
        self, gateway: httpx.Client
    ) -> None:
        citizen = login(gateway, ADULT, "09121112277")
        bad = gateway.post(
            "/api/v1/requests",
            json={"service_code": TUITION_LOAN, "inputs": {"semester": "three"}},
            headers={**citizen, "Accept-Language": "en"},
        )
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} >= {"inputs.semester"}
        created = submit(
            gateway,
            citizen,
            TUITION_LOAN,
            {"student_number": "9912345", "semester": 3, "amount_rials": 100_000_000},
        )
        request = wait_for(gateway, citizen, created["tracking_code"], FINAL)
        assert request["status"] in {"approved", "rejected"}
        assert request["decision"]["decided_by"] == "rules"


class TestAgencyMode:
    def test_an_officer_decides_and_the_citizen_gets_an_sms(self, gateway: httpx.Client) -> None:
        mobile = "09121112255"
        citizen = login(gateway, ANOTHER_ADULT, mobile)
        created = submit(gateway, citizen, BIRTH_REGISTRATION, {})
        wait_for(gateway, citizen, created["tracking_code"], {"in_review"})

        officer = login(gateway, CIVIL_REGISTRY_OFFICER, "09121112266")
        queue = gateway.get(
            "/api/v1/agency/requests", params={"status": "in_review"}, headers=officer
        ).json()
        assert created["tracking_code"] in {item["tracking_code"] for item in queue["items"]}
        sms_before = len(read_sms(gateway, mobile))
        decided = gateway.post(
            f"/api/v1/agency/requests/{created['tracking_code']}/decision",
            json={"outcome": "approve", "reason": {"fa": "مدارک کامل است", "en": "Complete"}},
            headers=officer,
        )
        assert decided.status_code == 200, decided.text
        request = wait_for(gateway, citizen, created["tracking_code"], FINAL)
        assert request["status"] == "approved"
        assert request["decision"]["decided_by"] == "officer"
        # identity turns the status change into an SMS to the citizen
        messages = read_sms(gateway, mobile, count=sms_before + 1)
        assert created["tracking_code"] in messages[0]["tokens"]
