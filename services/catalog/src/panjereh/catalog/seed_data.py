# ruff: noqa: E501 - a data module: one card per block reads better than wrapped strings
"""Demo data for ``make run``: real Iranian agencies and realistic service identity cards.

Cards are written in Persian (with English titles). Smart cards (maturity 5) decide with CEL
rules over the inquiry results the simulated agencies return; the provider agency codes and
inquiry type names are those of the inquiry broker's registry. Service codes are opaque
11-digit strings, as on the official cards.
"""

from __future__ import annotations

from typing import Any

from panjereh.catalog.schemas import CardCreate

PORTAL = "https://my.gov.ir/service/"
ADULT = 'timestamp(inquiries["civil-registry.person"].birth_date + "T00:00:00Z") <= now - duration("157788h")'

AGENCIES: list[dict[str, Any]] = [
    {"code": "interior", "name": {"fa": "وزارت کشور", "en": "Ministry of Interior"}, "kind": "ministry"},
    {"code": "civil-registry", "name": {"fa": "سازمان ثبت احوال کشور", "en": "National Organization for Civil Registration"}, "kind": "organisation", "parent": "interior"},
    {"code": "ict", "name": {"fa": "وزارت ارتباطات و فناوری اطلاعات", "en": "Ministry of Information and Communications Technology"}, "kind": "ministry"},
    {"code": "mobile-registry", "name": {"fa": "سازمان تنظیم مقررات و ارتباطات رادیویی", "en": "Communications Regulatory Authority"}, "kind": "organisation", "parent": "ict"},
    {"code": "economy", "name": {"fa": "وزارت امور اقتصادی و دارایی", "en": "Ministry of Economic Affairs and Finance"}, "kind": "ministry"},
    {"code": "tax", "name": {"fa": "سازمان امور مالیاتی کشور", "en": "Iranian National Tax Administration"}, "kind": "organisation", "parent": "economy"},
    {"code": "police", "name": {"fa": "فرماندهی انتظامی جمهوری اسلامی ایران", "en": "Law Enforcement Command"}, "kind": "organisation"},
    {"code": "passport-police", "name": {"fa": "پلیس مهاجرت و گذرنامه", "en": "Immigration and Passport Police"}, "kind": "organisation", "parent": "police"},
    {"code": "vehicle-registry", "name": {"fa": "پلیس راهنمایی و رانندگی", "en": "Traffic Police (vehicle registry)"}, "kind": "organisation", "parent": "police"},
    {"code": "welfare", "name": {"fa": "وزارت تعاون، کار و رفاه اجتماعی", "en": "Ministry of Cooperatives, Labour and Social Welfare"}, "kind": "ministry"},
    {"code": "social-security", "name": {"fa": "سازمان تأمین اجتماعی", "en": "Social Security Organization"}, "kind": "organisation", "parent": "welfare"},
    {"code": "subsidy", "name": {"fa": "سازمان هدفمندسازی یارانه‌ها", "en": "Targeted Subsidies Organization"}, "kind": "organisation", "parent": "welfare"},
    {"code": "education", "name": {"fa": "وزارت علوم، تحقیقات و فناوری", "en": "Ministry of Science, Research and Technology"}, "kind": "ministry"},
    {"code": "student-welfare", "name": {"fa": "صندوق رفاه دانشجویان", "en": "Student Welfare Fund"}, "kind": "organisation", "parent": "education"},
    {"code": "judiciary", "name": {"fa": "قوه قضاییه", "en": "Judiciary"}, "kind": "judiciary"},
    {"code": "deeds-registry", "name": {"fa": "سازمان ثبت اسناد و املاک کشور", "en": "Deeds and Properties Registration Organization"}, "kind": "organisation", "parent": "judiciary"},
    {"code": "industry", "name": {"fa": "وزارت صنعت، معدن و تجارت", "en": "Ministry of Industry, Mine and Trade"}, "kind": "ministry"},
    {"code": "health", "name": {"fa": "وزارت بهداشت، درمان و آموزش پزشکی", "en": "Ministry of Health and Medical Education"}, "kind": "ministry"},
    {"code": "tehran-municipality", "name": {"fa": "شهرداری تهران", "en": "Tehran Municipality"}, "kind": "municipality", "spatial": "county"},
]  # fmt: skip

#: Which agency answers each inquiry type (the broker's registry holds the same).
INQUIRY_PROVIDERS = {
    "civil-registry.person": "civil-registry",
    "mobile-registry.ownership": "mobile-registry",
    "tax.clearance": "tax",
    "police.clean-record": "police",
    "social-security.insurance-record": "social-security",
    "vehicle-registry.ownership": "vehicle-registry",
    "education.degree": "education",
}
INQUIRY_PURPOSES = {
    "civil-registry.person": ("احراز هویت و زنده بودن متقاضی", "Identity and vital status"),
    "mobile-registry.ownership": ("مالکیت خط تلفن همراه", "Mobile line ownership"),
    "tax.clearance": ("وضعیت بدهی مالیاتی", "Tax debt status"),
    "police.clean-record": ("سابقه کیفری", "Criminal record"),
    "social-security.insurance-record": ("سابقه بیمه", "Insurance record"),
    "vehicle-registry.ownership": ("خودروهای به نام متقاضی", "Vehicles owned"),
    "education.degree": ("آخرین مدرک تحصیلی", "Highest degree"),
}

