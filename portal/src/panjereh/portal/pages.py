"""The public and citizen pages: home, search, service cards, sign-in, requests, data tracker,
document verification and the KPI dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
import uuid
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from panjereh.portal import forms, i18n
from panjereh.portal.api import ApiProblem
from panjereh.portal.charts import Bar, bar_chart
from panjereh.portal.sessions import Challenge
from panjereh.portal.web import VisitDep, query, safe_next

router = APIRouter()

FACETS = ("life_event", "agency", "category", "channel", "maturity", "audience")
FINAL = {"approved", "rejected", "cancelled", "failed"}
#: how many of the most-used services the home page names
MOST_USED = 5
TRACKING_CODE = re.compile(r"^[0-9]{6,32}$")
SERVICE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
#: what the sign-in API's error codes mean to a citizen (the API's own message otherwise)
SIGN_IN_MESSAGES: dict[str, tuple[str, str]] = {
    "mobile_not_owned": (
        "این شماره همراه به نام این کد ملی ثبت نشده است. شماره‌ای را بنویسید که به نام خودتان است.",
        "This mobile number is not registered to this national code. Use a number in your name.",
    ),
    "otp_expired": (
        "زمان این کد گذشته است. دوباره کد بگیرید.",
        "This code has expired. Ask for a new one.",
    ),
    "otp_attempts_exhausted": (
        "کد چند بار نادرست وارد شد و دیگر پذیرفته نمی‌شود. دوباره کد بگیرید.",
        "The code was entered wrongly too many times. Ask for a new one.",
    ),
    "otp_invalid": ("کد واردشده درست نیست.", "The code is not correct."),
    "otp_challenge_not_found": (
        "این درخواست ورود دیگر معتبر نیست. دوباره کد بگیرید.",
        "This sign-in is no longer valid. Ask for a new code.",
    ),
    "otp_already_used": (
        "این کد پیش‌تر به کار رفته است. دوباره کد بگیرید.",
        "This code was already used. Ask for a new one.",
    ),
    "otp_rate_limited": (
        "درخواست کد بیش از اندازه بوده است. کمی بعد دوباره تلاش کنید.",
        "Too many codes were asked for. Try again later.",
    ),
    "otp_resend_too_soon": (
        "کد تازه‌ای فرستاده شده است؛ کمی صبر کنید و دوباره تلاش کنید.",
        "A code was just sent; wait a little before asking again.",
    ),
    "too_many_requests": (
        "درخواست‌ها بیش از اندازه بوده است. کمی بعد دوباره تلاش کنید.",
        "Too many attempts. Try again in a little while.",
    ),
}
FIELD_MESSAGES: dict[str, tuple[str, str]] = {
    "national_code_checksum": (
        "کد ملی درست نیست؛ رقم‌ها را دوباره بررسی کنید.",
        "This national code is not valid; check the digits.",
    ),
}


# ---------------------------------------------------------------------------- public pages
@router.get("/", response_class=HTMLResponse)
async def home(visit: VisitDep) -> Response:
    stats, request_stats, smart, everything, agencies = await asyncio.gather(
        visit.get("/api/v1/catalog/stats"),
        visit.get("/api/v1/requests/stats"),
        visit.get("/api/v1/catalog/services", params={"maturity": 5, "page_size": 6}),
        visit.get("/api/v1/catalog/services", params={"page_size": 1}),
        visit.agency_names(),
    )
    most_used = [
        item
        for item in request_stats.get("most_used") or []
        if SERVICE_CODE.match(item["service_code"])
    ][:MOST_USED]
    titles = await service_titles(visit, {item["service_code"] for item in most_used})
    return visit.render(
        "home.html",
        stats=stats,
        request_stats=request_stats,
        smart=smart["items"],
        life_events=everything["facets"]["life_event"],
        agencies=agencies,
        # a service no longer in the catalog (retired) is not offered on the home page
        most_used=[item for item in most_used if titles.get(item["service_code"])],
        titles=titles,
    )


@router.get("/search", response_class=HTMLResponse)
async def search(
    visit: VisitDep,
    *,
    q: str = "",
    agency: str = "",
    category: str = "",
    life_event: str = "",
    channel: str = "",
    maturity: str = "",
    audience: str = "",
    page: int = Query(1, ge=1, le=1000),
) -> Response:
    chosen = {
        "agency": agency,
        "category": category,
        "life_event": life_event,
        "channel": channel,
        "maturity": maturity,
        "audience": audience,
    }
    chosen = {k: v for k, v in chosen.items() if v}
    results, agencies = await asyncio.gather(
        visit.get(
            "/api/v1/catalog/services",
            params={"q": q.strip(), **chosen, "page": page, "page_size": 20},
        ),
        visit.agency_names(),
    )

    def link(**changes: Any) -> str:
        values = {"q": q, **chosen, **changes}
        return "/search?" + query(**values)

    pages = max(1, -(-int(results["total"]) // int(results["page_size"])))
    return visit.render(
        "search.html",
        q=q,
        chosen=chosen,
        results=results,
        facets=[(name, results["facets"][name]) for name in FACETS],
        agencies=agencies,
        categories=category_names(results["facets"]),
        link=link,
        pages=pages,
    )


def category_names(facets: dict[str, Any]) -> dict[str, Any]:
    """Category slug → its ``{"fa", "en"}`` name, as the catalog's facets give them."""
    return {
        str(facet["value"]): facet["label"]
        for facet in facets.get("category") or []
        if facet.get("label")
    }


