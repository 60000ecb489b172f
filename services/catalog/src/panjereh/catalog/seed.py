"""``python -m panjereh.catalog.seed [--synthetic N]``: load the demo catalog.

Agencies and cards go through the same use cases as the API (create → submit → approve), so
seeded cards are validated, versioned, searchable and announced like any other. Re-running is
a no-op for what already exists. ``--synthetic N`` adds N generated cards (for benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.categories import CATEGORIES
from panjereh.catalog.config import Settings
from panjereh.catalog.repository import AgencyRepository, CardRepository
from panjereh.catalog.schemas import AgencyCreate, CardCreate
from panjereh.catalog.seed_data import AGENCIES, INQUIRY_PROVIDERS, card, cards
from panjereh.catalog.service import agencies, workflow
from panjereh.common.auth import Principal
from panjereh.common.db import Database
from panjereh.common.logging import configure_logging
from panjereh.contracts import access

logger = logging.getLogger("panjereh.catalog.seed")

SEED_SUBJECT = "system:catalog-seed"
SEED_AUTHORITY_SUBJECT = "system:catalog-seed-authority"


def seed_actor(agency_codes: Sequence[str]) -> Principal:
    """The seed's author: every agency's admin (it drafts and submits the demo cards)."""
    roles = {access.agency_role(access.AGENCY_ADMIN, code) for code in agency_codes}
    return Principal(SEED_SUBJECT, frozenset(roles))


def seed_authority() -> Principal:
    """The seed's approver: the catalog authority, another hand than the author (four eyes)."""
    return Principal(SEED_AUTHORITY_SUBJECT, frozenset({access.CATALOG_AUTHORITY}))


@dataclass
class SeedReport:
    agencies_added: int = 0
    cards_added: int = 0


async def seed_agencies(session: AsyncSession, report: SeedReport) -> None:
    repository = AgencyRepository(session)
    for entry in AGENCIES:  # parents are listed before their children
        agency = AgencyCreate.model_validate(entry)
        if await repository.get(agency.code) is None:
            await agencies.register_agency(
                session, agency=agency, connected_within=timedelta(days=1)
            )
            report.agencies_added += 1


async def publish_cards(
    session: AsyncSession,
    new_cards: Sequence[CardCreate],
    *,
    approving_organisation: str,
    report: SeedReport,
) -> None:
    actor = seed_actor(sorted({c.agency for c in new_cards}))
    authority = seed_authority()
    cards_repository = CardRepository(session)
    for new in new_cards:
        if await cards_repository.by_code(new.code) is not None:
            continue
        await workflow.create_card(session, actor=actor, card=new)
        await workflow.submit_draft(session, actor=actor, code=new.code)
        await workflow.approve_draft(
            session,
            actor=authority,
            code=new.code,
            approving_organisation=approving_organisation,
        )
        report.cards_added += 1


async def seed(
    database: Database,
    *,
    approving_organisation: str,
    synthetic: int = 0,
    batch_size: int = 250,
) -> SeedReport:
    report = SeedReport()
    async with database.transaction() as session:
        await seed_agencies(session, report)
        await publish_cards(
            session,
            cards(),
            approving_organisation=approving_organisation,
            report=report,
        )
    generated = list(synthetic_cards(synthetic))
    for start in range(0, len(generated), batch_size):
        async with database.transaction() as session:
            await publish_cards(
                session,
                generated[start : start + batch_size],
                approving_organisation=approving_organisation,
                report=report,
            )
    return report


