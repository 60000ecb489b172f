"""Citizens' journeys through the portal in headless Chromium, against the real platform.

Every page type is checked with axe-core (no serious or critical violation) and photographed
at desktop and phone width; the first page's weight (font included) stays under budget.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal.browser import (
    checked,
    fresh_mobile,
    fresh_national_code,
    sign_in,
    sms_code,
    sms_count,
)

pytestmark = pytest.mark.e2e

CIVIL_REGISTRY_OFFICER = "3010010011"  # seeded staff: officer:civil-registry
CIVIL_REGISTRY_ADMIN = "2010010019"  # seeded staff: agency-admin:civil-registry
CATALOG_AUTHORITY = "1002002001"  # seeded staff: catalog-authority
BIRTH_REGISTRATION = "11010000002"  # agency mode: an officer decides
CRIMINAL_RECORD_CERTIFICATE = "11030000001"  # smart
COPY_OF_BIRTH_CERTIFICATE = "11010000001"  # smart, no form: approves a living applicant
TUITION_LOAN = "11080000001"  # smart, a form of several fields
#: the first page, compressed, with its stylesheet and font
PAGE_WEIGHT_BUDGET = 150_000


def test_a_persian_search_typed_with_arabic_letters_finds_a_smart_service(
    page: Page,
) -> None:
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("html")).to_have_attribute("lang", "fa")
    checked(page, "home")

    # Arabic yeh (U+064A) and kaf (U+0643), as an Arabic keyboard types them
    page.fill("#q", "سابقه \u0643\u064a\u0641\u0631\u064a")
    page.press("#q", "Enter")
    page.wait_for_url("**/search?q=*")
    first = page.locator(".cards .card-item").first
    expect(first.locator("a")).to_have_attribute("href", f"/services/{CRIMINAL_RECORD_CERTIFICATE}")
    expect(first.locator(".badge")).to_have_text("هوشمند")
    checked(page, "search")

    # a facet narrows the results, and the count is written in Persian digits
    page.locator("details", has_text="سطح بلوغ").locator("summary").click()
    page.locator("details", has_text="سطح بلوغ").get_by_role(
        "link", name=re.compile("هوشمند")
    ).click()
    expect(page.locator(".chosen")).to_contain_text("هوشمند")
    expect(page.locator("#results-h .count")).to_have_text(re.compile(r"^\([۰-۹]+\)$"))

    first.locator("a").click()
    expect(page.locator("h1")).to_have_text("گواهی عدم سوء پیشینه")
    expect(page.locator(".facts")).to_contain_text("دستگاه ارائه‌دهنده")
    expect(page.get_by_role("heading", name="مبنای قانونی")).to_be_visible()
    expect(page.get_by_role("heading", name="مدارکی که دیگر لازم نیست")).to_be_visible()
    checked(page, "service")


def test_a_citizen_signs_in_applies_and_gets_a_verifiable_document(
    page: Page, site: str, tmp_path: Path
) -> None:
    citizen, mobile = fresh_national_code(), fresh_mobile()
    # a page for citizens sends a visitor to sign in, then back
    page.goto(f"/services/{TUITION_LOAN}/apply")
    page.wait_for_url("**/login?next=*")
    checked(page, "login")

    # the API's checksum error, in Persian, next to the field
    page.fill("#national_code", citizen[:9] + str((int(citizen[9]) + 1) % 10))
    page.fill("#mobile", mobile)
    page.click("form.panel button[type=submit]")
    expect(page.locator("#national_code-error")).to_have_text(re.compile("کد ملی"))
    checked(page, "login-error")

    # a mobile that is not the citizen's (the simulated registry: ending in 0000)
    page.fill("#national_code", citizen)
    page.fill("#mobile", "09120000000")
    page.click("form.panel button[type=submit]")
    expect(page.locator("#form-error")).to_have_text(re.compile("به نام این کد ملی ثبت نشده"))

    before = sms_count(site, mobile)
    page.fill("#mobile", mobile)
    page.click("form.panel button[type=submit]")
    page.wait_for_url("**/login/code**")
    checked(page, "login-code")
    code = sms_code(site, mobile, after=before)
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("form.panel button[type=submit]")
    expect(page.locator("#code-error")).to_have_text(
        "کد واردشده درست نیست. ۴ بار دیگر می‌توانید تلاش کنید."
    )
    page.fill("#code", code)
    page.click("form.panel button[type=submit]")
    page.wait_for_url(f"**/services/{TUITION_LOAN}/apply")

    # the tokens stay on the server: the browser holds one HttpOnly session cookie
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies if c["name"] != "lang"] == ["panjereh_session"]
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"
    assert "eyJ" not in page.content()

    # the form generated from the card's JSON Schema: a mistake first, explained inline
    page.fill("#f-student_number", "9912345")
    page.fill("#f-semester", "۳۰")  # Persian digits are read; 30 is past the maximum of 20
    page.fill("#f-amount_rials", "100000000")
    page.click("form.panel button[type=submit]")
    expect(page.locator("#f-semester-error")).to_have_text("باید حداکثر ۲۰ باشد.")
    expect(page.locator("#f-semester")).to_have_attribute("aria-invalid", "true")
    checked(page, "apply-error")

    page.fill("#f-semester", "۳")
    page.click("form.panel button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    tracking_code = page.url.rsplit("/", 1)[1]
    expect(page.locator(".notice").first).to_contain_text("درخواست شما ثبت شد")

    deadline = time.monotonic() + 30
    while not page.locator(".decision").count() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(page.locator(".decision h2")).to_have_text("نتیجه: تأیید")
    expect(page.locator(".timeline li")).to_have_count(4)
    expect(page.locator(".document img")).to_have_attribute(
        "src", re.compile(r"^/api/v1/verify/[0-9a-f-]{36}/qr\.png$")
    )
    checked(page, "request")

    # the document: a signed JSON file
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("دریافت سند امضاشده")).click()
    saved = tmp_path / "document.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text())
    assert document["jws"].count(".") == 2
    document_id = document["document_id"]
    # the QR's address is the public page, not the JSON API
    assert document["verify_url"].endswith(f"/verify/{document_id}")
    assert "/api/" not in document["verify_url"]

    # the signed decision receipt
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("رسید امضاشده")).click()
    download.value.save_as(tmp_path / "receipt.json")
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt["tracking_code"] == tracking_code
    assert receipt["jws"].count(".") == 2

    # the verification page, opened from the document's QR address (anyone, signed in or not)
    stranger = page.context.browser.new_context(base_url=site, locale="fa-IR")  # type: ignore[union-attr]
    try:
        public = stranger.new_page()
        public.goto(f"/verify?document={document['verify_url']}")
        public.wait_for_url(f"**/verify/{document_id}")
        expect(public.locator(".verdict h2")).to_contain_text("این سند معتبر است")
        expect(public.locator(".verdict")).to_contain_text("وام شهریه دانشجویی")
        assert citizen not in public.content()
        checked(public, "verify")
        public.goto("/verify/00000000-0000-4000-8000-000000000000")
        expect(public.locator(".verdict h2")).to_contain_text("این سند معتبر نیست")
        checked(public, "verify-invalid")
    finally:
        stranger.close()

    page.goto("/requests")
    expect(page.locator("tbody tr").first).to_contain_text("وام شهریه دانشجویی")
    checked(page, "my-requests")

    # the data tracker, in plain words: the civil registry was asked, for this request
    page.goto("/data-access")
    entry = page.locator(".tracker li", has_text="ثبت احوال").filter(
        has=page.locator(f"a[href='/requests/{tracking_code}']")
    )
    expect(entry.first).to_contain_text("سامانه درخواست‌های پنجره")
    checked(page, "data-tracker")


def test_sign_in_and_apply_with_the_keyboard_only(page: Page, site: str) -> None:
    mobile = fresh_mobile()
    page.goto(f"/login?next=/services/{COPY_OF_BIRTH_CERTIFICATE}/apply")

    def tab_to(element_id: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} cannot be reached with the Tab key")

    before = sms_count(site, mobile)
    tab_to("national_code")
    page.keyboard.type(fresh_national_code())
    tab_to("mobile")
    page.keyboard.type(mobile)
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/code**")
    # the code field has the focus on arrival
    page.wait_for_function("document.activeElement && document.activeElement.id === 'code'")
    page.keyboard.type(sms_code(site, mobile, after=before))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/services/{COPY_OF_BIRTH_CERTIFICATE}/apply")

    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "ثبت درخواست":
            break
    else:
        raise AssertionError("the submit button cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    expect(page.locator("h1")).to_have_text("صدور المثنی شناسنامه")


def test_the_dashboard_draws_the_kpis_with_their_numbers(page: Page) -> None:
    page.goto("/kpi")
    maturity = page.locator("svg#chart-maturity")
    expect(maturity).to_have_attribute("role", "img")
    expect(maturity.locator("rect")).to_have_count(6)
    expect(page.locator("svg#chart-maturity desc")).to_contain_text("هوشمند")
    expect(page.locator(".numbers li").first).to_contain_text(re.compile("[۰-۹]+"))
    checked(page, "kpi")


def test_errors_are_pages_in_persian(page: Page) -> None:
    missing = page.goto("/no/such/page")
    assert missing is not None
    assert missing.status == 404
    expect(page.locator("h1")).to_have_text("این صفحه پیدا نشد")
    checked(page, "not-found")
    unknown = page.goto("/services/NO-SUCH-CARD")
    assert unknown is not None
    assert unknown.status == 404
    assert "application/problem+json" not in (unknown.headers.get("content-type") or "")


def test_english_is_one_switch_away(page: Page) -> None:
    page.goto("/kpi")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    expect(page.locator("h1")).to_have_text("Panjereh indicators")
    checked(page, "kpi-en")
    page.get_by_role("link", name="فارسی").click()
    expect(page.locator("html")).to_have_attribute("lang", "fa")


def test_the_first_page_stays_under_the_weight_budget(page: Page) -> None:
    transferred: dict[str, int] = {}

    def count(response: object) -> None:
        request = response.request  # type: ignore[attr-defined]
        sizes = request.sizes()
        transferred[request.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]

    page.on("requestfinished", lambda request: count(request.response()))
    page.goto("/", wait_until="networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    assert any(url.endswith(".woff2") for url in transferred), transferred
    total = sum(transferred.values())
    assert total < PAGE_WEIGHT_BUDGET, f"{total} bytes: {transferred}"


def test_an_officer_decides_an_agency_mode_request(page: Page, site: str) -> None:
    # a citizen applies for a card an officer decides (through the API, as a mobile app would)
    with httpx.Client(base_url=site, timeout=10.0) as api:
        mobile = fresh_mobile()
        before = sms_count(site, mobile)
        challenge = api.post(
            "/api/v1/auth/otp", json={"national_code": fresh_national_code(), "mobile": mobile}
        ).json()
        tokens = api.post(
            "/api/v1/auth/otp/verify",
            json={
                "challenge_id": challenge["challenge_id"],
                "code": sms_code(site, mobile, after=before),
            },
        ).json()
        citizen = {"Authorization": f"Bearer {tokens['access_token']}"}
        created = api.post(
            "/api/v1/requests",
            json={"service_code": BIRTH_REGISTRATION, "inputs": {}},
            headers={**citizen, "Idempotency-Key": f"portal-e2e-{time.monotonic_ns()}"},
        ).json()
        tracking_code = created["tracking_code"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = api.get(f"/api/v1/requests/{tracking_code}", headers=citizen).json()
            if state["status"] == "in_review":
                break
            time.sleep(0.2)

    sign_in(page, site, CIVIL_REGISTRY_OFFICER, fresh_mobile(), "/agency")
    row = page.locator("tbody tr", has=page.locator(f"a[href='/agency/requests/{tracking_code}']"))
    expect(row).to_have_count(1)
    checked(page, "agency-queue")
    row.locator("a").click()
    expect(page.locator("#decide-h")).to_be_visible()
    # the officer reads the evidence itself: the civil registry's answer
    expect(page.locator("dl.evidence").first).to_contain_text("alive")

    page.check("input[name=outcome][value=approve]")
    page.click("#decide-h ~ form button[type=submit]")
    expect(page.locator("#decide-error")).to_contain_text("دلیل تصمیم را بنویسید")
    checked(page, "agency-request")
    page.check("input[name=outcome][value=approve]")
    page.fill("#reason", "مدارک کامل است")
    page.click("#decide-h ~ form button[type=submit]")
    expect(page.locator(".decision h2")).to_have_text("نتیجه: تأیید")
    expect(page.locator(".decision")).to_contain_text("مدارک کامل است")


def test_an_agency_admin_drafts_a_card_and_the_authority_publishes_it(
    page: Page, site: str
) -> None:
    code = f"PT{secrets.randbelow(10**8):08d}"
    title = f"خدمت آزمایشی درگاه {code}"
    sign_in(page, site, CIVIL_REGISTRY_ADMIN, fresh_mobile(), "/catalog/new")
    page.fill("#f-code", code)
    page.fill("#f-title_fa", title)
    page.fill("#f-description_fa", "خدمتی برای آزمودن گردش کار شناسنامه در درگاه")
    page.fill("#f-category", "identity-documents")
    page.check("input[name=audience][value=citizen]")
    page.check("input[name=channels][value=web]")
    page.fill("#f-web_url", f"https://my.gov.ir/service/{code}")
    page.select_option("#f-maturity", "3")
    page.fill("#f-sla_days", "۵")
    broken = {
        "mode": "automatic",
        "rules": [
            {"id": "always", "when": "inputs.age >", "outcome": "approve", "reason": {"fa": "ok"}}
        ],
        "otherwise": "agency",
    }
    page.fill("#f-decision", json.dumps(broken))
    page.click("form.panel.wide button[type=submit]")
    # the catalog's 422 names the broken rule; the page shows it next to the rules editor
    expect(page.locator("#e-decision")).to_contain_text("decision.rules.0.when")
    expect(page.locator("#f-decision")).to_have_attribute("aria-invalid", "true")
    checked(page, "catalog-edit-error")

    broken["rules"][0]["when"] = "true"  # type: ignore[index]
    page.fill("#f-decision", json.dumps(broken))
    page.click("form.panel.wide button[type=submit]")
    page.wait_for_url(f"**/catalog/drafts/{code}")
    page.get_by_role("button", name="فرستادن برای تأیید").click()
    expect(page.locator(".notice")).to_contain_text("برای تأیید فرستاده شد")

    page.context.clear_cookies()
    sign_in(page, site, CATALOG_AUTHORITY, fresh_mobile(), "/catalog/review")
    # the authority's queue lists the submitted draft: no code to type
    page.locator(f"table.drafts a[href='/catalog/review/{code}']").click()
    page.wait_for_url(f"**/catalog/review/{code}")
    expect(page.locator("table.diff")).to_contain_text(title)
    checked(page, "catalog-review")
    page.get_by_role("button", name="تأیید و انتشار").click()
    page.wait_for_url(f"**/services/{code}")
    expect(page.locator("h1")).to_have_text(title)

    page.goto(f"/search?q={code}")
    expect(page.locator(f".cards a[href='/services/{code}']")).to_have_count(1)


def test_too_many_wrong_codes_end_the_sign_in_with_a_persian_message(page: Page, site: str) -> None:
    mobile = fresh_mobile()
    before = sms_count(site, mobile)
    page.goto("/login")
    page.fill("#national_code", fresh_national_code())
    page.fill("#mobile", mobile)
    page.click("form.panel button[type=submit]")
    page.wait_for_url("**/login/code**")
    code = sms_code(site, mobile, after=before)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        page.fill("#code", wrong)
        page.click("form.panel button[type=submit]")
        page.wait_for_load_state()
        if "/login/code" not in page.url:
            break
    # the challenge is dead: back to the first step, told why, in Persian
    page.wait_for_url(re.compile(r"/login\?next="))
    expect(page.locator(".notice")).to_contain_text("دوباره کد بگیرید")