@router.get("/services/{code}", response_class=HTMLResponse)
async def service(visit: VisitDep, code: str) -> Response:
    if not SERVICE_CODE.match(code):
        raise ApiProblem(404, "service_not_found")
    card, agencies = await asyncio.gather(
        visit.get(f"/api/v1/catalog/services/{code}"), visit.agency_names()
    )
    return visit.render("service.html", card=card, agencies=agencies, applicable=_applicable(card))


def _applicable(card: dict[str, Any]) -> bool:
    return int(card.get("maturity", 0)) >= 3 and card.get("status") == "published"


@router.get("/kpi", response_class=HTMLResponse)
async def dashboard(visit: VisitDep) -> Response:
    stats, request_stats = await asyncio.gather(
        visit.get("/api/v1/catalog/stats"), visit.get("/api/v1/requests/stats")
    )
    lang = visit.lang
    rtl = lang == "fa"
    by_maturity = [
        Bar(i18n.label("maturity", level, lang), count, i18n.number(count, lang))
        for level, count in sorted(stats["by_maturity"].items(), key=lambda kv: int(kv[0]))
    ]
    shares = [
        ("electronic_share", stats["electronic_share"], visit._("خدمات الکترونیکی", "Electronic")),
        ("smart_share", stats["smart_share"], visit._("خدمات هوشمند", "Smart services")),
        (
            "agencies_connected_share",
            stats["agencies_connected_share"],
            visit._("دستگاه‌های متصل", "Agencies connected"),
        ),
        (
            "once_only_share",
            stats["once_only_share"],
            visit._("خدمات بی‌نیاز از مدرک کاغذی", "Services asking no paper"),
        ),
        (
            "decided_without_human_share",
            request_stats["decided_without_human_share"],
            visit._("تصمیم بدون دخالت انسانی", "Decided with no human step"),
        ),
        (
            "sla_met_share",
            request_stats["sla_met_share"],
            visit._("درخواست‌های انجام‌شده در مهلت", "Requests decided on time"),
        ),
    ]
    share_bars = [Bar(name, value, i18n.percent(value, lang)) for _, value, name in shares]
    return visit.render(
        "kpi.html",
        stats=stats,
        request_stats=request_stats,
        maturity_chart=bar_chart(
            "chart-maturity",
            visit._("خدمات به تفکیک سطح بلوغ", "Services by maturity"),
            by_maturity,
            rtl=rtl,
        ),
        maturity_bars=by_maturity,
        share_chart=bar_chart(
            "chart-shares", visit._("سهم‌ها", "Shares"), share_bars, maximum=1.0, rtl=rtl
        ),
        share_bars=share_bars,
    )