# --------------------------------------------------------------------------- synthetic
_ACTIONS = (
    ("صدور", "issuance"), ("تمدید", "renewal"), ("ثبت", "registration"),
    ("استعلام", "inquiry"), ("ابطال", "cancellation"), ("اصلاح", "correction"),
    ("درخواست", "application"), ("پرداخت", "payment"), ("انتقال", "transfer"),
)  # fmt: skip
_OBJECTS = (
    ("گواهی", "certificate"), ("پروانه", "licence"), ("مجوز", "permit"), ("کارت", "card"),
    ("سند", "deed"), ("وام", "loan"), ("بیمه‌نامه", "insurance policy"), ("یارانه", "subsidy"),
    ("پرونده", "file"), ("مستمری", "pension"), ("قرارداد", "contract"), ("گذرنامه", "passport"),
)  # fmt: skip
_QUALIFIERS = (
    ("اشخاص حقیقی", "for individuals"), ("واحدهای صنفی", "for guild units"),
    ("شرکت‌های دانش‌بنیان", "for knowledge-based companies"), ("روستاییان", "for villagers"),
    ("بازنشستگان", "for retirees"), ("دانشجویان", "for students"), ("رانندگان", "for drivers"),
    ("کشاورزان", "for farmers"), ("صادرکنندگان", "for exporters"), ("ایثارگران", "for veterans"),
)  # fmt: skip
_CATEGORIES = tuple(CATEGORIES)  # the named ones only
_LIFE_EVENTS = (
    "birth", "education", "health", "taxes", "business", "social-security",
    "property-registration", "utilities", "insurance", "marriage", "retirement",
    "documents-and-certificates", "death", "other",
)  # fmt: skip


def synthetic_cards(count: int, *, seed: int = 1405) -> Iterator[CardCreate]:
    """``count`` varied, valid cards with codes ``9xxxxxxxxxx`` (deterministic for a seed)."""
    chance = random.Random(seed)  # noqa: S311 - synthetic data, not security
    agencies = [entry["code"] for entry in AGENCIES]
    for index in range(count):
        action, thing, who = (
            chance.choice(options) for options in (_ACTIONS, _OBJECTS, _QUALIFIERS)
        )
        maturity = chance.choices(range(6), weights=(2, 3, 6, 8, 6, 4))[0]
        inquiry = chance.choice(sorted(INQUIRY_PROVIDERS))
        smart = maturity == 5
        yield card(
            f"9{index:010d}",
            chance.choice(agencies),
            (
                f"{action[0]} {thing[0]} {who[0]} {index % 97 + 1}",
                f"{thing[1]} {action[1]} {who[1]}",
            ),
            f"خدمت {action[0]} {thing[0]} ویژه {who[0]}؛ متقاضی پس از ثبت درخواست در پنجره، "
            f"نتیجه را با کد رهگیری پیگیری می‌کند. مدت رسیدگی حداکثر {index % 30 + 1} روز است.",
            category=chance.choice(_CATEGORIES),
            life_events=chance.sample(_LIFE_EVENTS, k=chance.randint(1, 2)),
            maturity=maturity,
            legal=["egov"] if index % 2 else ["business"],
            audience=chance.choice((("citizen",), ("business",), ("citizen", "business"))),
            keywords=(thing[0], who[0]),
            inquiries=(inquiry,) if smart or chance.random() < 0.3 else (),
            rules=(
                (
                    {
                        "id": "exists",
                        "when": f'"{inquiry}" in inquiries',
                        "outcome": "approve",
                        "reason": {"fa": "استعلام پاسخ داد"},
                    },
                )
                if smart
                else ()
            ),
            documents=() if smart or maturity >= 4 else ("کارت ملی",),
            sla_days=index % 30,
        )


# --------------------------------------------------------------------------- entry point
async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panjereh.catalog.seed")
    parser.add_argument("--synthetic", type=int, default=0, help="also add N generated cards")
    args = parser.parse_args(argv)
    settings = Settings()
    database = Database(settings.database_url, pool_size=2)
    started = time.monotonic()
    try:
        report = await seed(
            database,
            approving_organisation=settings.approving_organisation,
            synthetic=args.synthetic,
        )
    finally:
        await database.dispose()
    logger.info(
        "catalog seeded",
        extra={
            "agencies_added": report.agencies_added,
            "cards_added": report.cards_added,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    return 0


if __name__ == "__main__":
    configure_logging("catalog-seed", Settings().log_level)
    raise SystemExit(asyncio.run(main()))