LEGAL = {
    "civil": ("قانون ثبت احوال (مصوب ۱۳۵۵)", "Civil Registration Act (1976)"),
    "passport": ("قانون گذرنامه (مصوب ۱۳۵۱)", "Passport Act (1972)"),
    "tax": ("قانون مالیات‌های مستقیم", "Direct Taxation Act"),
    "vat": ("قانون مالیات بر ارزش افزوده (مصوب ۱۴۰۰)", "Value Added Tax Act (2021)"),
    "insurance": ("قانون تأمین اجتماعی (مصوب ۱۳۵۴)", "Social Security Act (1975)"),
    "guild": ("قانون نظام صنفی کشور", "Guild System Act"),
    "subsidy": ("قانون هدفمند کردن یارانه‌ها (مصوب ۱۳۸۸)", "Targeted Subsidies Act (2010)"),
    "deeds": ("قانون ثبت اسناد و املاک", "Deeds and Properties Registration Act"),
    "municipality": ("قانون شهرداری‌ها", "Municipalities Act"),
    "traffic": ("قانون رسیدگی به تخلفات رانندگی (مصوب ۱۳۸۹)", "Traffic Offences Act (2010)"),
    "crime": ("قانون مجازات اسلامی و آیین‌نامه صدور گواهی عدم سوء پیشینه", "Islamic Penal Code and the clean-record certificate regulation"),
    "business": ("قانون تسهیل صدور مجوزهای کسب‌وکار (مصوب ۱۴۰۰)", "Business Licensing Facilitation Act (2021)"),
    "egov": ("قانون مدیریت خدمات کشوری، ماده ۲۸ (دولت الکترونیک)", "Civil Service Management Act, article 28"),
    "students": ("اساسنامه صندوق رفاه دانشجویان", "Student Welfare Fund statute"),
    "health": ("قانون تشکیل وزارت بهداشت، درمان و آموزش پزشکی", "Ministry of Health Act"),
    "telecom": ("قانون تشکیل سازمان تنظیم مقررات و ارتباطات رادیویی", "Communications Regulatory Authority Act"),
}  # fmt: skip


def _text(fa: str, en: str | None = None) -> dict[str, str]:
    return {"fa": fa, "en": en} if en else {"fa": fa}


def _rule(rule_id: str, when: str, outcome: str, fa: str, en: str) -> dict[str, Any]:
    return {"id": rule_id, "when": when, "outcome": outcome, "reason": _text(fa, en)}


def card(
    code: str,
    agency: str,
    title: tuple[str, str],
    description: str,
    *,
    category: str,
    life_events: list[str],
    maturity: int,
    legal: list[str],
    audience: tuple[str, ...] = ("citizen",),
    keywords: tuple[str, ...] = (),
    inquiries: tuple[str, ...] = (),
    rules: tuple[dict[str, Any], ...] = (),
    otherwise: str = "reject",
    documents: tuple[str, ...] = (),
    visits: int | None = None,
    fee: int | None = None,
    sla_days: int = 7,
    processing_time: str | None = None,
    output: tuple[str, str] | None = None,
    form: dict[str, Any] | None = None,
    trigger: str = "request",
    yearly_volume: int | None = None,
    steps: tuple[str, ...] = (),
) -> CardCreate:
    """A card with sensible defaults derived from its maturity level."""
    electronic = maturity >= 4
    visits = (0 if electronic else 1) if visits is None else visits
    channels: list[dict[str, Any]] = []
    if maturity >= 1:
        channels.append({"type": "web", "url": f"{PORTAL}{code}"})
    if maturity >= 3:
        channels.append({"type": "mobile", "description": _text("اپلیکیشن پنجره", "Panjereh app")})
    if visits:
        channels.append({"type": "counter", "description": _text("دفاتر پیشخوان خدمات دولت")})
    if not channels:
        channels.append({"type": "agency-office"})
    automatic = bool(rules)
    return CardCreate.model_validate(
        {
            "code": code,
            "agency": agency,
            "title": _text(*title),
            "description": _text(description),
            "category": category,
            "life_events": life_events,
            "audience": list(audience),
            "recipients": _text(
                "همه اتباع ایرانی" if "citizen" in audience else "اشخاص حقوقی و صاحبان کسب‌وکار"
            ),
            "trigger": trigger,
            "keywords": list(keywords),
            "legal_basis": [{"title": _text(*LEGAL[name])} for name in [*legal, "egov"]],
            "eligibility": _text("متقاضی باید شرایط مقرر در قوانین و مقررات مربوط را داشته باشد."),
            "channels": channels,
            "locations": (
                []
                if not visits
                else [
                    {
                        "name": _text(
                            "دفاتر پیشخوان خدمات دولت در سراسر کشور", "Government service counters"
                        ),
                        "url": "https://www.iranpishkhan.ir/",
                    }
                ]
            ),
            "fees": (
                []
                if fee is None
                else [
                    {
                        "title": _text("هزینه خدمت", "Service fee"),
                        "amount_rials": fee,
                        "bank_account": "IR000100000000000000000001",
                        "legal_basis": "قانون بودجه سالانه",
                    }
                ]
            ),
            "sla_days": sla_days,
            "processing_time": processing_time or f"P{max(sla_days, 1)}D",
            "service_hours": _text("۲۴ ساعته" if electronic else "شنبه تا چهارشنبه، ۸ تا ۱۴"),
            "frequency": None,
            "in_person_visits": visits,
            "electronic_stages": {
                "information": maturity >= 1,
                "application": maturity >= 3,
                "processing": maturity >= 4,
                "delivery": maturity >= 4,
            },
            "documents_required": [{"name": _text(name)} for name in documents],
            "inquiries": [
                {
                    "type": inquiry,
                    "provider_agency": INQUIRY_PROVIDERS[inquiry],
                    "purpose": _text(*INQUIRY_PURPOSES[inquiry]),
                    "data_items": [],
                    "mode": "online",
                }
                for inquiry in inquiries
            ],
            "maturity": maturity,
            "form_schema": form
            or {"type": "object", "properties": {}, "additionalProperties": False},
            "decision": {
                "mode": "automatic" if automatic else "agency",
                "rules": list(rules),
                "otherwise": otherwise if automatic else "agency",
            },
            "output": _text(*output) if output else None,
            "steps": [_text(step) for step in steps]
            or [
                _text("ورود به پنجره با کد ملی و رمز یک‌بارمصرف"),
                _text("تکمیل فرم درخواست"),
                _text("پیگیری با کد رهگیری"),
            ],
            "faq": [],
            "complaint_route": _text("سامانه سامد (۱۱۱) و سامانه شکایات دستگاه"),
            "yearly_volume": yearly_volume,
            "filled_by": {"name": "کارشناس فناوری اطلاعات", "unit": "دفتر تحول اداری"},
        }
    )


