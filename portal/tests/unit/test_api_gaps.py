"""Pages that show what the API added for front ends: category names, the most-used services,
an inquiry's result on the officer's page, and the catalog authority's queue of drafts.

The gateway is stood up as a real HTTP server on loopback answering as docs/api.md says, so the
portal's own client, session, CSRF and templates all run for real.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from panjereh.common.testing.plugin import running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.portal import staff
from panjereh.portal.config import Settings
from panjereh.portal.main import create_app
from panjereh.portal.pages import category_names

TRACKING_CODE = "8100000001"
CARD = "11010000002"
PERSON = {"first_name": "سارا", "alive": True, "birth_date": "1990-03-21", "children": [1]}
TRAVEL = {"fa": "سفر و گذرنامه", "en": "Travel and passports"}


def _page(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"items": items, "total": len(items), "page": 1, "page_size": 50, **extra}


def _token(roles: list[str]) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "s", "roles": roles}).encode())
    return f"e30.{claims.decode().rstrip('=')}.sig"


def _gateway(roles: list[str], seen: list[str]) -> Starlette:
    facets = {name: [] for name in ("agency", "life_event", "channel", "maturity", "audience")}
    facets["category"] = [
        {"value": "travel", "count": 3, "label": TRAVEL},
        {"value": "brand-new", "count": 1, "label": None},
    ]
    answers: dict[str, Any] = {
        "/api/v1/catalog/services": _page([], facets=facets, match=None),
        "/api/v1/catalog/agencies": _page([]),
        "/api/v1/catalog/stats": {
            "services_total": 45, "by_maturity": {}, "electronic_share": 0.5, "smart_share": 0.2,
            "once_only_share": 0.3, "agencies_total": 19, "agencies_connected_share": 1.0,
        },
        "/api/v1/requests/stats": {
            "requests_total": 7, "by_status": {}, "decided_without_human_share": 0.5,
            "median_minutes_to_decision": 1.0, "sla_met_share": 1.0, "once_only_share": 0.5,
            "most_used": [
                {"service_code": CARD, "requests": 5},
                {"service_code": "99999999999", "requests": 2},  # retired: no card any more
            ],
        },
        f"/api/v1/catalog/services/{CARD}": {"code": CARD, "title": {"fa": "ثبت ولادت"}},
        f"/api/v1/catalog/services/{CARD}/versions/1": {
            "code": CARD,
            "title": {"fa": "ثبت ولادت"},
            "inquiries": [{"type": "civil-registry.person", "purpose": {"fa": "هویت متقاضی"}}],
            "form_schema": {
                "type": "object",
                "properties": {"semester": {"type": "integer", "title": "نیمسال تحصیلی"}},
            },
        },
        f"/api/v1/agency/requests/{TRACKING_CODE}": {
            "tracking_code": TRACKING_CODE, "service_code": CARD, "service_version": 1,
            "agency": "civil-registry", "status": "in_review", "inputs": {"semester": 3},
            "overdue": False,
            "submitted_at": "2026-11-07T08:00:00Z", "due_at": None, "history": [],
            "inquiries": [{
                "type": "civil-registry.person", "provider_agency": "civil-registry",
                "status": "answered", "answered_at": "2026-11-07T08:00:01Z", "result": PERSON,
            }],
            "decision": None, "document": None,
        },
        "/api/v1/catalog/drafts": _page([{
            "code": "PT00000001", "agency": "civil-registry", "title": {"fa": "خدمت آزمایشی"},
            "state": "submitted", "card_status": "unpublished", "latest_version": 0,
            "submitted_at": "2026-11-07T08:00:00Z", "updated_at": "2026-11-07T08:00:00Z",
        }]),
    }  # fmt: skip

    async def answer(request: Request) -> JSONResponse:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/v1/auth/otp":
            return JSONResponse({"challenge_id": "c1", "expires_in": 120}, status_code=202)
        if request.url.path == "/api/v1/auth/otp/verify":
            return JSONResponse({"access_token": _token(roles), "expires_in": 300})
        if request.url.path not in answers:
            return JSONResponse({"status": 404, "code": "not_found"}, status_code=404)
        return JSONResponse(answers[request.url.path])

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.fixture
def seen() -> list[str]:
    return []


async def _portal(roles: list[str], seen: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    async with loopback_server(_gateway(roles, seen)) as gateway:
        settings = Settings(environment="test", gateway_url=gateway)  # type: ignore[arg-type]
        async with running_app(create_app(settings)) as client:
            yield client


async def _signed_in(client: httpx.AsyncClient, next_url: str) -> httpx.Response:
    form = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    fields = {"csrf": csrf.group(1), "national_code": "0499370899", "mobile": "09121234567"}
    await client.post("/login", data={**fields, "next": next_url})
    answer = await client.post("/login/code", data={"csrf": csrf.group(1), "code": "123456"})
    assert answer.status_code == 303, answer.text
    return await client.get(next_url)


async def test_search_names_categories_as_the_catalog_does(seen: list[str]) -> None:
    async for client in _portal([], seen):
        page = await client.get("/search", params={"category": "travel"})
    assert page.status_code == 200
    assert "سفر و گذرنامه" in page.text
    assert ">brand-new" in page.text  # a category the catalog does not name yet: its slug
    assert category_names({"category": [{"value": "x", "label": None}]}) == {}


async def test_the_home_page_lists_the_most_used_services(seen: list[str]) -> None:
    async for client in _portal([], seen):
        page = await client.get("/")
    assert page.status_code == 200
    assert 'id="popular-h"' in page.text
    assert f'href="/services/{CARD}">ثبت ولادت</a>' in page.text
    assert "۵ درخواست" in page.text
    assert "99999999999" not in page.text  # not in the catalog: not offered


async def test_the_officer_reads_each_inquirys_result(seen: list[str]) -> None:
    async for client in _portal(["officer:civil-registry"], seen):
        page = await _signed_in(client, f"/agency/requests/{TRACKING_CODE}")
    assert page.status_code == 200, page.text
    # read through the agency's own route, the one that carries results
    assert f"GET /api/v1/agency/requests/{TRACKING_CODE}" in seen
    assert f"GET /api/v1/requests/{TRACKING_CODE}" not in seen
    assert "هویت متقاضی" in page.text
    assert '<dl class="facts evidence"' in page.text
    assert "سارا" in page.text
    assert "بله" in page.text
    # what the applicant entered, under the form's title rather than the property's name
    assert "<dt><bdi>نیمسال تحصیلی</bdi></dt>" in page.text


def test_evidence_rows_read_as_people_read_them() -> None:
    assert staff.evidence_items(PERSON, "en") == [
        ("first_name", "سارا"),
        ("alive", "yes"),
        ("birth_date", "1990-03-21"),
        ("children", "[1]"),
    ]
    assert staff.evidence_items({"debt": 1200000}, "fa") == [("debt", "۱٬۲۰۰٬۰۰۰")]
    assert staff.evidence_items(None, "fa") == []


async def test_the_authority_sees_the_drafts_waiting_without_typing_a_code(
    seen: list[str],
) -> None:
    async for client in _portal(["catalog-authority"], seen):
        page = await _signed_in(client, "/catalog/review")
    assert page.status_code == 200, page.text
    assert "GET /api/v1/catalog/drafts" in seen
    assert 'href="/catalog/review/PT00000001"' in page.text
    assert "خدمت آزمایشی" in page.text
    assert 'id="code"' not in page.text
