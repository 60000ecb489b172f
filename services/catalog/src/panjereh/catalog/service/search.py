"""Search over published cards, and the listing and lexicon a published card is found by.

Text is normalised the same way when indexing (:func:`listing_values`, :func:`lexicon`) and
when querying (:func:`search_services`): see :mod:`panjereh.catalog.persian`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog import persian
from panjereh.catalog.categories import category_label
from panjereh.catalog.models import Agency, ServiceCard
from panjereh.catalog.repository import FacetBits, SearchPage, SearchRepository
from panjereh.catalog.schemas import (
    CardRead,
    CardSummary,
    FacetCount,
    Facets,
    SearchFilters,
    SearchResults,
)
from panjereh.common.pagination import Paging

#: Words shorter than this are too short to correct (and to learn) by trigram similarity.
MIN_FUZZY_WORD = 3
#: The largest word position PostgreSQL stores in a tsvector.
_MAX_POSITION = 16383


async def search_services(
    session: AsyncSession, *, q: str | None, filters: SearchFilters, paging: Paging
) -> SearchResults:
    """Persian-aware full-text search with a typo-tolerant fallback, facets and paging."""
    search = SearchRepository(session)
    offset, limit = paging.offset, paging.limit
    terms = persian.query_terms(q or "")
    match: str | None = None
    if not terms:
        found: SearchPage = await search.browse(filters, offset=offset, limit=limit)
    else:
        found = await search.fulltext(terms, filters, offset=offset, limit=limit)
        match = "fulltext"
        if found.total == 0:
            corrected = await _corrected_terms(search, terms)
            if corrected:
                found = await search.fulltext(corrected, filters, offset=offset, limit=limit)
                match = "fuzzy"
    return SearchResults(
        items=[CardSummary.model_validate(summary) for summary in found.summaries],
        total=found.total,
        page=paging.page,
        page_size=paging.page_size,
        facets=Facets(
            **{
                name: [
                    FacetCount(
                        value=value,
                        count=count,
                        label=category_label(value) if name == "category" else None,
                    )
                    for value, count in counts
                ]
                for name, counts in found.facets.items()
            }
        ),
        match=match,
    )


async def _corrected_terms(
    search: SearchRepository, terms: list[list[str]]
) -> list[list[str]] | None:
    """The query with each word replaced by the indexed words closest to it (typo fallback).

    Every word long enough to correct must have something close, or there is no correction:
    a query about something the catalog does not hold should find nothing, not a neighbour.
    """
    words = sorted({word for alternatives in terms for a in alternatives for word in a.split()})
    close = await search.similar_words([w for w in words if len(w) >= MIN_FUZZY_WORD])
    corrected: list[list[str]] = []
    for alternatives in terms:
        options: set[str] = set()
        for alternative in alternatives:
            parts = alternative.split()
            if any(len(word) >= MIN_FUZZY_WORD and not close.get(word) for word in parts):
                continue
            options.update(
                candidate
                for word in parts
                for candidate in (close[word] if len(word) >= MIN_FUZZY_WORD else [word])
            )
        if not options:
            return None
        corrected.append(sorted(options))
    return corrected


# ------------------------------------------------------------------------- indexing
def search_vector(fields: list[tuple[str, str]]) -> str:
    """A ``tsvector`` literal of normalised words with positions and weights.

    ``[("کارت ملی", "A"), ("شناسنامه", "B")]`` → ``'کارت':1A 'ملی':2A 'شناسنامه':3B``. The
    words come from the normaliser (letters and digits only), so quoting them is safe.
    """
    positions: dict[str, list[str]] = {}
    position = 0
    for terms, weight in fields:
        for word in terms.split():
            position = min(position + 1, _MAX_POSITION)
            positions.setdefault(word, []).append(f"{position}{weight}")
    return " ".join(f"'{word}':{','.join(places)}" for word, places in positions.items())


def listing_values(card: ServiceCard, published: CardRead, agency: Agency | None) -> dict[str, Any]:
    """The search row of a published card: facets, counts and Persian-normalised text."""
    title = " ".join(
        filter(
            None,
            [
                published.title.fa,
                published.title.en,
                published.process_title.fa if published.process_title else None,
                published.process_title.en if published.process_title else None,
                published.code,
            ],
        )
    )
    keywords = " ".join(
        [
            *published.keywords,
            published.category.replace("-", " "),
            *(filter(None, [agency.name_fa, agency.name_en]) if agency else []),
        ]
    )
    description = " ".join(
        filter(
            None,
            [
                published.description.fa,
                published.description.en,
                published.recipients.fa if published.recipients else None,
                published.output.fa if published.output else None,
            ],
        )
    )
    title_terms = persian.index_terms(title)
    keyword_terms = persian.index_terms(keywords)
    description_terms = persian.index_terms(description)
    summary = CardSummary(
        code=published.code,
        title=published.title,
        agency=published.agency,
        category=published.category,
        life_events=[str(e) for e in published.life_events],
        channels=sorted({str(c.type) for c in published.channels}),
        audience=[str(a) for a in published.audience],
        maturity=int(published.maturity),
        version=published.version,
    )
    return {
        "card_id": card.id,
        "code": published.code,
        "version": published.version,
        "agency_code": published.agency,
        "category": published.category,
        "life_events_mask": FacetBits.LIFE_EVENT.mask(summary.life_events),
        "channels_mask": FacetBits.CHANNEL.mask(summary.channels),
        "audience_mask": FacetBits.AUDIENCE.mask(summary.audience),
        "maturity": summary.maturity,
        "documents_required": len(published.documents_required),
        "in_person_visits": published.in_person_visits,
        "summary": summary.model_dump(mode="json"),
        "search_vector": search_vector(
            [(title_terms, "A"), (keyword_terms, "B"), (description_terms, "C")]
        ),
        "published_at": published.approved_at,
    }


def lexicon(published: CardRead, agency: Agency | None) -> list[str]:
    """The words a published card adds to the typo-correction lexicon."""
    texts = [
        published.title.fa,
        published.title.en or "",
        published.description.fa,
        published.description.en or "",
        *published.keywords,
        *(filter(None, [agency.name_fa, agency.name_en]) if agency else []),
    ]
    words = {w for text in texts for w in persian.index_terms(text).split()}
    return sorted(w for w in words if len(w) >= MIN_FUZZY_WORD and not w.isdigit())