ALIVE = _rule(
    "deceased", 'inquiries["civil-registry.person"].alive == false', "reject",
    "متقاضی در ثبت احوال فوت‌شده ثبت شده است", "The applicant is registered as deceased",
)  # fmt: skip
MINOR = _rule(
    "minor", "!(" + ADULT + ")", "reject",
    "متقاضی کمتر از ۱۸ سال سن دارد", "The applicant is under 18",
)  # fmt: skip


def cards() -> list[CardCreate]:
    """The demo catalog: 45 cards, 12 of them smart (decided by rules over inquiries)."""
    return [
        # ------------------------------------------------------------ civil registry
        card("11010000001", "civil-registry", ("صدور المثنی شناسنامه", "Copy of birth certificate"),
             "صدور المثنای شناسنامه برای کسانی که شناسنامه خود را گم کرده‌اند یا شناسنامه آنان فرسوده شده است. اطلاعات هویتی از ثبت احوال استعلام می‌شود و نیازی به ارائه مدرک نیست.",
             category="identity-documents", life_events=["documents-and-certificates"], maturity=5, legal=["civil"],
             keywords=("شناسنامه", "المثنی", "مفقودی شناسنامه"), inquiries=("civil-registry.person",),
             rules=(ALIVE, _rule("alive", 'inquiries["civil-registry.person"].alive', "approve",
                                 "هویت متقاضی تأیید شد", "Identity confirmed")),
             fee=500_000, sla_days=3, output=("شناسنامه المثنی", "Duplicate birth certificate"), yearly_volume=1_200_000),
        card("11010000002", "civil-registry", ("ثبت ولادت و صدور شناسنامه نوزاد", "Birth registration"),
             "ثبت واقعه ولادت و صدور شناسنامه برای نوزاد با استفاده از گواهی ولادت الکترونیک بیمارستان.",
             category="identity-documents", life_events=["birth"], maturity=4, legal=["civil"],
             keywords=("ولادت", "نوزاد", "شناسنامه نوزاد"), inquiries=("civil-registry.person",),
             sla_days=5, output=("شناسنامه نوزاد", "Newborn's birth certificate"), trigger="life-event", yearly_volume=1_000_000),
        card("11010000003", "civil-registry", ("صدور کارت هوشمند ملی", "Smart national ID card issuance"),
             "ثبت‌نام و صدور کارت هوشمند ملی برای اتباع بالای ۱۵ سال. ثبت‌نام اینترنتی است و برای ثبت اثر انگشت و عکس یک بار مراجعه حضوری لازم است.",
             category="identity-documents", life_events=["documents-and-certificates"], maturity=3, legal=["civil"],
             keywords=("کارت ملی", "کارت هوشمند", "ملی"), inquiries=("civil-registry.person",), visits=1,
             documents=("اصل شناسنامه",), fee=3_000_000, sla_days=30, output=("کارت هوشمند ملی", "Smart national ID card"), yearly_volume=3_000_000),
        card("11010000004", "civil-registry", ("ثبت واقعه وفات", "Death registration"),
             "ثبت واقعه وفات و باطل کردن شناسنامه متوفی بر اساس گواهی فوت پزشک.",
             category="identity-documents", life_events=["death"], maturity=3, legal=["civil"],
             keywords=("وفات", "فوت", "گواهی فوت"), documents=("گواهی فوت پزشک",), visits=1, sla_days=2, trigger="life-event"),
        card("11010000005", "civil-registry", ("تغییر نام کوچک", "First-name change"),
             "درخواست تغییر نام کوچک در شناسنامه با رأی هیئت حل اختلاف ثبت احوال.",
             category="identity-documents", life_events=["documents-and-certificates"], maturity=2, legal=["civil"],
             keywords=("تغییر نام", "اصلاح شناسنامه"), documents=("اصل شناسنامه", "کارت ملی"), visits=2, sla_days=45, fee=1_000_000),
        card("11010000006", "civil-registry", ("گواهی تجرد", "Certificate of single status"),
             "صدور گواهی تجرد برای ارائه به سفارتخانه‌ها و مراجع قضایی، بدون مراجعه حضوری و با استعلام از ثبت احوال.",
             category="identity-documents", life_events=["marriage", "documents-and-certificates"], maturity=5, legal=["civil"],
             keywords=("تجرد", "ازدواج", "وضعیت تأهل"), inquiries=("civil-registry.person",),
             rules=(ALIVE, MINOR, _rule("adult-alive", 'inquiries["civil-registry.person"].alive && ' + ADULT, "approve",
                                        "متقاضی بزرگسال و در قید حیات است", "Adult applicant, alive")),
             fee=200_000, sla_days=1, output=("گواهی تجرد", "Certificate of single status")),
        # ------------------------------------------------------------ passports
        card("11020000001", "passport-police", ("صدور گذرنامه عادی", "Ordinary passport issuance"),
             "صدور گذرنامه عادی برای اولین بار. درخواست در دفاتر پلیس +۱۰ ثبت و گذرنامه با پست ارسال می‌شود.",
             category="travel", life_events=["documents-and-certificates"], maturity=3, legal=["passport"],
             keywords=("گذرنامه", "پاسپورت", "سفر خارجی"), inquiries=("civil-registry.person", "police.clean-record"),
             documents=("عکس رنگی",), visits=1, fee=12_000_000, sla_days=14, output=("گذرنامه", "Passport"), yearly_volume=2_500_000),
        card("11020000002", "passport-police", ("تمدید گذرنامه", "Passport renewal"),
             "تمدید گذرنامه عادی منقضی‌شده به‌صورت کاملاً الکترونیک. هویت، سابقه کیفری و وضعیت حیات با استعلام بررسی می‌شود.",
             category="travel", life_events=["documents-and-certificates"], maturity=5, legal=["passport"],
             keywords=("تمدید گذرنامه", "پاسپورت", "گذرنامه"), inquiries=("civil-registry.person", "police.clean-record"),
             rules=(ALIVE, _rule("criminal-record", 'inquiries["police.clean-record"].has_record', "reject",
                                 "متقاضی سابقه کیفری مؤثر دارد", "The applicant has a criminal record"),
                    _rule("clean", 'inquiries["police.clean-record"].has_record == false', "approve",
                          "شرایط تمدید احراز شد", "Renewal conditions met")),
             fee=12_000_000, sla_days=7, output=("گذرنامه تمدیدشده", "Renewed passport")),
        card("11020000003", "passport-police", ("اعلام مفقودی گذرنامه", "Report a lost passport"),
             "اعلام مفقودی یا سرقت گذرنامه و ابطال آن برای جلوگیری از سوءاستفاده.",
             category="travel", life_events=["documents-and-certificates"], maturity=4, legal=["passport"],
             keywords=("مفقودی گذرنامه", "گم شدن پاسپورت"), sla_days=1),
        # ------------------------------------------------------------ judiciary and police
        card("11030000001", "judiciary", ("گواهی عدم سوء پیشینه", "Criminal-record certificate"),
             "صدور گواهی عدم سوء پیشینه کیفری برای استخدام، اخذ مجوز و مهاجرت. سابقه کیفری از پلیس استعلام می‌شود و گواهی به‌صورت الکترونیک صادر می‌شود.",
             category="security-certificates", life_events=["documents-and-certificates"], maturity=5, legal=["crime"],
             keywords=("سوء پیشینه", "عدم سوء پیشینه", "سابقه کیفری", "گواهی"), inquiries=("civil-registry.person", "police.clean-record"),
             rules=(ALIVE, _rule("has-record", 'inquiries["police.clean-record"].has_record == true', "reject",
                                 "سابقه کیفری مؤثر ثبت شده است", "A criminal record is on file"),
                    _rule("no-record", 'inquiries["police.clean-record"].has_record == false', "approve",
                          "سابقه کیفری ثبت نشده است", "No criminal record on file")),
             fee=900_000, sla_days=1, output=("گواهی عدم سوء پیشینه", "Clean criminal-record certificate"), yearly_volume=4_000_000),
        card("11030000002", "judiciary", ("ثبت‌نام در سامانه ثنا", "Registration in the judiciary e-notice system (SANA)"),
             "دریافت حساب کاربری سامانه ثنا برای دریافت ابلاغیه‌های الکترونیک قضایی. برای احراز هویت یک بار مراجعه به دفاتر خدمات الکترونیک قضایی لازم است.",
             category="legal-services", life_events=["other"], maturity=3, legal=["crime"],
             keywords=("ثنا", "ابلاغیه", "دفاتر خدمات قضایی"), visits=1, documents=("کارت ملی",), fee=1_500_000, sla_days=1),
        card("11030000003", "police", ("اعلام مفقودی مدارک", "Report lost documents"),
             "ثبت اظهارنامه مفقودی مدارک هویتی و اسناد برای ارائه به دستگاه صادرکننده.",
             category="security-certificates", life_events=["documents-and-certificates"], maturity=4, legal=["crime"],
             keywords=("مفقودی", "گم شدن مدارک"), sla_days=1),
        # ------------------------------------------------------------ vehicles and driving
        card("11040000001", "vehicle-registry", ("نقل و انتقال مالکیت خودرو", "Vehicle ownership transfer"),
             "تعویض پلاک و انتقال مالکیت خودرو از فروشنده به خریدار در مراکز تعویض پلاک. حضور خریدار و فروشنده و خودرو لازم است.",
             category="vehicles-and-driving", life_events=["property-registration"], maturity=3, legal=["traffic"],
             keywords=("تعویض پلاک", "انتقال سند خودرو", "خرید خودرو"), inquiries=("vehicle-registry.ownership", "tax.clearance"),
             documents=("سند مالکیت خودرو", "کارت خودرو"), visits=1, fee=4_500_000, sla_days=10, yearly_volume=2_000_000),
        card("11040000002", "vehicle-registry", ("استعلام خلافی خودرو", "Vehicle traffic fines statement"),
             "دریافت صورت‌حساب جریمه‌های رانندگی خودروهای به نام متقاضی. مالکیت خودرو از پلیس راهور استعلام می‌شود.",
             category="vehicles-and-driving", life_events=["other"], maturity=5, legal=["traffic"],
             keywords=("خلافی", "جریمه رانندگی", "قبض جریمه"), inquiries=("vehicle-registry.ownership",),
             rules=(_rule("owns-vehicle", 'size(inquiries["vehicle-registry.ownership"].vehicles) > 0', "approve",
                          "خودرو به نام متقاضی ثبت است", "The applicant owns a vehicle"),),
             sla_days=0, processing_time="PT1M", output=("صورت‌حساب خلافی", "Fines statement")),
        card("11040000003", "vehicle-registry", ("صدور گواهینامه رانندگی پایه سوم", "Driving licence issuance (class 3)"),
             "صدور گواهینامه رانندگی پایه سوم پس از گذراندن دوره آموزشی و آزمون آیین‌نامه و شهری.",
             category="vehicles-and-driving", life_events=["documents-and-certificates"], maturity=2, legal=["traffic"],
             keywords=("گواهینامه", "آزمون رانندگی", "آموزشگاه رانندگی"), documents=("گواهی سلامت", "گواهی پایان دوره آموزش"),
             visits=3, fee=2_500_000, sla_days=60),
        card("11040000004", "vehicle-registry", ("تمدید گواهینامه رانندگی", "Driving licence renewal"),
             "تمدید گواهینامه رانندگی منقضی‌شده با ارائه گواهی سلامت الکترونیک و ارسال گواهینامه جدید با پست.",
             category="vehicles-and-driving", life_events=["documents-and-certificates"], maturity=4, legal=["traffic"],
             keywords=("تمدید گواهینامه", "گواهینامه"), documents=("گواهی سلامت",), fee=1_500_000, sla_days=10),
        # ------------------------------------------------------------ tax
        card("11050000001", "tax", ("گواهی مفاصاحساب مالیاتی", "Tax clearance certificate"),
             "صدور گواهی مفاصاحساب مالیاتی (ماده ۱۸۶ قانون مالیات‌های مستقیم) برای نقل و انتقال اموال و اخذ مجوز. بدهی مالیاتی با استعلام بررسی می‌شود.",
             category="taxes", life_events=["taxes", "property-registration"], maturity=5, legal=["tax"],
             audience=("citizen", "business"), keywords=("مفاصا حساب", "بدهی مالیاتی", "ماده ۱۸۶"), inquiries=("tax.clearance",),
             rules=(_rule("has-debt", 'inquiries["tax.clearance"].has_debt', "reject",
                          "متقاضی بدهی مالیاتی قطعی دارد", "The applicant has tax debt"),
                    _rule("no-debt", '!inquiries["tax.clearance"].has_debt', "approve",
                          "بدهی مالیاتی ندارد", "No tax debt")),
             sla_days=1, output=("گواهی مفاصاحساب", "Tax clearance certificate"), yearly_volume=900_000),
        card("11050000002", "tax", ("ثبت‌نام در نظام مالیاتی", "Tax registration"),
             "ثبت‌نام و تشکیل پرونده مالیاتی الکترونیک برای صاحبان مشاغل و اشخاص حقوقی.",
             category="taxes", life_events=["taxes", "business"], maturity=4, legal=["tax"], audience=("citizen", "business"),
             keywords=("پرونده مالیاتی", "کد اقتصادی", "ثبت‌نام مالیاتی"), sla_days=3),
        card("11050000003", "tax", ("ارسال اظهارنامه مالیاتی اشخاص حقیقی", "Individual income tax return"),
             "تکمیل و ارسال اظهارنامه مالیات بر درآمد مشاغل تا پایان خرداد هر سال.",
             category="taxes", life_events=["taxes"], maturity=4, legal=["tax"], audience=("citizen", "business"),
             keywords=("اظهارنامه", "مالیات مشاغل"), sla_days=0, trigger="date"),
        card("11050000004", "tax", ("استرداد مالیات بر ارزش افزوده", "VAT refund"),
             "درخواست استرداد اضافه پرداختی مالیات بر ارزش افزوده برای صادرکنندگان و تولیدکنندگان.",
             category="taxes", life_events=["taxes", "business"], maturity=3, legal=["vat"], audience=("business",),
             keywords=("ارزش افزوده", "استرداد"), documents=("صورت‌حساب‌های خرید",), visits=1, sla_days=30),
        # ------------------------------------------------------------ social security
        card("11060000001", "social-security", ("گواهی سابقه بیمه", "Insurance record certificate"),
             "صدور گواهی سوابق پرداخت حق بیمه برای ارائه به کارفرما، بانک و سفارتخانه. سوابق از تأمین اجتماعی استعلام می‌شود.",
             category="insurance-and-pensions", life_events=["insurance", "social-security"], maturity=5, legal=["insurance"],
             keywords=("سابقه بیمه", "تأمین اجتماعی", "سوابق بیمه‌ای"), inquiries=("social-security.insurance-record",),
             rules=(_rule("insured", 'inquiries["social-security.insurance-record"].insured', "approve",
                          "سابقه بیمه وجود دارد", "Insurance record found"),),
             sla_days=0, processing_time="PT5M", output=("گواهی سابقه بیمه", "Insurance record certificate"), yearly_volume=3_500_000),
        card("11060000002", "social-security", ("درخواست مستمری بازنشستگی", "Retirement pension application"),
             "درخواست برقراری مستمری بازنشستگی برای بیمه‌شدگانی که شرایط سنی و سابقه پرداخت حق بیمه را دارند.",
             category="insurance-and-pensions", life_events=["retirement"], maturity=3, legal=["insurance"],
             keywords=("بازنشستگی", "مستمری", "حقوق بازنشستگی"), inquiries=("social-security.insurance-record", "civil-registry.person"),
             documents=("حکم آخرین شغل",), visits=1, sla_days=30),
        card("11060000003", "social-security", ("مقرری بیمه بیکاری", "Unemployment benefit"),
             "درخواست مقرری بیمه بیکاری برای بیمه‌شدگانی که بدون میل و اراده خود بیکار شده‌اند.",
             category="insurance-and-pensions", life_events=["social-security"], maturity=2, legal=["insurance"],
             keywords=("بیمه بیکاری", "بیکاری"), documents=("گواهی ترک کار",), visits=1, sla_days=30),
        card("11060000004", "social-security", ("ثبت‌نام بیمه اختیاری", "Voluntary insurance enrolment"),
             "ثبت‌نام در بیمه اختیاری برای افرادی که کارفرما ندارند.",
             category="insurance-and-pensions", life_events=["insurance"], maturity=4, legal=["insurance"],
             keywords=("بیمه اختیاری", "بیمه خویش‌فرما"), inquiries=("social-security.insurance-record",), sla_days=10),
        card("11060000005", "social-security", ("غرامت دستمزد ایام بیماری", "Sick-leave wage compensation"),
             "پرداخت غرامت دستمزد ایام بیماری بر اساس گواهی استراحت پزشک معالج.",
             category="insurance-and-pensions", life_events=["health", "insurance"], maturity=3, legal=["insurance"],
             keywords=("استعلاجی", "غرامت دستمزد"), documents=("گواهی استراحت پزشک",), visits=1, sla_days=15),
        # ------------------------------------------------------------ education and students
        card("11070000001", "education", ("تأیید مدرک تحصیلی", "Degree verification"),
             "تأیید اصالت مدرک تحصیلی دانشگاهی برای استخدام یا ادامه تحصیل، با استعلام از سامانه مدارک وزارت علوم.",
             category="education", life_events=["education", "documents-and-certificates"], maturity=5, legal=["egov"],
             keywords=("مدرک تحصیلی", "تأییدیه تحصیلی", "دانشنامه"), inquiries=("education.degree",),
             rules=(_rule("no-degree", 'inquiries["education.degree"].degree == "none"', "reject",
                          "مدرک دانشگاهی ثبت نشده است", "No university degree on record"),
                    _rule("degree", 'inquiries["education.degree"].degree in ["associate", "bachelor", "master", "doctorate"]', "approve",
                          "مدرک دانشگاهی تأیید شد", "University degree confirmed")),
             sla_days=1, output=("تأییدیه مدرک تحصیلی", "Degree verification letter")),
        card("11070000002", "education", ("ارزشیابی مدارک تحصیلی خارج از کشور", "Foreign degree evaluation"),
             "ارزشیابی و تعیین معادل مدارک تحصیلی دانش‌آموختگان دانشگاه‌های خارج از کشور.",
             category="education", life_events=["education"], maturity=2, legal=["egov"],
             keywords=("ارزشیابی مدرک", "مدرک خارجی"), documents=("اصل دانشنامه", "ریز نمرات", "گذرنامه"), visits=1, sla_days=90),
        card("11080000001", "student-welfare", ("وام شهریه دانشجویی", "Student tuition loan"),
             "پرداخت وام شهریه به دانشجویان دوره‌های شبانه و غیرانتفاعی. متقاضی باید بزرگسال و در قید حیات باشد و در ۱۲ نیمسال اول تحصیل باشد.",
             category="education", life_events=["education"], maturity=5, legal=["students"],
             keywords=("وام دانشجویی", "شهریه", "صندوق رفاه"), inquiries=("civil-registry.person", "education.degree"),
             form={"type": "object",
                   "properties": {"student_number": {"type": "string", "minLength": 5, "maxLength": 20,
                                                     "title": "شماره دانشجویی",
                                                     "description": "شماره دانشجویی را همان‌گونه که روی کارت دانشجویی آمده است بنویسید."},
                                  "semester": {"type": "integer", "minimum": 1, "maximum": 20,
                                               "title": "نیمسال تحصیلی",
                                               "description": "شماره نیمسالی که در آن تحصیل می‌کنید، مثلاً ۳ برای نیمسال سوم. وام تا نیمسال دوازدهم پرداخت می‌شود."},
                                  "amount_rials": {"type": "integer", "minimum": 1000000, "maximum": 500000000,
                                                   "title": "مبلغ درخواستی وام (ریال)",
                                                   "description": "مبلغ وام به ریال؛ درخواست تا ۳۰۰٬۰۰۰٬۰۰۰ ریال پذیرفته می‌شود."}},
                   "required": ["student_number", "semester", "amount_rials"],
                   "x-order": ["student_number", "semester", "amount_rials"], "additionalProperties": False},
             rules=(ALIVE, MINOR, _rule("too-many-semesters", "inputs.semester > 12", "reject",
                                        "وام شهریه تا نیمسال دوازدهم پرداخت می‌شود", "Loans are paid up to the 12th semester"),
                    _rule("eligible", "inputs.semester <= 12 && inputs.amount_rials <= 300000000", "approve",
                          "شرایط وام احراز شد", "Loan conditions met")),
             sla_days=15, output=("قرارداد وام", "Loan agreement")),
        card("11080000002", "student-welfare", ("وام ودیعه مسکن دانشجویان متأهل", "Housing deposit loan for married students"),
             "پرداخت وام ودیعه مسکن به دانشجویان متأهل ساکن در شهرهای دیگر.",
             category="education", life_events=["education", "marriage"], maturity=3, legal=["students"],
             keywords=("ودیعه مسکن", "دانشجوی متأهل"), documents=("اجاره‌نامه",), visits=1, sla_days=30),
        # ------------------------------------------------------------ deeds and property
        card("11090000001", "deeds-registry", ("صدور سند مالکیت تک‌برگی", "Single-page property deed"),
             "صدور سند مالکیت تک‌برگ کاداستری به جای اسناد دفترچه‌ای قدیمی.",
             category="property-and-construction", life_events=["property-registration"], maturity=3, legal=["deeds"],
             keywords=("سند تک برگ", "سند مالکیت", "کاداستر"), documents=("سند دفترچه‌ای",), visits=1, fee=2_000_000, sla_days=30),
        card("11090000002", "deeds-registry", ("استعلام وضعیت ثبتی ملک", "Property registration status"),
             "استعلام وضعیت ثبتی، بازداشت و رهن ملک برای معاملات.",
             category="property-and-construction", life_events=["property-registration"], maturity=4, legal=["deeds"],
             keywords=("استعلام ملک", "رهن", "بازداشت ملک"), sla_days=1),
        card("11090000003", "deeds-registry", ("ثبت شرکت", "Company registration"),
             "ثبت شرکت‌های سهامی خاص و با مسئولیت محدود در سامانه ثبت شرکت‌ها.",
             category="business-and-trade", life_events=["business"], maturity=4, legal=["deeds"], audience=("business",),
             keywords=("ثبت شرکت", "شرکت سهامی خاص", "مسئولیت محدود"), documents=("اساسنامه",), fee=3_000_000, sla_days=7),
        # ------------------------------------------------------------ business
        card("11100000001", "industry", ("صدور پروانه کسب", "Business licence"),
             "صدور پروانه کسب برای واحدهای صنفی از طریق درگاه ملی مجوزها. سابقه کیفری، بدهی مالیاتی و هویت متقاضی با استعلام بررسی می‌شود.",
             category="business-and-trade", life_events=["business"], maturity=5, legal=["guild", "business"],
             audience=("citizen", "business"), keywords=("پروانه کسب", "مجوز کسب", "اتحادیه صنفی", "درگاه ملی مجوزها"),
             inquiries=("civil-registry.person", "police.clean-record", "tax.clearance"),
             rules=(ALIVE, MINOR,
                    _rule("criminal-record", 'inquiries["police.clean-record"].has_record', "reject",
                          "متقاضی سابقه کیفری مؤثر دارد", "The applicant has a criminal record"),
                    _rule("tax-debt", 'inquiries["tax.clearance"].has_debt', "reject",
                          "متقاضی بدهی مالیاتی دارد", "The applicant has tax debt"),
                    _rule("eligible", "true", "approve", "همه شرایط احراز شد", "All conditions met")),
             fee=1_000_000, sla_days=3, output=("پروانه کسب", "Business licence"), yearly_volume=600_000),
        card("11100000002", "industry", ("تمدید پروانه کسب", "Business licence renewal"),
             "تمدید پروانه کسب واحدهای صنفی پیش از پایان اعتبار.",
             category="business-and-trade", life_events=["business"], maturity=4, legal=["guild"], audience=("business",),
             keywords=("تمدید پروانه", "پروانه کسب"), sla_days=5, trigger="date"),
        card("11100000003", "industry", ("صدور کارت بازرگانی", "Commercial (trade) card"),
             "صدور کارت بازرگانی برای اشخاص حقیقی و حقوقی فعال در صادرات و واردات.",
             category="business-and-trade", life_events=["business"], maturity=3, legal=["business"], audience=("business",),
             keywords=("کارت بازرگانی", "واردات", "صادرات"), documents=("گواهی محل کسب",), visits=1, fee=5_000_000, sla_days=20),
        # ------------------------------------------------------------ municipality
        card("11110000001", "tehran-municipality", ("صدور پروانه ساختمان", "Building permit"),
             "صدور پروانه ساختمانی برای احداث، توسعه یا تخریب و نوسازی بنا در محدوده شهر تهران.",
             category="property-and-construction", life_events=["property-registration", "utilities"], maturity=2, legal=["municipality"],
             keywords=("پروانه ساختمان", "جواز ساخت", "نوسازی"), documents=("سند مالکیت", "نقشه‌های معماری"), visits=2, sla_days=60),
        card("11110000002", "tehran-municipality", ("پرداخت عوارض نوسازی", "Property renewal levy payment"),
             "محاسبه و پرداخت اینترنتی عوارض سالانه نوسازی املاک شهر تهران.",
             category="property-and-construction", life_events=["property-registration", "taxes"], maturity=4, legal=["municipality"],
             keywords=("عوارض نوسازی", "عوارض شهرداری"), sla_days=0, trigger="date"),
        card("11110000003", "tehran-municipality", ("صدور گواهی پایان کار ساختمان", "Building completion certificate"),
             "صدور گواهی پایان کار پس از بازدید مهندس ناظر و تطبیق بنا با پروانه.",
             category="property-and-construction", life_events=["property-registration"], maturity=1, legal=["municipality"],
             keywords=("پایان کار", "گواهی پایان کار"), documents=("گزارش مهندس ناظر", "پروانه ساختمان"), visits=2, sla_days=30),
        # ------------------------------------------------------------ subsidies and welfare
        card("11120000001", "subsidy", ("ثبت‌نام یارانه", "Subsidy registration"),
             "ثبت‌نام سرپرست خانوار برای دریافت یارانه نقدی. هویت و وضعیت حیات از ثبت احوال استعلام می‌شود.",
             category="social-support", life_events=["social-security"], maturity=5, legal=["subsidy"],
             keywords=("یارانه", "یارانه نقدی", "سرپرست خانوار"), inquiries=("civil-registry.person",),
             rules=(ALIVE, MINOR, _rule("eligible", 'inquiries["civil-registry.person"].alive', "approve",
                                        "سرپرست خانوار واجد شرایط است", "Eligible head of household")),
             sla_days=1, yearly_volume=5_000_000),
        card("11120000002", "subsidy", ("اعتراض به حذف یارانه", "Appeal against subsidy removal"),
             "ثبت اعتراض سرپرستان خانواری که یارانه آنان قطع شده است و بررسی در کارگروه.",
             category="social-support", life_events=["social-security"], maturity=3, legal=["subsidy"],
             keywords=("اعتراض یارانه", "حذف یارانه"), sla_days=30),
        # ------------------------------------------------------------ telecoms
        card("11130000001", "mobile-registry", ("استعلام مالکیت خط تلفن همراه", "Mobile line ownership check"),
             "بررسی این‌که یک خط تلفن همراه به نام متقاضی ثبت شده است، از طریق سامانه شاهکار.",
             category="telecommunications", life_events=["other"], maturity=5, legal=["telecom"],
             keywords=("سیم کارت", "شاهکار", "خط تلفن همراه"), inquiries=("mobile-registry.ownership",),
             form={"type": "object",
                   "properties": {"mobile": {"type": "string", "pattern": "^09[0-9]{9}$",
                                             "title": "شماره تلفن همراه",
                                             "description": "شماره ۱۱ رقمی خطی که می‌خواهید مالکیت آن بررسی شود، مانند ۰۹۱۲۳۴۵۶۷۸۹."}},
                   "required": ["mobile"], "x-order": ["mobile"], "additionalProperties": False},
             rules=(_rule("owned", 'inquiries["mobile-registry.ownership"].owned', "approve",
                          "خط به نام متقاضی است", "The line is registered to the applicant"),),
             sla_days=0, processing_time="PT1M"),
        card("11130000002", "mobile-registry", ("شکایت از اپراتور تلفن همراه", "Complaint against a mobile operator"),
             "ثبت شکایت از کیفیت خدمات یا صورت‌حساب اپراتورهای تلفن همراه.",
             category="telecommunications", life_events=["other"], maturity=2, legal=["telecom"],
             keywords=("شکایت", "اپراتور", "همراه اول", "ایرانسل"), visits=0, sla_days=15),
        # ------------------------------------------------------------ health
        card("11140000001", "health", ("صدور کارت بهداشت", "Health card for food handlers"),
             "صدور کارت بهداشت برای شاغلان مراکز تهیه و توزیع مواد غذایی پس از معاینه و آزمایش.",
             category="health", life_events=["health", "business"], maturity=2, legal=["health"],
             keywords=("کارت بهداشت", "کارت سلامت"), documents=("جواب آزمایش",), visits=2, fee=600_000, sla_days=7),
        card("11140000002", "health", ("ثبت‌نام پزشک خانواده", "Family physician registration"),
             "انتخاب و ثبت‌نام پزشک خانواده برای اعضای خانوار در سامانه سلامت.",
             category="health", life_events=["health"], maturity=4, legal=["health"],
             keywords=("پزشک خانواده", "سامانه سلامت"), inquiries=("civil-registry.person",), sla_days=3),
        # ------------------------------------------------------------ interior
        card("11160000001", "interior", ("اطلاع‌رسانی شرایط ازدواج با اتباع خارجی", "Information: marrying a foreign national"),
             "آگاهی از شرایط و مدارک لازم برای ازدواج اتباع ایرانی با اتباع خارجی و صدور پروانه زناشویی.",
             category="legal-services", life_events=["marriage"], maturity=0, legal=["civil"],
             keywords=("ازدواج با اتباع", "پروانه زناشویی"), visits=1, sla_days=0),
    ]  # fmt: skip
