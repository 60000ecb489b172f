"""Persian-aware search, facets, paging and live statistics over the seeded catalog."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.schemas import CardCreate, SearchFilters, SearchResults
from panjereh.catalog.seed_data import AGENCIES, cards
from panjereh.catalog.service import agencies, search, stats, workflow
from panjereh.common.auth import Principal
from panjereh.common.pagination import Paging

pytestmark = pytest.mark.integration

SEED = cards()


ADMIN = Principal("admin", frozenset({"agency-admin:tax", "catalog-authority"}))
#: four eyes: another person approves what ADMIN drafted
AUTHORITY = Principal("authority", frozenset({"catalog-authority"}))
BROKER = Principal("inquiry-broker", frozenset({"service:inquiry-broker"}))


async def find(session: AsyncSession, q: str | None = None, **filters: Any) -> SearchResults:
    paging = Paging(filters.pop("page", 1), filters.pop("page_size", 100))
    return await search.search_services(
        session, q=q, filters=SearchFilters(**filters), paging=paging
    )


def codes(results: SearchResults) -> list[str]:
    return [item.code for item in results.items]


async def publish(session: AsyncSession, code: str, **changes: Any) -> None:
    base = next(c for c in SEED if c.code == "11050000002")  # tax registration, maturity 4
    data = base.model_dump(mode="json") | {"code": code, "keywords": []} | changes
    await workflow.create_card(session, actor=ADMIN, card=CardCreate.model_validate(data))
    await workflow.submit_draft(session, actor=ADMIN, code=code)
    await workflow.approve_draft(session, actor=AUTHORITY, code=code, approving_organisation="t")


class TestPersianSearch:
    async def test_arabic_letters_find_persian_ones(self, session: AsyncSession) -> None:
        found = await find(session, "كارت ملي")  # Arabic kaf and yeh
        assert codes(found)[0] == "11010000003"  # صدور کارت هوشمند ملی
        assert found.match == "fulltext"

    async def test_persian_digits_find_ascii_digits_and_back(self, session: AsyncSession) -> None:
        await publish(session, "77100000001", title={"fa": "خدمت آزمایشی ماده 12 قانون"})
        await publish(session, "77100000002", title={"fa": "خدمت آزمایشی بند ۴۷ قانون"})
        assert "77100000001" in codes(await find(session, "ماده ۱۲"))
        assert "77100000002" in codes(await find(session, "بند 47"))
        assert "77100000002" in codes(await find(session, "بند ٤٧"))  # Arabic-Indic

    @pytest.mark.parametrize("query", ["میخواهم", "می\u200cخواهم", "می خواهم"])
    async def test_zwnj_present_or_absent_matches(self, session: AsyncSession, query: str) -> None:
        await publish(
            session,
            "77100000003",
            description={"fa": "من می\u200cخواهم پروانه زنبورداری بگیرم"},
        )
        await publish(session, "77100000004", description={"fa": "میخواهم مجوز ماهیگیری بگیرم"})
        found = set(codes(await find(session, query)))
        assert {"77100000003", "77100000004"} <= found

    async def test_diacritics_and_tatweel_do_not_matter(self, session: AsyncSession) -> None:
        assert "11020000002" in codes(await find(session, "تـمدید گُذَرنامه"))

    async def test_a_misspelt_word_falls_back_to_trigrams(self, session: AsyncSession) -> None:
        found = await find(session, "گذرنمه")  # گذرنامه without its alef
        assert found.match == "fuzzy"
        assert {"11020000001", "11020000002"} <= set(codes(found)[:4])

    async def test_title_outranks_keywords_outranks_description(
        self, session: AsyncSession
    ) -> None:
        await publish(session, "77100000005", description={"fa": "درباره زعفران و صادرات"})
        await publish(session, "77100000006", keywords=["زعفران"])
        await publish(session, "77100000007", title={"fa": "مجوز صادرات زعفران"})
        assert codes(await find(session, "زعفران")) == [
            "77100000007",
            "77100000006",
            "77100000005",
        ]

    async def test_english_titles_are_searchable(self, session: AsyncSession) -> None:
        assert codes(await find(session, "Passport renewal"))[0] == "11020000002"

    async def test_a_service_code_finds_its_card(self, session: AsyncSession) -> None:
        assert codes(await find(session, "۱۱۰۳۰۰۰۰۰۰۱")) == ["11030000001"]

    async def test_nothing_like_it_finds_nothing(self, session: AsyncSession) -> None:
        found = await find(session, "قطب شمال پنگوئن")
        assert (found.total, found.items) == (0, [])


class TestFacetsAndPaging:
    async def test_facet_counts_match_a_hand_count_of_the_seed(self, session: AsyncSession) -> None:
        found = await find(session)
        facets = found.facets
        assert found.total == len(SEED)
        assert {f.value: f.count for f in facets.agency} == Counter(c.agency for c in SEED)
        assert {f.value: f.count for f in facets.maturity} == Counter(
            str(int(c.maturity)) for c in SEED
        )
        assert {f.value: f.count for f in facets.life_event} == Counter(
            str(e) for c in SEED for e in c.life_events
        )
        assert {f.value: f.count for f in facets.channel} == Counter(
            str(t) for c in SEED for t in {ch.type for ch in c.channels}
        )
        assert {f.value: f.count for f in facets.audience} == Counter(
            str(a) for c in SEED for a in c.audience
        )
        assert {f.value: f.count for f in facets.category} == Counter(c.category for c in SEED)

    async def test_facets_follow_the_query_and_filters(self, session: AsyncSession) -> None:
        found = await find(session, "گواهی", maturity=5)
        expected = [c for c in SEED if c.maturity == 5 and "گواهی" in c.title.fa]
        assert sorted(codes(found)) == sorted(c.code for c in expected)
        assert {f.value: f.count for f in found.facets.agency} == Counter(
            c.agency for c in expected
        )

    @pytest.mark.parametrize(
        ("name", "value", "matches"),
        [
            ("agency", "tax", lambda c: c.agency == "tax"),
            ("life_event", "marriage", lambda c: "marriage" in c.life_events),
            ("channel", "counter", lambda c: any(ch.type == "counter" for ch in c.channels)),
            ("audience", "business", lambda c: "business" in c.audience),
            ("category", "travel", lambda c: c.category == "travel"),
            ("maturity", 0, lambda c: c.maturity == 0),
        ],
    )
    async def test_each_filter(
        self, session: AsyncSession, name: str, value: Any, matches: Any
    ) -> None:
        found = await find(session, **{name: value})
        assert sorted(codes(found)) == sorted(c.code for c in SEED if matches(c))

    async def test_pages_walk_the_results_once(self, session: AsyncSession) -> None:
        pages = [await find(session, page=n, page_size=20) for n in (1, 2, 3, 4)]
        seen = [code for page in pages for code in codes(page)]
        assert len(seen) == len(set(seen)) == len(SEED)
        assert [len(p.items) for p in pages] == [20, 20, 5, 0]
        assert {p.total for p in pages} == {len(SEED)}


class TestStats:
    async def test_stats_match_a_hand_count_of_the_seed(self, session: AsyncSession) -> None:
        kpis = await stats.compute_stats(session, connected_within=timedelta(days=1))
        total = len(SEED)
        assert kpis.services_total == total == 45
        assert kpis.by_maturity == {
            str(level): sum(1 for c in SEED if c.maturity == level) for level in range(6)
        }
        assert kpis.electronic_share == round(sum(c.maturity >= 4 for c in SEED) / total, 4)
        assert kpis.smart_share == round(12 / 45, 4)
        assert kpis.once_only_share == round(sum(not c.documents_required for c in SEED) / total, 4)
        assert kpis.agencies_total == len(AGENCIES)
        assert kpis.agencies_connected_share == 0.0

    async def test_agency_activity_makes_it_connected(self, session: AsyncSession) -> None:
        for code in ("tax", "police"):
            await agencies.record_agency_activity(session, actor=BROKER, code=code)
        kpis = await stats.compute_stats(session, connected_within=timedelta(days=1))
        assert kpis.agencies_connected_share == round(2 / len(AGENCIES), 4)
        tax = await agencies.get_agency(session, code="tax", connected_within=timedelta(days=1))
        assert tax.connected
        assert tax.last_seen_at is not None

    async def test_a_retired_card_leaves_the_stats(self, session: AsyncSession) -> None:
        await workflow.retire_card(session, actor=ADMIN, code="11050000001")  # smart
        kpis = await stats.compute_stats(session, connected_within=timedelta(days=1))
        assert (kpis.services_total, kpis.by_maturity["5"]) == (44, 11)


@pytest.mark.parametrize(
    ("misspelt", "expected"),
    [("یارنه", "11120000001"), ("مفاصاحسب", "11050000001"), ("پاسپرت", "11020000002")],
)
async def test_typos_are_corrected_from_the_lexicon(
    session: AsyncSession, misspelt: str, expected: str
) -> None:
    found = await find(session, misspelt)
    assert found.match == "fuzzy"
    assert expected in codes(found)