@router.get("/verify", response_class=HTMLResponse)
async def verify_lookup(visit: VisitDep, document: str = "") -> Response:
    wanted = i18n.latin_digits(document.strip())
    if wanted:
        return visit.redirect(f"/verify/{_document_id(wanted) or 'invalid'}")
    return visit.render("verify.html", result=None, document_id="", card=None)


def _document_id(value: str) -> str | None:
    candidate = value.rstrip("/").rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(candidate))
    except ValueError:
        return None


@router.get("/verify/{document_id}", response_class=HTMLResponse)
async def verify(visit: VisitDep, document_id: str) -> Response:
    checked = _document_id(document_id)
    result: dict[str, Any] = {"valid": False}
    if checked is not None:
        try:
            result = await visit.get(f"/api/v1/verify/{checked}")
        except ApiProblem as problem:
            if problem.status not in {404, 422}:
                raise
    card = None
    if result.get("service_code"):
        try:
            card = await visit.get(f"/api/v1/catalog/services/{result['service_code']}")
        except ApiProblem:
            card = None
    return visit.render("verify.html", result=result, document_id=checked or "", card=card)


@router.get("/lang/{lang}")
async def language(visit: VisitDep, lang: str, next: str = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 24 * 3600, samesite="lax", path="/")
    return response


# ---------------------------------------------------------------------------- sign-in
@router.get("/login", response_class=HTMLResponse)
async def login_form(visit: VisitDep, next: str = "/requests") -> Response:
    visit.ensure_session()
    return visit.render("login.html", next=safe_next(next, "/requests"), values={}, errors={})


@router.post("/login", response_class=HTMLResponse)
async def login(visit: VisitDep) -> Response:
    submitted = await visit.form()
    next_url = safe_next(submitted.get("next"), "/requests")
    national_code = i18n.latin_digits(submitted.get("national_code", "").strip())
    mobile = i18n.latin_digits(submitted.get("mobile", "").strip())
    values = {"national_code": national_code, "mobile": mobile}
    errors: dict[str, str] = {}
    if not national_code:
        errors["national_code"] = forms.message("required", visit.lang)
    if not mobile:
        errors["mobile"] = forms.message("required", visit.lang)
    if not errors:
        try:
            challenge = await visit.post(
                "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
            )
        except ApiProblem as problem:
            if problem.status >= 500:
                raise
            for issue in problem.errors:
                name = issue.field.split(".")[-1]
                known = FIELD_MESSAGES.get(issue.code)
                errors[name] = visit._(*known) if known else issue.message
            if not errors:
                errors["form"] = _sign_in_message(visit, problem)
        else:
            session = visit.ensure_session()
            session.challenge = Challenge(
                challenge["challenge_id"],
                national_code,
                mobile,
                time.monotonic() + float(challenge.get("expires_in", 120)),
            )
            return visit.redirect("/login/code?" + query(next=next_url))
    return visit.render("login.html", status=422, next=next_url, values=values, errors=errors)


def _sign_in_message(visit: Any, problem: ApiProblem) -> str:
    known = SIGN_IN_MESSAGES.get(problem.code)
    if known:
        return str(visit._(*known))
    return problem.detail or problem.title or str(visit._("ورود ممکن نشد.", "Sign-in failed."))


@router.get("/login/code", response_class=HTMLResponse)
async def code_form(visit: VisitDep, next: str = "/requests") -> Response:
    session = visit.session
    if session is None or session.challenge is None:
        return visit.redirect("/login?" + query(next=next))
    return visit.render(
        "login_code.html",
        next=safe_next(next, "/requests"),
        mobile=session.challenge.mobile,
        error="",
    )


