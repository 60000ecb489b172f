"""Named queries of the catalog, in the domain's words."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    cast,
    delete,
    func,
    literal,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSQUERY, TSVECTOR, insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.models import (
    Agency,
    CardTransition,
    SearchWord,
    ServiceCard,
    ServiceCardDraft,
    ServiceCardVersion,
    ServiceListing,
)
from panjereh.catalog.schemas import Audience, ChannelType, LifeEvent, SearchFilters

FACETS = ("agency", "category", "life_event", "channel", "maturity", "audience")
#: How many indexed words a misspelt query word may stand for
SIMILAR_WORDS = 4


@dataclass(frozen=True)
class SearchPage:
    summaries: list[dict[str, Any]]
    total: int
    facets: dict[str, list[tuple[str, int]]]


class AgencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, code: str) -> Agency | None:
        return await self.session.get(Agency, code)

    async def page(self, *, offset: int, limit: int) -> tuple[Sequence[Agency], int]:
        total = await self.session.scalar(select(func.count()).select_from(Agency))
        rows = await self.session.scalars(
            select(Agency).order_by(Agency.code).offset(offset).limit(limit)
        )
        return rows.all(), int(total or 0)

    async def add(self, agency: Agency) -> None:
        self.session.add(agency)
        await self.session.flush()

    async def record_activity(self, code: str, seen_at: datetime) -> bool:
        """Move ``last_seen_at`` forward (never back: reports may arrive out of order)."""
        result = await self.session.execute(
            update(Agency)
            .where(Agency.code == code)
            .values(
                last_seen_at=func.greatest(func.coalesce(Agency.last_seen_at, seen_at), seen_at)
            )
            .returning(Agency.code)
        )
        return result.first() is not None


class CardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def draft_hands(self, card_id: uuid.UUID) -> set[str]:
        """Who created, edited or submitted the card since its last approval."""
        last_approval = (
            select(func.max(CardTransition.at))
            .where(CardTransition.card_id == card_id, CardTransition.action == "approved")
            .scalar_subquery()
        )
        rows = await self.session.scalars(
            select(CardTransition.actor).where(
                CardTransition.card_id == card_id,
                CardTransition.action.in_(("created", "edited", "submitted")),
                (CardTransition.at > last_approval) | last_approval.is_(None),
            )
        )
        return set(rows)

    async def by_code(self, code: str, *, for_update: bool = False) -> ServiceCard | None:
        statement = select(ServiceCard).where(ServiceCard.code == code)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).first()

    async def draft(self, card_id: uuid.UUID, *, for_update: bool = False) -> ServiceCardDraft:
        statement = select(ServiceCardDraft).where(ServiceCardDraft.card_id == card_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).one()

    async def add(self, *objects: object) -> None:
        self.session.add_all(objects)
        await self.session.flush()

    async def version(self, card_id: uuid.UUID, version: int) -> ServiceCardVersion | None:
        return (
            await self.session.scalars(
                select(ServiceCardVersion).where(
                    ServiceCardVersion.card_id == card_id, ServiceCardVersion.version == version
                )
            )
        ).first()

    async def drafts_in_state(
        self, state: str, *, offset: int, limit: int
    ) -> tuple[list[tuple[ServiceCard, ServiceCardDraft]], int]:
        """Drafts in ``state`` with their cards, the longest waiting first, and how many."""
        where = ServiceCardDraft.state == state
        total = await self.session.scalar(
            select(func.count()).select_from(ServiceCardDraft).where(where)
        )
        rows = await self.session.execute(
            select(ServiceCard, ServiceCardDraft)
            .join(ServiceCardDraft, ServiceCardDraft.card_id == ServiceCard.id)
            .where(where)
            .order_by(
                ServiceCardDraft.submitted_at.asc().nulls_last(),
                ServiceCardDraft.updated_at.asc(),
                ServiceCard.code,
            )
            .offset(offset)
            .limit(limit)
        )
        return [(card, draft) for card, draft in rows.all()], int(total or 0)

    async def versions(
        self, card_id: uuid.UUID, *, offset: int, limit: int
    ) -> Sequence[ServiceCardVersion]:
        rows = await self.session.scalars(
            select(ServiceCardVersion)
            .where(ServiceCardVersion.card_id == card_id)
            .order_by(ServiceCardVersion.version.desc())
            .offset(offset)
            .limit(limit)
        )
        return rows.all()

    async def transitions(self, card_id: uuid.UUID) -> Sequence[CardTransition]:
        rows = await self.session.scalars(
            select(CardTransition)
            .where(CardTransition.card_id == card_id)
            .order_by(CardTransition.at, CardTransition.id)
        )
        return rows.all()

    async def publish_listing(self, values: dict[str, Any]) -> None:
        """Make ``values`` the searchable listing of its card (insert or replace).

        ``search_vector`` arrives as a ``tsvector`` literal of already-normalised words.
        """
        values = values | {"search_vector": cast(literal(values["search_vector"]), TSVECTOR)}
        statement = insert(ServiceListing).values(**values)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[ServiceListing.card_id],
                set_={k: statement.excluded[k] for k in values if k != "card_id"},
            )
        )

    async def withdraw_listing(self, card_id: uuid.UUID) -> None:
        await self.session.execute(delete(ServiceListing).where(ServiceListing.card_id == card_id))


@dataclass(frozen=True)
class Vocabulary:
    """A fixed vocabulary stored as a bit set: value ``values[i]`` is bit ``1 << i``.

    The order is part of the stored data: only ever append (a test pins it).
    """

    values: tuple[str, ...]

    def bit(self, value: str) -> int:
        return 1 << self.values.index(value)

    def mask(self, values: Sequence[str]) -> int:
        return sum(self.bit(value) for value in set(values))

    def decode(self, mask: int) -> list[str]:
        return [value for index, value in enumerate(self.values) if mask & (1 << index)]


class FacetBits:
    LIFE_EVENT = Vocabulary(tuple(e.value for e in LifeEvent))
    CHANNEL = Vocabulary(tuple(c.value for c in ChannelType))
    AUDIENCE = Vocabulary(tuple(a.value for a in Audience))


#: Multi-valued facets: (facet name, vocabulary, listing column)
_BIT_FACETS = (
    ("life_event", FacetBits.LIFE_EVENT, ServiceListing.life_events_mask),
    ("channel", FacetBits.CHANNEL, ServiceListing.channels_mask),
    ("audience", FacetBits.AUDIENCE, ServiceListing.audience_mask),
)


#: The listing columns that facets group by, in the order given to GROUPING SETS
_FACET_COLUMNS = (
    "agency_code",
    "category",
    "maturity",
    "life_events_mask",
    "channels_mask",
    "audience_mask",
)
_FACET_NAMES = ("agency", "category", "maturity", "life_event", "channel", "audience")
#: GROUPING(...) of a row names its set: every bit is 1 except the grouped column's
_GROUPING_FACET = {
    (1 << len(_FACET_COLUMNS)) - 1 - (1 << (len(_FACET_COLUMNS) - 1 - index)): name
    for index, name in enumerate(_FACET_NAMES)
}
_VOCABULARIES = {name: vocabulary for name, vocabulary, _ in _BIT_FACETS}


class SearchRepository:
    """Search and browse over ``service_listing``, entirely in PostgreSQL."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def fulltext(
        self, terms: list[list[str]], filters: SearchFilters, *, offset: int, limit: int
    ) -> SearchPage:
        query = cast(literal(_tsquery(terms)), TSQUERY)
        match = ServiceListing.search_vector.op("@@", is_comparison=True)(query)
        rank = func.ts_rank(ServiceListing.search_vector, query)
        return await self._page([match, *_conditions(filters)], rank, offset=offset, limit=limit)

    async def similar_words(self, words: Sequence[str]) -> dict[str, list[str]]:
        """For each query word, the closest indexed words (trigram similarity, best first)."""
        if not words:
            return {}
        term = (
            func.unnest(literal(list(words), ARRAY(Text)))
            .table_valued("term")
            .render_derived(name="t")
        )
        close = (
            select(SearchWord.word)
            .where(SearchWord.word.op("%", is_comparison=True)(term.c.term))
            .order_by(func.similarity(SearchWord.word, term.c.term).desc(), SearchWord.word)
            .limit(SIMILAR_WORDS)
            .lateral("close")
        )
        rows = await self.session.execute(select(term.c.term, close.c.word).join(close, true()))
        found: dict[str, list[str]] = {word: [] for word in words}
        for row in rows:
            found[row.term].append(row.word)
        return found

    async def remember_words(self, words: Sequence[str]) -> None:
        if words:
            await self.session.execute(
                insert(SearchWord)
                .values([{"word": word} for word in words])
                .on_conflict_do_nothing(index_elements=[SearchWord.word])
            )

    async def browse(self, filters: SearchFilters, *, offset: int, limit: int) -> SearchPage:
        return await self._page(_conditions(filters), literal(0), offset=offset, limit=limit)

    async def _page(
        self,
        conditions: list[ColumnElement[bool]],
        rank: ColumnElement[Any],
        *,
        offset: int,
        limit: int,
    ) -> SearchPage:
        """One page of matches and the facet counts of all matches, in one round trip.

        Rows of the result: ``("item", code, position, summary)`` for the page and
        ``(GROUPING(...), value, count, NULL)`` for each facet value (for the multi-valued
        facets the value is a bit set, expanded to the values it holds).
        """
        listing = ServiceListing
        matched = (
            select(
                listing.card_id,
                listing.code,
                listing.agency_code,
                listing.category,
                listing.maturity,
                listing.life_events_mask,
                listing.channels_mask,
                listing.audience_mask,
                rank.label("rank"),
            )
            .where(*conditions)
            .cte("matched")
        )
        # every facet in one pass over the matches: one hash table per grouping set; the
        # multi-valued facets are grouped by their bit sets and expanded per value below
        facet_columns = [matched.c[name] for name in _FACET_COLUMNS]
        parts: list[Select[Any]] = [
            select(
                cast(func.grouping(*facet_columns), Text).label("kind"),
                func.coalesce(*(cast(column, Text) for column in facet_columns)).label("value"),
                func.count().label("hits"),
                cast(null(), JSONB).label("payload"),
            ).group_by(func.grouping_sets(*facet_columns))
        ]
        page = (
            select(matched.c.card_id, matched.c.rank, matched.c.code)
            .order_by(matched.c.rank.desc(), matched.c.code)
            .offset(offset)
            .limit(limit)
            .subquery("page")
        )
        parts.append(
            select(
                literal("item"),
                page.c.code,
                func.row_number().over(order_by=(page.c.rank.desc(), page.c.code)),
                listing.summary,
            ).join_from(page, listing, listing.card_id == page.c.card_id)
        )
        counts: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
        items: list[tuple[int, dict[str, Any]]] = []
        for row in await self.session.execute(union_all(*parts)):
            if row.kind == "item":
                items.append((row.hits, row.payload))
                continue
            facet = _GROUPING_FACET[int(row.kind)]
            vocabulary = _VOCABULARIES.get(facet)
            if vocabulary is None:
                counts[facet][row.value] += row.hits
            else:
                for value in vocabulary.decode(int(row.value)):
                    counts[facet][value] += row.hits
        facets = {
            name: sorted(found.items(), key=lambda item: (-item[1], item[0]))
            for name, found in counts.items()
        }
        items.sort(key=lambda item: item[0])
        # every card has exactly one maturity, so its facet counts add up to the total
        total = sum(count for _, count in facets["maturity"])
        return SearchPage([summary for _, summary in items], total, facets)


