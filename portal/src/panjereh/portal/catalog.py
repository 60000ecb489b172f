"""Catalog pages: an agency admin drafts or edits a service card and submits it; the catalog
authority compares the draft with the published version and approves or rejects it.

Text fields are form fields; the form schema, the decision rules and the inquiries are JSON
editors. The catalog checks a saved card (JSON Schema compiled, CEL rules compiled) and its
422 field errors are shown next to the field or the editor they name (``decision.rules.1.when``
next to the rules).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from panjereh.portal import i18n
from panjereh.portal.api import ApiProblem, FieldIssue
from panjereh.portal.web import Visit, VisitDep

router = APIRouter()

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
#: drafts on one page of the authority's queue
QUEUE_PAGE = 50
AUDIENCES = ("citizen", "business", "government")
CHANNELS = ("web", "mobile", "sms", "phone", "kiosk", "counter", "agency-office", "in-person")
LIFE_EVENTS = tuple(i18n.VOCABULARY["life_event"])
#: the JSON editors and the card fields they hold
EDITORS = ("form_schema", "decision", "inquiries")
NEW_DECISION = {"mode": "agency", "rules": [], "otherwise": "agency"}
#: where a field error of the catalog is shown: a form field, or the editor holding it
SHOWN_AT = {
    "title": "title_fa",
    "description": "description_fa",
    "eligibility": "eligibility_fa",
}


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _form_values(card: dict[str, Any]) -> dict[str, Any]:
    """The edit form's values from a card (a draft, or what was posted)."""
    return {
        "code": card.get("code", ""),
        "agency": card.get("agency", ""),
        "title_fa": (card.get("title") or {}).get("fa", ""),
        "title_en": (card.get("title") or {}).get("en") or "",
        "description_fa": (card.get("description") or {}).get("fa", ""),
        "eligibility_fa": (card.get("eligibility") or {}).get("fa", ""),
        "category": card.get("category", ""),
        "audience": list(card.get("audience") or []),
        "channels": [c["type"] for c in card.get("channels") or []],
        "web_url": next(
            (c.get("url") or "" for c in card.get("channels") or [] if c["type"] == "web"), ""
        ),
        "life_events": list(card.get("life_events") or []),
        "sla_days": str(card.get("sla_days", "")),
        "in_person_visits": str(card.get("in_person_visits", "0")),
        "maturity": str(card.get("maturity", "")),
        "legal_basis": "\n".join(
            i18n.text(law.get("title"), "fa") for law in card.get("legal_basis") or []
        ),
        "form_schema": json.dumps(
            card.get("form_schema") or {"type": "object"}, ensure_ascii=False, indent=2
        ),
        "decision": json.dumps(card.get("decision") or NEW_DECISION, ensure_ascii=False, indent=2),
        "inquiries": json.dumps(card.get("inquiries") or [], ensure_ascii=False, indent=2),
    }