@router.post("/login/code", response_class=HTMLResponse)
async def verify_code(visit: VisitDep) -> Response:
    submitted = await visit.form()
    next_url = safe_next(submitted.get("next"), "/requests")
    session = visit.session
    assert session is not None  # visit.form() refuses a post without a session
    challenge = session.challenge
    if challenge is None:
        return visit.redirect("/login?" + query(next=next_url))
    code = i18n.latin_digits(submitted.get("code", "").strip())
    error = ""
    if not re.fullmatch(r"[0-9]{4,8}", code):
        error = visit._("کد پیامک‌شده را با رقم بنویسید.", "Enter the code from the SMS.")
    else:
        try:
            tokens = await visit.post(
                "/api/v1/auth/otp/verify",
                json={"challenge_id": challenge.challenge_id, "code": code},
            )
        except ApiProblem as problem:
            if problem.status >= 500:
                raise
            left = problem.extra.get("attempts_left")
            if problem.code == "otp_invalid" and left == 0:
                problem.code = "otp_attempts_exhausted"  # that was the last try
            if problem.code in {"otp_expired", "otp_attempts_exhausted", "otp_challenge_not_found"}:
                session.challenge = None
                visit.flash(_sign_in_message(visit, problem))
                return visit.redirect("/login?" + query(next=next_url))
            error = _sign_in_message(visit, problem)
            if problem.code == "otp_invalid" and isinstance(left, int):
                error += " " + visit._(
                    f"{i18n.persian_digits(left)} بار دیگر می‌توانید تلاش کنید.",
                    f"{left} more tries.",
                )
        else:
            session = visit.renew_session()
            session.sign_in(tokens, time.monotonic())
            return visit.redirect(next_url)
    return visit.render(
        "login_code.html", status=422, next=next_url, mobile=challenge.mobile, error=error
    )


@router.post("/logout")
async def logout(visit: VisitDep) -> Response:
    await visit.form()
    session = visit.session
    if session is not None and session.access_token:
        # signing out here goes on whatever the API says: the session below is dropped
        with contextlib.suppress(ApiProblem):
            await visit.api.call(
                "POST",
                "/api/v1/auth/logout",
                lang=visit.lang,
                token=session.access_token,
                json={"refresh_token": session.refresh_token} if session.refresh_token else None,
            )
    visit.end_session()
    return visit.redirect("/")


# ---------------------------------------------------------------------------- requests
@router.get("/services/{code}/apply", response_class=HTMLResponse)
async def apply_form(visit: VisitDep, code: str) -> Response:
    visit.require_signed_in()
    if not SERVICE_CODE.match(code):
        raise ApiProblem(404, "service_not_found")
    card = await visit.get(f"/api/v1/catalog/services/{code}")
    fields = forms.fields_of(card.get("form_schema") or {}, visit.lang)
    return visit.render(
        "apply.html", card=card, fields=fields, form_key=secrets.token_urlsafe(16), errors=[]
    )


@router.post("/services/{code}/apply", response_class=HTMLResponse)
async def apply(visit: VisitDep, code: str) -> Response:
    visit.require_signed_in()
    submitted = await visit.form()
    if not SERVICE_CODE.match(code):
        raise ApiProblem(404, "service_not_found")
    card = await visit.get(f"/api/v1/catalog/services/{code}")
    fields = forms.fields_of(card.get("form_schema") or {}, visit.lang)
    inputs, valid = forms.read(fields, submitted, visit.lang)
    form_key = submitted.get("form_key") or secrets.token_urlsafe(16)
    errors: list[str] = []
    if valid:
        try:
            created = await visit.post(
                "/api/v1/requests",
                auth=True,
                json={"service_code": code, "inputs": inputs},
                headers={"Idempotency-Key": f"portal-{form_key}"[:128]},
            )
        except ApiProblem as problem:
            if problem.status not in {409, 422}:
                raise
            errors = forms.attach_api_errors(fields, problem.errors)
            if not problem.errors:
                errors.append(problem.detail or problem.title)
            form_key = secrets.token_urlsafe(16)
        else:
            tracking = created["tracking_code"]
            visit.flash(
                visit._(
                    f"درخواست شما ثبت شد. کد رهگیری: {i18n.persian_digits(tracking)}",
                    f"Your request was submitted. Tracking code: {tracking}",
                )
            )
            return visit.redirect(f"/requests/{created['tracking_code']}")
    return visit.render(
        "apply.html", status=422, card=card, fields=fields, form_key=form_key, errors=errors
    )


