"""The catalog authority's queue: the drafts submitted for approval, oldest first, paged."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from panjereh.catalog.seed_data import cards
from panjereh.common.testing.tokens import TokenFactory, bearer

pytestmark = pytest.mark.integration

SERVICES = "/api/v1/catalog/services"
DRAFTS = "/api/v1/catalog/drafts"
_codes = itertools.count(1)


def card_body(code: str) -> dict[str, Any]:
    base = next(c for c in cards() if c.code == "11050000001")  # tax clearance, smart
    return base.model_dump(mode="json") | {"code": code, "agency": "tax"}


@pytest.fixture(scope="module")
def tokens(token_factory: TokenFactory) -> dict[str, dict[str, str]]:
    def staff(sub: str, *roles: str) -> dict[str, str]:
        return bearer(token_factory(sub=sub, roles=list(roles)))

    return {
        "tax_admin": staff("queue-staff-tax", "agency-admin:tax"),
        "authority": staff("queue-authority", "catalog-authority"),
        "citizen": bearer(token_factory(sub="queue-citizen", roles=["citizen"])),
    }


async def drafted(api: httpx.AsyncClient, admin: dict[str, str], *, submit: bool) -> str:
    code = f"77{next(_codes):09d}"
    created = await api.post(SERVICES, json=card_body(code), headers=admin)
    assert created.status_code == 201, created.text
    if submit:
        submitted = await api.post(f"{SERVICES}/{code}/submit", headers=admin)
        assert submitted.status_code == 200, submitted.text
    return code


async def queue(api: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    listing = (await api.get(DRAFTS, params={"page_size": 100}, headers=headers)).json()
    items: list[dict[str, Any]] = listing["items"]
    return items


async def test_the_authority_lists_the_submitted_drafts_oldest_first(
    api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
) -> None:
    first = await drafted(api, tokens["tax_admin"], submit=True)
    second = await drafted(api, tokens["tax_admin"], submit=True)
    editing = await drafted(api, tokens["tax_admin"], submit=False)

    items = await queue(api, tokens["authority"])

    codes = [item["code"] for item in items]
    assert first in codes
    assert second in codes
    assert codes.index(first) < codes.index(second)
    assert editing not in codes  # still being edited: not the authority's yet
    mine = next(item for item in items if item["code"] == first)
    assert mine["agency"] == "tax"
    assert mine["state"] == "submitted"
    assert mine["card_status"] == "unpublished"
    assert mine["title"]["fa"] == "گواهی مفاصاحساب مالیاتی"
    assert mine["submitted_at"]
    assert all(item["state"] == "submitted" for item in items)


async def test_the_queue_is_paged_and_leaves_approved_drafts_out(
    api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
) -> None:
    await drafted(api, tokens["tax_admin"], submit=True)
    approved = await drafted(api, tokens["tax_admin"], submit=True)
    done = await api.post(f"{SERVICES}/{approved}/approve", headers=tokens["authority"])
    assert done.status_code == 200

    page = await api.get(DRAFTS, params={"page_size": 1, "page": 1}, headers=tokens["authority"])

    body = page.json()
    assert (body["page"], body["page_size"], len(body["items"])) == (1, 1, 1)
    assert body["total"] >= 2
    assert approved not in [item["code"] for item in await queue(api, tokens["authority"])]
    too_big = await api.get(DRAFTS, params={"page_size": 101}, headers=tokens["authority"])
    assert too_big.status_code == 422


async def test_only_the_catalog_authority_sees_the_queue(
    api: httpx.AsyncClient, tokens: dict[str, dict[str, str]]
) -> None:
    anonymous = await api.get(DRAFTS)
    admin = await api.get(DRAFTS, headers=tokens["tax_admin"])
    citizen = await api.get(DRAFTS, headers=tokens["citizen"])

    assert anonymous.status_code == 401
    assert (admin.status_code, admin.json()["code"]) == (403, "forbidden")
    assert citizen.status_code == 403
