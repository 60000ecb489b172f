"""Documents verify (and stop verifying after any change); receipts pin the evidence and replay;
neither is shown to anyone it does not belong to."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import text

from panjereh.common import jwk
from panjereh.contracts.samples import published_card
from panjereh.requests.testing import InquiryBrokerDouble

pytestmark = pytest.mark.integration

OWNER_CODE = "0013542419"
RULES = [
    {
        "id": "small-amount",
        "when": 'inputs.amount <= 1000 && inquiries["civil-registry.person"].alive',
        "outcome": "approve",
        "reason": {"fa": "واجد شرایط", "en": "Eligible"},
    }
]


@pytest.fixture
async def approved(platform: Any, people: Any, broker: InquiryBrokerDouble) -> dict[str, Any]:
    """A request approved by the rules: its tracking code, owner and document."""
    code = "95" + "".join(secrets.choice("0123456789") for _ in range(9))
    await platform.publish(
        published_card(
            code,
            agency="student-welfare",
            inquiries=["civil-registry.person"],
            rules=RULES,
            otherwise="reject",
        )
    )
    owner = people.citizen(f"citizen-{secrets.token_hex(4)}", national_code=OWNER_CODE)
    tracking_code = await platform.submit(owner, code, {"amount": 700})
    assert (await platform.settled(owner, tracking_code))["status"] == "approved"
    document = await platform.client.get(
        f"/api/v1/requests/{tracking_code}/document", headers=owner
    )
    return {"tracking_code": tracking_code, "owner": owner, "document": document.json()}


#: what a failed verification says: not valid, and nothing else
NOTHING_VALID = {
    "valid": False,
    "issued_at": None,
    "valid_until": None,
    "service_code": None,
    "holder_masked": None,
}


def flipped(token: str, index: int) -> str:
    """``token`` with the character at ``index`` replaced by another base64url character."""
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


class TestDocumentVerification:
    async def test_the_document_verifies_and_tells_nothing_personal(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        document_id = approved["document"]["document_id"]

        response = await platform.client.get(f"/api/v1/verify/{document_id}")

        body = response.json()
        assert body["valid"] is True
        assert set(body) == {"valid", "issued_at", "valid_until", "service_code", "holder_masked"}
        assert body["holder_masked"] == "0********9"
        assert OWNER_CODE not in response.text
        assert approved["tracking_code"] not in response.text

    async def test_one_changed_byte_anywhere_fails_verification(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        document_id = approved["document"]["document_id"]
        token = approved["document"]["jws"]
        header_end, payload_end = token.index("."), token.rindex(".")
        path = f"/api/v1/verify/{document_id}"
        genuine = await platform.client.post(path, json={"jws": token})
        assert genuine.json()["valid"] is True

        # in the header, the payload, the signature, and its very last character (whose
        # spare bits a lenient base64 decoder would ignore)
        for index in (3, header_end + 10, payload_end - 5, payload_end + 7, len(token) - 1):
            changed = flipped(token, index)
            by_body = await platform.client.post(path, json={"jws": changed})
            assert by_body.json() == NOTHING_VALID, index

    async def test_a_token_of_another_document_is_not_this_one(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        receipt = await platform.client.get(
            f"/api/v1/requests/{approved['tracking_code']}/receipt", headers=approved["owner"]
        )
        document_id = approved["document"]["document_id"]

        # a receipt is signed by the same key, but it is not a document
        response = await platform.client.post(
            f"/api/v1/verify/{document_id}", json={"jws": receipt.json()["jws"]}
        )

        assert response.json()["valid"] is False

    async def test_an_unknown_document_is_404(self, platform: Any) -> None:
        unknown = "3f0c6a0e-8a43-4b53-a7a5-0d8a6c1b9d11"
        assert (await platform.client.get(f"/api/v1/verify/{unknown}")).status_code == 404
        qr = await platform.client.get(f"/api/v1/verify/{unknown}/qr.png")
        assert qr.status_code == 404
        assert qr.json()["code"] == "document_not_found"

    async def test_a_document_edited_in_the_database_is_no_longer_valid(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        document_id = approved["document"]["document_id"]
        async with platform.database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE requests.document SET payload = jsonb_set(payload, '{valid_until}',"
                    " '\"2099-01-01T00:00:00+00:00\"') WHERE id = :id"
                ),
                {"id": document_id},
            )

        assert (await platform.client.get(f"/api/v1/verify/{document_id}")).json()["valid"] is False

    async def test_the_keys_endpoint_publishes_the_signing_key(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        keys = (await platform.client.get("/api/v1/verify/keys")).json()
        header, _ = jwk.verify_compact(approved["document"]["jws"], keys)
        assert header["kid"] in {key["kid"] for key in keys["keys"]}
        assert all("d" not in key for key in keys["keys"])  # public parts only


class TestReceipts:
    async def test_the_receipt_pins_the_decision_and_its_evidence(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        response = await platform.client.get(
            f"/api/v1/requests/{approved['tracking_code']}/receipt", headers=approved["owner"]
        )

        assert response.status_code == 200
        receipt = response.json()
        payload = receipt["payload"]
        assert payload["tracking_code"] == approved["tracking_code"]
        assert (payload["rule_id"], payload["outcome"], payload["decided_by"]) == (
            "small-amount",
            "approve",
            "rules",
        )
        assert len(payload["inputs_sha256"]) == 64
        (evidence,) = payload["inquiries"]
        assert evidence["type"] == "civil-registry.person"
        assert len(evidence["result_sha256"]) == 64
        keys = (await platform.client.get("/api/v1/verify/keys")).json()
        header, signed = jwk.verify_compact(receipt["jws"], keys)
        assert header["typ"] == "decision-receipt+jws"
        assert signed == payload
        assert OWNER_CODE not in response.text  # hashes, never the evidence itself

    async def test_replay_reproduces_the_outcome(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        response = await platform.client.post(
            f"/api/v1/requests/{approved['tracking_code']}/receipt/replay",
            headers=approved["owner"],
        )

        assert response.json() == {
            "same_outcome": True,
            "outcome": "approve",
            "rule_id": "small-amount",
            "evidence_intact": True,
        }

    async def test_replay_detects_a_changed_input(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        async with platform.database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE requests.request SET inputs = '{\"amount\": 5000}'"
                    " WHERE tracking_code = :t"
                ),
                {"t": approved["tracking_code"]},
            )

        response = await platform.client.post(
            f"/api/v1/requests/{approved['tracking_code']}/receipt/replay",
            headers=approved["owner"],
        )

        # the changed amount no longer satisfies the rule, and the evidence is not what was signed
        assert response.json() == {
            "same_outcome": False,
            "outcome": "reject",
            "rule_id": None,
            "evidence_intact": False,
        }

    async def test_replay_detects_an_answer_changed_with_its_stored_hash(
        self, platform: Any, approved: dict[str, Any]
    ) -> None:
        async with platform.database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE requests.request_inquiry i SET"
                    " result = jsonb_set(i.result, '{first_name}', '\"X\"'),"
                    " result_sha256 = repeat('0', 64)"
                    " FROM requests.request r WHERE r.id = i.request_id AND r.tracking_code = :t"
                ),
                {"t": approved["tracking_code"]},
            )

        response = await platform.client.post(
            f"/api/v1/requests/{approved['tracking_code']}/receipt/replay",
            headers=approved["owner"],
        )

        assert response.json()["same_outcome"] is True  # the rule does not read the name
        assert response.json()["evidence_intact"] is False

    async def test_officers_of_the_agency_and_auditors_read_it(
        self, platform: Any, approved: dict[str, Any], token_factory: Any
    ) -> None:
        path = f"/api/v1/requests/{approved['tracking_code']}/receipt"
        auditor = {
            "Authorization": f"Bearer {token_factory(sub='auditor-1', roles=['platform-admin'])}"
        }
        assert (await platform.client.get(path, headers=auditor)).status_code == 200
        replay = await platform.client.post(f"{path}/replay", headers=auditor)
        assert replay.json()["same_outcome"] is True
        from_officer = await platform.client.get(
            path,
            headers={"Authorization": f"Bearer {token_factory(roles=['officer:student-welfare'])}"},
        )
        assert from_officer.status_code == 200


class TestObjectLevelAccess:
    async def test_another_citizen_gets_404_for_the_receipt_document_and_replay(
        self, platform: Any, approved: dict[str, Any], people: Any
    ) -> None:
        stranger = people.citizen("citizen-stranger", national_code="0499370899")
        base = f"/api/v1/requests/{approved['tracking_code']}"

        receipt = await platform.client.get(f"{base}/receipt", headers=stranger)
        document = await platform.client.get(f"{base}/document", headers=stranger)
        replay = await platform.client.post(f"{base}/receipt/replay", headers=stranger)

        assert [r.status_code for r in (receipt, document, replay)] == [404, 404, 404]
        assert {r.json()["code"] for r in (receipt, document, replay)} == {"request_not_found"}
        assert approved["document"]["jws"] not in document.text

    async def test_another_agencys_officer_gets_404_for_the_receipt(
        self, platform: Any, approved: dict[str, Any], people: Any
    ) -> None:
        response = await platform.client.get(
            f"/api/v1/requests/{approved['tracking_code']}/receipt", headers=people.officer("tax")
        )
        assert response.status_code == 404

    async def test_only_the_owner_gets_the_document_not_the_agency(
        self, platform: Any, approved: dict[str, Any], people: Any
    ) -> None:
        response = await platform.client.get(
            f"/api/v1/requests/{approved['tracking_code']}/document",
            headers=people.officer("student-welfare"),
        )
        assert response.status_code == 403  # the document is the citizen's: citizens only