@router.get("/requests", response_class=HTMLResponse)
async def my_requests(visit: VisitDep, page: int = Query(1, ge=1, le=1000)) -> Response:
    visit.require_signed_in()
    listing = await visit.get("/api/v1/requests", auth=True, params={"page": page, "page_size": 20})
    titles = await service_titles(visit, {item["service_code"] for item in listing["items"]})
    return visit.render("requests.html", listing=listing, titles=titles)


async def service_titles(visit: Any, codes: set[str]) -> dict[str, Any]:
    """Service titles for request lists (the request summary may not carry one)."""

    async def title(code: str) -> tuple[str, Any]:
        try:
            card = await visit.get(f"/api/v1/catalog/services/{code}")
        except ApiProblem:
            return code, None
        return code, card["title"]

    return dict(await asyncio.gather(*(title(code) for code in sorted(codes))))


@router.get("/requests/{tracking_code}", response_class=HTMLResponse)
async def one_request(visit: VisitDep, tracking_code: str) -> Response:
    visit.require_signed_in()
    if not TRACKING_CODE.match(tracking_code):
        raise ApiProblem(404, "request_not_found")
    request = await visit.get(f"/api/v1/requests/{tracking_code}", auth=True)
    card: Any = None
    try:
        card = await visit.get(
            f"/api/v1/catalog/services/{request['service_code']}/versions/"
            f"{request['service_version']}"
        )
    except ApiProblem:
        card = None
    inquiry_names = {
        inquiry["type"]: inquiry.get("purpose") for inquiry in (card or {}).get("inquiries", [])
    }
    return visit.render(
        "request.html",
        request=request,
        card=card,
        final=request["status"] in FINAL,
        inquiry_names=inquiry_names,
    )


@router.get("/requests/{tracking_code}/document")
async def document(visit: VisitDep, tracking_code: str) -> Response:
    return await _download(visit, tracking_code, "document")


@router.get("/requests/{tracking_code}/receipt")
async def receipt(visit: VisitDep, tracking_code: str) -> Response:
    return await _download(visit, tracking_code, "receipt")


async def _download(visit: Any, tracking_code: str, kind: str) -> Response:
    visit.require_signed_in()
    if not TRACKING_CODE.match(tracking_code):
        raise ApiProblem(404, "request_not_found")
    answer = await visit.call(
        "GET", f"/api/v1/requests/{tracking_code}/{kind}", auth=True, raw=True
    )
    return Response(
        answer.content,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="panjereh-{kind}-{tracking_code}.json"'
        },
    )


@router.get("/data-access", response_class=HTMLResponse)
async def data_tracker(visit: VisitDep, page: int = Query(1, ge=1, le=1000)) -> Response:
    visit.require_signed_in()
    listing = await visit.get(
        "/api/v1/me/data-access", auth=True, params={"page": page, "page_size": 50}
    )
    named = {item["purpose"].get("service_code") or "" for item in listing["items"]}
    codes = {c for c in named if SERVICE_CODE.match(c) and not c.startswith("identity.")}
    titles, agencies = await asyncio.gather(service_titles(visit, codes), visit.agency_names())
    return visit.render("data_access.html", listing=listing, titles=titles, agencies=agencies)