def _posted(fields: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    values: dict[str, Any] = {k: fields.get(k, "") for k in _form_values({})}
    for name in ("audience", "channels", "life_events"):
        values[name] = multi.get(name, [])
    return values


#: What the catalog says about a draft rather than what the card says: never sent back as
#: content, never shown as a change.
_DRAFT_BOOKKEEPING = frozenset(
    {
        "code",
        "agency",
        "state",
        "card_status",
        "latest_version",
        "rejection_reason",
        "updated_at",
        "updated_by",
        "submitted_at",
    }
)
#: What publishing sets on a card version (not a change the draft's author made).
_PUBLICATION_BOOKKEEPING = frozenset(
    {"version", "status", "approved_by", "approving_organisation", "approved_at", "filled_by"}
)


def _content(
    values: dict[str, Any], base: dict[str, Any], lang: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The card content to send (the base card with the form's fields over it), and the
    problems the portal can name before sending (JSON that does not parse, numbers)."""
    errors: dict[str, str] = {}
    content = {k: v for k, v in base.items() if k not in _DRAFT_BOOKKEEPING}
    content["title"] = {"fa": values["title_fa"].strip(), "en": values["title_en"].strip() or None}
    content["description"] = {"fa": values["description_fa"].strip()}
    eligibility = values["eligibility_fa"].strip()
    content["eligibility"] = {"fa": eligibility} if eligibility else None
    content["category"] = values["category"].strip()
    content["audience"] = [a for a in values["audience"] if a in AUDIENCES]
    kept = {c["type"]: c for c in base.get("channels") or []}
    content["channels"] = [kept.get(t, {"type": t}) for t in values["channels"] if t in CHANNELS]
    web_url = values["web_url"].strip()
    for channel in content["channels"]:
        if channel["type"] == "web":
            channel["url"] = web_url or None
    content["life_events"] = [e for e in values["life_events"] if e in LIFE_EVENTS]
    content["legal_basis"] = [{"title": {"fa": line}} for line in _lines(values["legal_basis"])]
    for name in ("sla_days", "in_person_visits", "maturity"):
        raw = i18n.latin_digits(str(values[name]).strip())
        if raw.isdigit():
            content[name] = int(raw)
        else:
            errors[name] = i18n.choose(lang, "یک عدد بنویسید.", "Enter a number.")
    for editor in EDITORS:
        try:
            content[editor] = json.loads(values[editor] or "null")
        except json.JSONDecodeError as error:
            errors[editor] = i18n.choose(
                lang,
                f"متن JSON درست نیست (سطر {i18n.persian_digits(error.lineno)}).",
                f"This is not valid JSON (line {error.lineno}).",
            )
    return content, errors


def _place(issues: list[FieldIssue]) -> tuple[dict[str, list[str]], list[str]]:
    """The catalog's field errors by the form field or editor that shows them."""
    placed: dict[str, list[str]] = {}
    left: list[str] = []
    known = set(_form_values({}))
    for issue in issues:
        path = issue.field.removeprefix("body.")
        head = path.split(".")[0]
        target = SHOWN_AT.get(head, head)
        message = issue.message
        if head in EDITORS and path != head:
            message = f"{path}: {issue.message}"
        if target in known:
            placed.setdefault(target, []).append(message)
        else:
            left.append(f"{path}: {issue.message}" if path else issue.message)
    return placed, left


def _agencies_of(visit: Visit) -> list[str]:
    session = visit.require_signed_in()
    return session.agencies("agency-admin")


def _render_editor(
    visit: Visit,
    *,
    values: dict[str, Any],
    new: bool,
    errors: dict[str, list[str]] | None = None,
    problems: list[str] | None = None,
    draft: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return visit.render(
        "catalog_edit.html",
        status=status,
        values=values,
        new=new,
        errors=errors or {},
        problems=problems or [],
        draft=draft,
        agencies=_agencies_of(visit),
        audiences=AUDIENCES,
        channels=CHANNELS,
        life_events=LIFE_EVENTS,
        form_key=secrets.token_urlsafe(16),
    )


@router.get("/catalog/new", response_class=HTMLResponse)
async def new_card(visit: VisitDep) -> Response:
    agencies = _agencies_of(visit)
    values = _form_values({"agency": agencies[0] if agencies else ""})
    return _render_editor(visit, values=values, new=True)


async def _multi_form(visit: Visit) -> tuple[dict[str, str], dict[str, list[str]]]:
    fields = await visit.form()
    body = (await visit.request.body()).decode("utf-8", "replace")
    return fields, parse_qs(body, keep_blank_values=False)


@router.post("/catalog/new", response_class=HTMLResponse)
async def create_card(visit: VisitDep) -> Response:
    fields, multi = await _multi_form(visit)
    values = _posted(fields, multi)
    values["code"] = i18n.latin_digits(fields.get("code", "").strip())
    values["agency"] = fields.get("agency", "")
    content, local = _content(values, {}, visit.lang)
    if not CODE.match(values["code"]):
        local["code"] = i18n.choose(
            visit.lang, "شناسه خدمت را با رقم و حروف لاتین بنویسید.", "Use digits and letters."
        )
    if local:
        errors = {k: [v] for k, v in local.items()}
        return _render_editor(visit, values=values, new=True, errors=errors, status=422)
    body = {"code": values["code"], "agency": values["agency"], **content}
    try:
        await visit.post(
            "/api/v1/catalog/services",
            auth=True,
            json=body,
            headers={"Idempotency-Key": f"portal-{fields.get('form_key') or secrets.token_hex(8)}"},
        )
    except ApiProblem as problem:
        if problem.status not in {400, 403, 409, 422}:
            raise
        placed, left = _place(problem.errors)
        if not problem.errors:
            left.append(problem.detail or problem.title)
        return _render_editor(
            visit, values=values, new=True, errors=placed, problems=left, status=422
        )
    visit.flash(visit._("پیش‌نویس ذخیره شد.", "The draft was saved."))
    return visit.redirect(f"/catalog/drafts/{values['code']}")


@router.get("/catalog/drafts/{code}", response_class=HTMLResponse)
async def edit_draft(visit: VisitDep, code: str) -> Response:
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    draft = await visit.get(f"/api/v1/catalog/services/{code}/draft", auth=True)
    return _render_editor(visit, values=_form_values(draft), new=False, draft=draft)


@router.post("/catalog/drafts/{code}", response_class=HTMLResponse)
async def save_draft(visit: VisitDep, code: str) -> Response:
    fields, multi = await _multi_form(visit)
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    draft = await visit.get(f"/api/v1/catalog/services/{code}/draft", auth=True)
    values = _posted(fields, multi)
    values["code"], values["agency"] = draft["code"], draft["agency"]
    content, local = _content(values, draft, visit.lang)
    if local:
        errors = {k: [v] for k, v in local.items()}
        return _render_editor(
            visit, values=values, new=False, errors=errors, draft=draft, status=422
        )
    try:
        await visit.call("PUT", f"/api/v1/catalog/services/{code}/draft", auth=True, json=content)
    except ApiProblem as problem:
        if problem.status not in {400, 403, 409, 422}:
            raise
        placed, left = _place(problem.errors)
        if not problem.errors:
            left.append(problem.detail or problem.title)
        return _render_editor(
            visit, values=values, new=False, errors=placed, problems=left, draft=draft, status=422
        )
    visit.flash(visit._("پیش‌نویس ذخیره شد.", "The draft was saved."))
    return visit.redirect(f"/catalog/drafts/{code}")


@router.post("/catalog/drafts/{code}/submit")
async def submit_draft(visit: VisitDep, code: str) -> Response:
    await visit.form()
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    await visit.post(f"/api/v1/catalog/services/{code}/submit", auth=True)
    visit.flash(visit._("پیش‌نویس برای تأیید فرستاده شد.", "The draft was sent for approval."))
    return visit.redirect(f"/catalog/drafts/{code}")


# ------------------------------------------------------------------ the catalog authority
@router.get("/catalog/review", response_class=HTMLResponse)
async def review_queue(
    visit: VisitDep, code: str = "", page: int = Query(1, ge=1, le=1000)
) -> Response:
    """The drafts waiting for the authority, the longest waiting first."""
    visit.require_signed_in()
    wanted = i18n.latin_digits(code.strip())
    if wanted and CODE.match(wanted):  # an address with ?code= still opens that draft
        return visit.redirect(f"/catalog/review/{wanted}")
    listing, agencies = await asyncio.gather(
        visit.get(
            "/api/v1/catalog/drafts", auth=True, params={"page": page, "page_size": QUEUE_PAGE}
        ),
        visit.agency_names(),
    )
    pages = max(1, -(-int(listing["total"]) // int(listing["page_size"])))
    return visit.render("catalog_lookup.html", listing=listing, agencies=agencies, pages=pages)


def _diff(published: dict[str, Any] | None, draft: dict[str, Any]) -> list[dict[str, str]]:
    """The card fields whose value the draft changes, before and after, as readable JSON."""
    skip = _DRAFT_BOOKKEEPING | _PUBLICATION_BOOKKEEPING
    rows = []
    for name in sorted(set(draft) - skip):
        before = (published or {}).get(name)
        after = draft.get(name)
        if before != after:
            rows.append(
                {
                    "field": name,
                    "before": "" if published is None else _shown(before),
                    "after": _shown(after),
                }
            )
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)


@router.get("/catalog/review/{code}", response_class=HTMLResponse)
async def review(visit: VisitDep, code: str) -> Response:
    return await _review(visit, code)


async def _review(visit: Visit, code: str, *, error: str = "", reason: str = "") -> Response:
    visit.require_signed_in()
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    draft = await visit.get(f"/api/v1/catalog/services/{code}/draft", auth=True)
    try:
        published = await visit.get(f"/api/v1/catalog/services/{code}")
    except ApiProblem as problem:
        if problem.status != 404:
            raise
        published = None
    return visit.render(
        "catalog_review.html",
        status=422 if error else 200,
        draft=draft,
        published=published,
        rows=_diff(published, draft),
        error=error,
        reason=reason,
    )


@router.post("/catalog/review/{code}/approve")
async def approve(visit: VisitDep, code: str) -> Response:
    await visit.form()
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    card = await visit.post(f"/api/v1/catalog/services/{code}/approve", auth=True)
    visit.flash(
        visit._(
            f"نسخه {i18n.persian_digits(card['version'])} منتشر شد.",
            f"Version {card['version']} is published.",
        )
    )
    return visit.redirect(f"/services/{code}")


@router.post("/catalog/review/{code}/reject", response_class=HTMLResponse)
async def reject(visit: VisitDep, code: str) -> Response:
    fields = await visit.form()
    if not CODE.match(code):
        raise ApiProblem(404, "card_not_found")
    reason = fields.get("reason", "").strip()
    if len(reason) < 3:
        return await _review(
            visit,
            code,
            error=visit._("دلیل رد را بنویسید.", "Write why the draft is sent back."),
        )
    await visit.post(f"/api/v1/catalog/services/{code}/reject", auth=True, json={"reason": reason})
    visit.flash(visit._("پیش‌نویس با دلیل برگردانده شد.", "The draft was sent back."))
    return visit.redirect(f"/catalog/review/{code}")
