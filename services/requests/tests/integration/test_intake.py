"""Submitting and tracking requests through the API, on a real database and broker."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from panjereh.common.db import Database
from panjereh.contracts.samples import published_card
from panjereh.requests.tracking import is_valid_tracking_code

pytestmark = pytest.mark.integration

LOAN_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["semester", "amount_rials"],
    "additionalProperties": False,
    "properties": {
        "semester": {"type": "integer", "minimum": 1, "maximum": 20},
        "amount_rials": {"type": "integer", "minimum": 0},
        "university": {"type": "string", "maxLength": 100},
        "married": {"type": "boolean"},
    },
}
GOOD_INPUTS = {"semester": 3, "amount_rials": 1000, "university": "تهران", "married": False}


def new_code() -> str:
    return "99" + "".join(secrets.choice("0123456789") for _ in range(9))


@pytest.fixture
async def loan_card(publish_card: Any) -> str:
    code = new_code()
    await publish_card(
        published_card(
            code,
            agency="student-welfare",
            inquiries=["civil-registry.person"],
            form_schema=LOAN_FORM,
            documents_required=[{"name": {"fa": "کارت دانشجویی", "en": "Student card"}}],
        )
    )
    return code


async def submit(
    api: httpx.AsyncClient, headers: dict[str, str], code: str, inputs: Any, **extra: str
) -> httpx.Response:
    return await api.post(
        "/api/v1/requests",
        json={"service_code": code, "inputs": inputs},
        headers={**headers, **extra},
    )


class TestSubmit:
    async def test_a_valid_request_is_taken(
        self, api: httpx.AsyncClient, people: Any, loan_card: str, database: Database
    ) -> None:
        response = await submit(api, people.citizen(), loan_card, GOOD_INPUTS)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "submitted"
        assert body["service_code"] == loan_card
        assert body["service_version"] == 1
        assert is_valid_tracking_code(body["tracking_code"])
        assert body["due_at"] > body["submitted_at"]
        async with database.transaction() as session:
            events = (
                await session.execute(
                    text(
                        "SELECT topic, payload FROM requests.outbox_message WHERE key = :k "
                        "ORDER BY id"
                    ),
                    {"k": body["tracking_code"]},
                )
            ).all()
        topics = [topic for topic, _ in events]
        assert topics == ["requests.request.status-changed", "requests.request.submitted"]
        changed, submitted = (payload["data"] for _, payload in events)
        assert (changed["from"], changed["to"]) == (None, "submitted")
        assert "0013542419" not in str(changed)  # the status event carries no national code
        assert submitted["subject"] == "0013542419"

    async def test_the_request_is_tracked_with_its_history_and_evidence(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        created = (await submit(api, people.citizen(), loan_card, GOOD_INPUTS)).json()
        response = await api.get(
            f"/api/v1/requests/{created['tracking_code']}", headers=people.citizen()
        )
        assert response.status_code == 200
        body = response.json()
        assert body["inputs"] == GOOD_INPUTS
        assert [(h["from"], h["to"], h["actor"]) for h in body["history"]] == [
            (None, "submitted", "citizen")
        ]
        assert body["inquiries"] == [
            {
                "type": "civil-registry.person",
                "provider_agency": None,
                "status": "pending",
                "answered_at": None,
            }
        ]
        assert body["decision"] is None
        assert body["document"] is None

    async def test_inputs_that_break_the_form_get_field_errors(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        bad = {"semester": 40, "amount_rials": "much", "color": "red"}
        response = await submit(api, people.citizen(), loan_card, bad, **{"Accept-Language": "en"})
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "invalid_inputs"
        fields = {(e["field"], e["code"]) for e in body["errors"]}
        assert ("inputs.semester", "form_maximum") in fields
        assert ("inputs.amount_rials", "form_type") in fields
        assert ("inputs", "form_additionalProperties") in fields

    async def test_a_missing_field_is_named(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        response = await submit(api, people.citizen(), loan_card, {"semester": 2})
        errors = response.json()["errors"]
        assert errors == [
            {
                "field": "inputs.amount_rials",
                "code": "form_required",
                "message": "این فیلد لازم است",
            }
        ]

    async def test_an_unknown_service_is_404(self, api: httpx.AsyncClient, people: Any) -> None:
        response = await submit(api, people.citizen(), "no-such-card", {})
        assert response.status_code == 404
        assert response.json()["code"] == "service_not_found"

    async def test_a_retired_service_is_409(
        self, api: httpx.AsyncClient, people: Any, publish_card: Any, database: Database
    ) -> None:
        code = new_code()
        await publish_card(published_card(code))
        async with database.transaction() as session:
            await session.execute(
                text("UPDATE requests.card_version SET retired_at = now() WHERE service_code = :c"),
                {"c": code},
            )
        response = await submit(api, people.citizen(), code, {})
        assert response.status_code == 409
        assert response.json()["code"] == "service_retired"

    async def test_a_request_is_processed_by_the_version_it_was_submitted_under(
        self, api: httpx.AsyncClient, people: Any, publish_card: Any
    ) -> None:
        code = new_code()
        await publish_card(published_card(code, version=1))
        first = (await submit(api, people.citizen(), code, {})).json()
        await publish_card(published_card(code, version=2))
        second = (await submit(api, people.citizen(), code, {})).json()
        assert (first["service_version"], second["service_version"]) == (1, 2)
        again = await api.get(
            f"/api/v1/requests/{first['tracking_code']}", headers=people.citizen()
        )
        assert again.json()["service_version"] == 1

    async def test_only_citizens_submit(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        response = await submit(api, people.officer("student-welfare"), loan_card, GOOD_INPUTS)
        assert response.status_code == 403
        assert (await submit(api, {}, loan_card, GOOD_INPUTS)).status_code == 401


class TestIdempotency:
    async def test_the_same_key_and_body_give_one_request(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        key = {"Idempotency-Key": secrets.token_hex(8)}
        first = await submit(api, people.citizen(), loan_card, GOOD_INPUTS, **key)
        second = await submit(api, people.citizen(), loan_card, GOOD_INPUTS, **key)
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json() == second.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers

    async def test_the_same_key_with_another_body_is_409(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        key = {"Idempotency-Key": secrets.token_hex(8)}
        await submit(api, people.citizen(), loan_card, GOOD_INPUTS, **key)
        other = await submit(
            api, people.citizen(), loan_card, {**GOOD_INPUTS, "semester": 4}, **key
        )
        assert other.status_code == 409
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_concurrent_duplicates_make_one_request(
        self, api: httpx.AsyncClient, people: Any, loan_card: str, database: Database
    ) -> None:
        key = {"Idempotency-Key": secrets.token_hex(8)}
        sub = f"citizen-{secrets.token_hex(4)}"
        responses = await asyncio.gather(
            *(submit(api, people.citizen(sub), loan_card, GOOD_INPUTS, **key) for _ in range(8))
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["tracking_code"] for r in responses}) == 1
        async with database.transaction() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM requests.request WHERE citizen_id = :s"), {"s": sub}
            )
        assert count == 1


class TestObjectLevelAccess:
    async def test_another_citizen_gets_404(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        created = (await submit(api, people.citizen("citizen-a"), loan_card, GOOD_INPUTS)).json()
        path = f"/api/v1/requests/{created['tracking_code']}"
        stranger = people.citizen("citizen-b", national_code="0499370899")
        response = await api.get(path, headers=stranger)
        assert response.status_code == 404
        assert response.json()["code"] == "request_not_found"
        assert (await api.post(f"{path}/cancel", headers=stranger)).status_code == 404

    async def test_officers_of_the_cards_agency_read_it_others_get_404(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        created = (await submit(api, people.citizen(), loan_card, GOOD_INPUTS)).json()
        path = f"/api/v1/requests/{created['tracking_code']}"
        assert (await api.get(path, headers=people.officer("student-welfare"))).status_code == 200
        assert (await api.get(path, headers=people.officer("tax"))).status_code == 404
        assert (
            await api.get(path, headers=people.agency_system("student-welfare"))
        ).status_code == 200
        no_scope = people.agency_system("student-welfare", scopes=())
        refused = await api.get(path, headers=no_scope)
        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"  # requests:work


class TestMyRequestsAndCancel:
    async def test_my_requests_are_listed_newest_first_with_paging(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        me = people.citizen(f"citizen-{secrets.token_hex(4)}")
        codes = [
            (await submit(api, me, loan_card, GOOD_INPUTS)).json()["tracking_code"]
            for _ in range(3)
        ]
        page = (await api.get("/api/v1/requests?page=1&page_size=2", headers=me)).json()
        assert page["total"] == 3
        assert page["page_size"] == 2
        assert [item["tracking_code"] for item in page["items"]] == codes[::-1][:2]

    async def test_cancel_while_open_then_never_again(
        self, api: httpx.AsyncClient, people: Any, loan_card: str
    ) -> None:
        created = (await submit(api, people.citizen(), loan_card, GOOD_INPUTS)).json()
        path = f"/api/v1/requests/{created['tracking_code']}"
        cancelled = await api.post(f"{path}/cancel", headers=people.citizen())
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        again = await api.post(f"{path}/cancel", headers=people.citizen())
        assert again.status_code == 409
        assert again.json()["code"] == "request_already_decided"
        history = (await api.get(path, headers=people.citizen())).json()["history"]
        assert [(h["to"], h["actor"]) for h in history] == [
            ("submitted", "citizen"),
            ("cancelled", "citizen"),
        ]