def _conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    listing = ServiceListing
    conditions: list[ColumnElement[bool]] = []
    if filters.agency is not None:
        conditions.append(listing.agency_code == filters.agency)
    if filters.category is not None:
        conditions.append(listing.category == filters.category)
    if filters.maturity is not None:
        conditions.append(listing.maturity == filters.maturity)
    for name, vocabulary, column in _BIT_FACETS:
        value = getattr(filters, name)
        if value is not None:
            conditions.append(column.op("&")(vocabulary.bit(value)) != 0)
    return conditions


def _tsquery(terms: list[list[str]]) -> str:
    """``[["می خواهم", "میخواهم"], ["ثبت"]]`` → ``(('می':* & 'خواهم':*) | 'میخواهم':*) & 'ثبت':*``.

    Words come from the normaliser (letters and digits only), so quoting them is safe; every
    word matches as a prefix, which also covers Persian suffixes (ها، های، ام).
    """
    groups = []
    for alternatives in terms:
        options = [
            "(" + " & ".join(f"'{word}':*" for word in alternative.split()) + ")"
            for alternative in alternatives
        ]
        groups.append("(" + " | ".join(options) + ")")
    return " & ".join(groups)


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def services(self) -> dict[str, int]:
        listing = ServiceListing
        row = (
            await self.session.execute(
                select(
                    func.count().label("total"),
                    func.count().filter(listing.maturity >= 4).label("electronic"),
                    func.count().filter(listing.maturity == 5).label("smart"),
                    func.count().filter(listing.documents_required == 0).label("once_only"),
                ).select_from(listing)
            )
        ).one()
        return dict(row._mapping)

    async def by_maturity(self) -> dict[int, int]:
        rows = await self.session.execute(
            select(ServiceListing.maturity, func.count()).group_by(ServiceListing.maturity)
        )
        return {int(maturity): int(count) for maturity, count in rows}

    async def agencies(self, *, connected_within: timedelta) -> tuple[int, int]:
        row = (
            await self.session.execute(
                select(
                    func.count(),
                    func.count().filter(Agency.last_seen_at >= func.now() - connected_within),
                ).select_from(Agency)
            )
        ).one()
        return int(row[0]), int(row[1])
