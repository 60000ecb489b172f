"""Pages for agency staff: an officer's queue, one request with its evidence, the decision.

An officer reads a request through the agency's own route, which carries each inquiry's result
(what the card entitles the agency to see); the citizen's pages never show results.

What an officer may see and decide is the API's to say (403/404 come back as pages); the
portal only hides the menu from visitors without an ``officer:<agency>`` role.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from panjereh.portal import forms, i18n
from panjereh.portal.api import ApiProblem
from panjereh.portal.pages import FINAL, TRACKING_CODE, service_titles
from panjereh.portal.web import VisitDep

router = APIRouter()

QUEUE_STATUSES = ("in_review", "awaiting_inquiries", "deciding", "approved", "rejected", "failed")
MIN_REASON = 3
MAX_REASON = 500


@router.get("/agency", response_class=HTMLResponse)
async def queue(
    visit: VisitDep,
    *,
    status: str = "in_review",
    page: int = Query(1, ge=1, le=1000),
) -> Response:
    visit.require_signed_in()
    chosen = status if status in QUEUE_STATUSES else "in_review"
    listing = await visit.get(
        "/api/v1/agency/requests",
        auth=True,
        params={"status": chosen, "page": page, "page_size": 50},
    )
    titles = await service_titles(visit, {item["service_code"] for item in listing["items"]})
    return visit.render(
        "agency_queue.html",
        listing=listing,
        chosen=chosen,
        statuses=QUEUE_STATUSES,
        titles=titles,
    )


@router.get("/agency/requests/{tracking_code}", response_class=HTMLResponse)
async def one(visit: VisitDep, tracking_code: str) -> Response:
    return await _page(visit, tracking_code)


async def _page(
    visit: VisitDep, tracking_code: str, *, error: str = "", values: dict[str, str] | None = None
) -> Response:
    visit.require_signed_in()
    if not TRACKING_CODE.match(tracking_code):
        raise ApiProblem(404, "request_not_found")
    # the agency's view: each inquiry with its result, the evidence the decision rests on
    request = await visit.get(f"/api/v1/agency/requests/{tracking_code}", auth=True)
    card = None
    try:
        card = await visit.get(
            f"/api/v1/catalog/services/{request['service_code']}/versions/"
            f"{request['service_version']}"
        )
    except ApiProblem:
        card = None
    inquiry_names = {i["type"]: i.get("purpose") for i in (card or {}).get("inquiries", [])}
    return visit.render(
        "agency_request.html",
        status=422 if error else 200,
        request=request,
        card=card,
        final=request["status"] in FINAL,
        inquiry_names=inquiry_names,
        # what the applicant entered, under the form's own field titles
        input_labels={
            item.name: item.label
            for item in forms.fields_of((card or {}).get("form_schema") or {}, visit.lang)
        },
        evidence={
            inquiry["type"]: evidence_items(inquiry.get("result"), visit.lang)
            for inquiry in request["inquiries"]
        },
        error=error,
        values=values or {},
        form_key=secrets.token_urlsafe(16),
    )


def evidence_items(result: Any, lang: str) -> list[tuple[str, str]]:
    """An inquiry's answer as rows an officer reads: a yes/no, a number, a text, or JSON."""
    if not isinstance(result, dict):
        return []
    rows = []
    for name, value in result.items():
        if isinstance(value, bool):
            shown = ("بله" if value else "خیر") if lang == "fa" else ("yes" if value else "no")
        elif isinstance(value, int | float):
            shown = i18n.number(value, lang)
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        rows.append((str(name), shown))
    return rows


@router.post("/agency/requests/{tracking_code}/decision", response_class=HTMLResponse)
async def decide(visit: VisitDep, tracking_code: str) -> Response:
    visit.require_signed_in()
    submitted = await visit.form()
    if not TRACKING_CODE.match(tracking_code):
        raise ApiProblem(404, "request_not_found")
    outcome = submitted.get("outcome", "")
    reason = submitted.get("reason", "").strip()
    values = {"outcome": outcome, "reason": reason}
    if outcome not in {"approve", "reject"}:
        error = visit._("تأیید یا رد را برگزینید.", "Choose approve or reject.")
        return await _page(visit, tracking_code, error=error, values=values)
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        error = visit._(
            "دلیل تصمیم را بنویسید؛ شهروند آن را می‌بیند.",
            "Write the reason for the decision; the citizen will read it.",
        )
        return await _page(visit, tracking_code, error=error, values=values)
    key = submitted.get("form_key") or secrets.token_urlsafe(16)
    try:
        await visit.post(
            f"/api/v1/agency/requests/{tracking_code}/decision",
            auth=True,
            json={"outcome": outcome, "reason": {"fa": reason}},
            headers={"Idempotency-Key": f"portal-{key}"[:128]},
        )
    except ApiProblem as problem:
        if problem.status not in {409, 422}:
            raise
        shown = "؛ ".join(issue.message for issue in problem.errors) or problem.detail
        return await _page(visit, tracking_code, error=shown or problem.title, values=values)
    visit.flash(visit._("تصمیم ثبت شد.", "The decision was recorded."))
    return visit.redirect(f"/agency/requests/{tracking_code}")
