"""The catalog's use cases: plain async functions over a session they never commit.

Authorization that depends on the card (an agency admin acts only on their agency's cards)
lives here, next to the rule it protects; the router only establishes who is calling.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog import cpsv, persian
from panjereh.catalog.errors import (
    AgencyCodeTaken,
    AgencyNotFound,
    CardInvalid,
    InvalidIdempotencyKey,
    InvalidTransition,
    NotYourAgency,
    RoleRequired,
    ServiceCodeTaken,
    ServiceNotFound,
    VersionNotFound,
)
from panjereh.catalog.models import (
    Agency,
    CardTransition,
    IdempotencyRecord,
    ServiceCard,
    ServiceCardDraft,
    ServiceCardVersion,
    messaging,
)
from panjereh.catalog.repository import (
    AgencyRepository,
    CardRepository,
    FacetBits,
    IdempotencyRepository,
    SearchFilters,
    SearchPage,
    SearchRepository,
    StatsRepository,
)
from panjereh.catalog.schemas import (
    AgencyCreate,
    AgencyRead,
    CardContent,
    CardCreate,
    CardRead,
    CardSummary,
    CardUpdate,
    DraftRead,
    FacetCount,
    Facets,
    Page,
    SearchResults,
    Stats,
    TransitionRead,
    VersionSummary,
)
from panjereh.catalog.validation import check_card
from panjereh.common.errors import IdempotencyKeyReused, Text
from panjereh.common.messaging import outbox
from panjereh.contracts.catalog import ServicePublished, ServiceRetired

CATALOG_AUTHORITY = "catalog-authority"
PLATFORM_ADMIN = "platform-admin"
INQUIRY_BROKER = "service:inquiry-broker"


class Actor(Protocol):
    """Who is acting: an authenticated principal (staff or a service client)."""

    @property
    def subject(self) -> str: ...

    @property
    def roles(self) -> Collection[str]: ...


def _now() -> datetime:
    return datetime.now(UTC)


def is_agency_admin(actor: Actor, agency: str) -> bool:
    return f"agency-admin:{agency}" in actor.roles


def is_catalog_authority(actor: Actor) -> bool:
    return CATALOG_AUTHORITY in actor.roles


def _require_agency_admin(actor: Actor, agency: str) -> None:
    if is_agency_admin(actor, agency):
        return
    if any(role.startswith("agency-admin:") for role in actor.roles):
        raise NotYourAgency
    raise RoleRequired(
        Text(
            "فقط مدیر شناسنامه‌های همان دستگاه این کار را انجام می‌دهد",
            "Only an agency admin of the card's agency may do this",
        )
    )


def _require_authority(actor: Actor) -> None:
    if not is_catalog_authority(actor):
        raise RoleRequired(
            Text(
                "فقط مرجع تأیید شناسنامه خدمات این کار را انجام می‌دهد",
                "Only the catalog authority may do this",
            )
        )


def _check(content: CardContent) -> None:
    problems = check_card(content)
    if problems:
        raise CardInvalid(
            Text(
                "شناسنامه خدمت ایراد دارد؛ فهرست ایرادها را ببینید",
                "The service card has problems; see the list of errors",
            ),
            errors=problems,
        )


def _content(model: CardContent) -> dict[str, Any]:
    """The stored JSON of a card's editable content."""
    return model.model_dump(mode="json", include=set(CardContent.model_fields))


# ------------------------------------------------------------------------- workflow
async def create_card(session: AsyncSession, *, actor: Actor, card: CardCreate) -> DraftRead:
    """Start a new card as a draft of the actor's agency."""
    _require_agency_admin(actor, card.agency)
    if await AgencyRepository(session).get(card.agency) is None:
        raise CardInvalid(
            Text("دستگاه شناخته نیست", "Unknown agency"),
            errors=[{"field": "agency", "message": f"no agency has the code {card.agency!r}"}],
        )
    _check(card)
    cards = CardRepository(session)
    if await cards.by_code(card.code) is not None:
        raise ServiceCodeTaken
    now = _now()
    entity = ServiceCard(
        id=uuid.uuid4(),
        code=card.code,
        agency_code=card.agency,
        status="unpublished",
        latest_version=0,
        created_at=now,
        created_by=actor.subject,
    )
    await cards.add(entity)
    draft = ServiceCardDraft(
        card_id=entity.id,
        state="editing",
        content=_content(card),
        updated_at=now,
        updated_by=actor.subject,
    )
    await cards.add(draft, _transition(entity, "created", None, "editing", actor=actor, at=now))
    return _draft_read(entity, draft)


async def update_draft(
    session: AsyncSession, *, actor: Actor, code: str, content: CardUpdate
) -> DraftRead:
    """Replace the draft's content; a draft under review cannot change."""
    cards = CardRepository(session)
    card = await _card(cards, code, for_update=True)
    _require_agency_admin(actor, card.agency_code)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state == "submitted":
        raise InvalidTransition(
            Text(
                "پیش‌نویس در حال بررسی است و تا تصمیم مرجع تأیید تغییر نمی‌کند",
                "The draft is under review and cannot change until the authority decides",
            )
        )
    _check(content)
    now = _now()
    previous = draft.state
    draft.content = _content(content)
    draft.state = "editing"
    draft.rejection_reason = None
    draft.updated_at = now
    draft.updated_by = actor.subject
    await cards.add(_transition(card, "edited", previous, "editing", actor=actor, at=now))
    return _draft_read(card, draft)


async def submit_draft(session: AsyncSession, *, actor: Actor, code: str) -> DraftRead:
    """Send the draft to the catalog authority for approval."""
    cards = CardRepository(session)
    card = await _card(cards, code, for_update=True)
    _require_agency_admin(actor, card.agency_code)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state not in {"editing", "rejected"}:
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویسِ در حال ویرایش یا ردشده ارسال می‌شود",
                f"Only a draft being edited or rejected can be submitted (it is {draft.state})",
            )
        )
    _check(CardContent.model_validate(draft.content))
    now = _now()
    previous = draft.state
    draft.state = "submitted"
    draft.submitted_at = now
    await cards.add(_transition(card, "submitted", previous, "submitted", actor=actor, at=now))
    return _draft_read(card, draft)


async def approve_draft(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    approving_organisation: str,
) -> CardRead:
    """Publish the submitted draft as the next version, immutable from now on."""
    _require_authority(actor)
    cards = CardRepository(session)
    card = await _card(cards, code, for_update=True)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state != "submitted":
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویس ارسال‌شده تأیید می‌شود",
                f"Only a submitted draft can be approved (it is {draft.state})",
            )
        )
    now = _now()
    version = ServiceCardVersion(
        card_id=card.id,
        version=card.latest_version + 1,
        content=draft.content,
        approved_by=actor.subject,
        approving_organisation=approving_organisation,
        approved_at=now,
        submitted_by=draft.updated_by,
    )
    previous_status = card.status
    card.latest_version = version.version
    card.status = "published"
    card.retired_at = None
    draft.state = "approved"
    await cards.add(
        version,
        _transition(
            card, "approved", "submitted", "approved", actor=actor, at=now, version=version.version
        ),
    )
    if previous_status == "retired":
        await cards.add(
            _transition(
                card,
                "republished",
                "retired",
                "published",
                actor=actor,
                at=now,
                version=version.version,
            )
        )
    published = _card_read(card, version)
    agency = await AgencyRepository(session).get(card.agency_code)
    listing = listing_values(card, published, agency)
    await cards.publish_listing(listing)
    await SearchRepository(session).remember_words(lexicon(published, agency))
    await outbox.add(
        session,
        ServicePublished(
            code=card.code, version=version.version, card=published.model_dump(mode="json")
        ),
        key=card.code,
        table=messaging.outbox,
    )
    return published


async def reject_draft(session: AsyncSession, *, actor: Actor, code: str, reason: str) -> DraftRead:
    """Send the submitted draft back to its agency with the reason."""
    _require_authority(actor)
    cards = CardRepository(session)
    card = await _card(cards, code, for_update=True)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state != "submitted":
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویس ارسال‌شده رد می‌شود",
                f"Only a submitted draft can be rejected (it is {draft.state})",
            )
        )
    now = _now()
    draft.state = "rejected"
    draft.rejection_reason = reason
    await cards.add(
        _transition(card, "rejected", "submitted", "rejected", actor=actor, at=now, reason=reason)
    )
    return _draft_read(card, draft)


async def retire_card(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    reason: str | None = None,
) -> DraftRead:
    """Withdraw a published card from the catalog; its versions stay readable."""
    cards = CardRepository(session)
    card = await _card(cards, code, for_update=True)
    if not is_catalog_authority(actor):
        _require_agency_admin(actor, card.agency_code)
    if card.status != "published":
        raise InvalidTransition(
            Text(
                "فقط خدمت منتشرشده بازنشسته می‌شود",
                f"Only a published card can be retired (it is {card.status})",
            )
        )
    now = _now()
    card.status = "retired"
    card.retired_at = now
    await cards.withdraw_listing(card.id)
    await cards.add(
        _transition(
            card,
            "retired",
            "published",
            "retired",
            actor=actor,
            at=now,
            version=card.latest_version,
            reason=reason,
        )
    )
    await outbox.add(
        session,
        ServiceRetired(code=card.code, version=card.latest_version),
        key=card.code,
        table=messaging.outbox,
    )
    draft = await cards.draft(card.id)
    return _draft_read(card, draft)


def _transition(
    card: ServiceCard,
    action: str,
    from_state: str | None,
    to_state: str,
    *,
    actor: Actor,
    at: datetime,
    version: int | None = None,
    reason: str | None = None,
) -> CardTransition:
    return CardTransition(
        card_id=card.id,
        action=action,
        from_state=from_state,
        to_state=to_state,
        version=version,
        actor=actor.subject,
        reason=reason,
        at=at,
    )


# ------------------------------------------------------------------------- reads
async def _card(cards: CardRepository, code: str, *, for_update: bool = False) -> ServiceCard:
    card = await cards.by_code(code, for_update=for_update)
    if card is None:
        raise ServiceNotFound
    return card


async def get_published(session: AsyncSession, *, code: str) -> CardRead:
    """The latest published version of a live card."""
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.status != "published":
        raise ServiceNotFound
    version = await cards.version(card.id, card.latest_version)
    if version is None:
        raise ServiceNotFound
    return _card_read(card, version)


async def get_published_jsonld(session: AsyncSession, *, code: str) -> dict[str, Any]:
    """The latest published version as CPSV-AP 3.2 JSON-LD."""
    card = await get_published(session, code=code)
    wanted = {card.agency, *(i.provider_agency for i in card.inquiries if i.provider_agency)}
    repository = AgencyRepository(session)
    labels = {}
    for agency_code in sorted(wanted):
        agency = await repository.get(agency_code)
        if agency is not None:
            labels[agency.code] = cpsv.AgencyLabel(agency.code, agency.name_fa, agency.name_en)
    return cpsv.to_jsonld(card, labels)


async def get_version(session: AsyncSession, *, code: str, version: int) -> CardRead:
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.latest_version == 0:
        raise ServiceNotFound
    found = await cards.version(card.id, version)
    if found is None:
        raise VersionNotFound
    return _card_read(card, found)


async def list_versions(
    session: AsyncSession, *, code: str, page: int, page_size: int
) -> Page[VersionSummary]:
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.latest_version == 0:
        raise ServiceNotFound
    versions = await cards.versions(card.id, offset=(page - 1) * page_size, limit=page_size)
    return Page[VersionSummary](
        items=[
            VersionSummary(
                version=v.version,
                title=v.content["title"],
                approved_by=v.approved_by,
                approving_organisation=v.approving_organisation,
                approved_at=v.approved_at,
            )
            for v in versions
        ],
        total=card.latest_version,
        page=page,
        page_size=page_size,
    )


async def get_draft(session: AsyncSession, *, actor: Actor, code: str) -> DraftRead:
    """The draft, for its agency's admins and the catalog authority."""
    cards = CardRepository(session)
    card = await _card(cards, code)
    if not is_catalog_authority(actor):
        _require_agency_admin(actor, card.agency_code)
    return _draft_read(card, await cards.draft(card.id))


async def list_transitions(
    session: AsyncSession, *, actor: Actor, code: str
) -> list[TransitionRead]:
    """Every workflow step of a card, for its agency's admins and the catalog authority."""
    cards = CardRepository(session)
    card = await _card(cards, code)
    if not is_catalog_authority(actor):
        _require_agency_admin(actor, card.agency_code)
    return [
        TransitionRead(
            action=t.action,
            from_state=t.from_state,
            to_state=t.to_state,
            version=t.version,
            actor=t.actor,
            reason=t.reason,
            at=t.at,
        )
        for t in await cards.transitions(card.id)
    ]


def _card_read(card: ServiceCard, version: ServiceCardVersion) -> CardRead:
    return CardRead.model_validate(
        {
            **version.content,
            "code": card.code,
            "agency": card.agency_code,
            "version": version.version,
            "status": "published"
            if card.status == "published" and version.version == card.latest_version
            else ("retired" if card.status == "retired" else "superseded"),
            "approved_by": version.approved_by,
            "approving_organisation": version.approving_organisation,
            "approved_at": version.approved_at,
            "filled_by": None,
        }
    )


def _draft_read(card: ServiceCard, draft: ServiceCardDraft) -> DraftRead:
    return DraftRead.model_validate(
        {
            **draft.content,
            "code": card.code,
            "agency": card.agency_code,
            "state": draft.state,
            "card_status": card.status,
            "latest_version": card.latest_version,
            "rejection_reason": draft.rejection_reason,
            "updated_at": draft.updated_at,
            "updated_by": draft.updated_by,
            "submitted_at": draft.submitted_at,
        }
    )


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


# ------------------------------------------------------------------------- search
#: Words shorter than this are too short to correct (and to learn) by trigram similarity.
MIN_FUZZY_WORD = 3
#: The largest word position PostgreSQL stores in a tsvector.
_MAX_POSITION = 16383


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


async def search_services(
    session: AsyncSession,
    *,
    q: str | None,
    filters: SearchFilters,
    page: int,
    page_size: int,
) -> SearchResults:
    """Persian-aware full-text search with a typo-tolerant fallback, facets and paging."""
    search = SearchRepository(session)
    offset = (page - 1) * page_size
    terms = persian.query_terms(q or "")
    match: str | None = None
    if not terms:
        found: SearchPage = await search.browse(filters, offset=offset, limit=page_size)
    else:
        found = await search.fulltext(terms, filters, offset=offset, limit=page_size)
        match = "fulltext"
        if found.total == 0:
            corrected = await _corrected_terms(search, terms)
            if corrected:
                found = await search.fulltext(corrected, filters, offset=offset, limit=page_size)
                match = "fuzzy"
    return SearchResults(
        items=[CardSummary.model_validate(summary) for summary in found.summaries],
        total=found.total,
        page=page,
        page_size=page_size,
        facets=Facets(
            **{
                name: [FacetCount(value=value, count=count) for value, count in counts]
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


# ------------------------------------------------------------------------- stats
def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def compute_stats(session: AsyncSession, *, connected_within: timedelta) -> Stats:
    """The headline KPIs, computed live from the published cards and the agencies."""
    stats = StatsRepository(session)
    services = await stats.services()
    by_maturity = await stats.by_maturity()
    agencies_total, agencies_connected = await stats.agencies(connected_within=connected_within)
    total = services["total"]
    return Stats(
        services_total=total,
        by_maturity={str(level): by_maturity.get(level, 0) for level in range(6)},
        electronic_share=_share(services["electronic"], total),
        smart_share=_share(services["smart"], total),
        once_only_share=_share(services["once_only"], total),
        agencies_total=agencies_total,
        agencies_connected_share=_share(agencies_connected, agencies_total),
    )


# ------------------------------------------------------------------------- agencies
def _agency_read(agency: Agency, *, connected_within: timedelta) -> AgencyRead:
    connected = agency.last_seen_at is not None and agency.last_seen_at >= _now() - connected_within
    return AgencyRead(
        code=agency.code,
        name={"fa": agency.name_fa, "en": agency.name_en},  # type: ignore[arg-type]
        kind=agency.kind,
        parent=agency.parent_code,
        spatial=agency.spatial,
        contact=agency.contact,
        last_seen_at=agency.last_seen_at,
        connected=connected,
    )


async def list_agencies(
    session: AsyncSession, *, page: int, page_size: int, connected_within: timedelta
) -> Page[AgencyRead]:
    agencies, total = await AgencyRepository(session).page(
        offset=(page - 1) * page_size, limit=page_size
    )
    return Page[AgencyRead](
        items=[_agency_read(a, connected_within=connected_within) for a in agencies],
        total=total,
        page=page,
        page_size=page_size,
    )


async def get_agency(
    session: AsyncSession, *, code: str, connected_within: timedelta
) -> AgencyRead:
    agency = await AgencyRepository(session).get(code)
    if agency is None:
        raise AgencyNotFound
    return _agency_read(agency, connected_within=connected_within)


async def create_agency(
    session: AsyncSession, *, actor: Actor, agency: AgencyCreate, connected_within: timedelta
) -> AgencyRead:
    """Register an agency (platform admins)."""
    if PLATFORM_ADMIN not in actor.roles:
        raise RoleRequired
    return await register_agency(session, agency=agency, connected_within=connected_within)


async def register_agency(
    session: AsyncSession, *, agency: AgencyCreate, connected_within: timedelta
) -> AgencyRead:
    repository = AgencyRepository(session)
    if await repository.get(agency.code) is not None:
        raise AgencyCodeTaken
    if agency.parent is not None and await repository.get(agency.parent) is None:
        raise CardInvalid(
            Text("دستگاه مافوق شناخته نیست", "Unknown parent agency"),
            errors=[{"field": "parent", "message": f"no agency has the code {agency.parent!r}"}],
        )
    entity = Agency(
        code=agency.code,
        name_fa=agency.name.fa,
        name_en=agency.name.en,
        kind=agency.kind,
        parent_code=agency.parent,
        spatial=str(agency.spatial),
        contact=agency.contact,
    )
    await repository.add(entity)
    return _agency_read(entity, connected_within=connected_within)


async def record_agency_activity(
    session: AsyncSession, *, actor: Actor, code: str, seen_at: datetime | None = None
) -> None:
    """Note that an agency was active (fed by the inquiry broker from its traffic)."""
    if INQUIRY_BROKER not in actor.roles and PLATFORM_ADMIN not in actor.roles:
        raise RoleRequired
    moment = min(seen_at or _now(), _now())  # a report from the future is clamped to now
    if not await AgencyRepository(session).record_activity(code, moment):
        raise AgencyNotFound


# ------------------------------------------------------------------------- idempotency
IDEMPOTENCY_KEY_MAX = 200


@dataclass(frozen=True)
class Created:
    """The answer to a creating POST: fresh, or replayed for a repeated Idempotency-Key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


async def create_card_once(
    session: AsyncSession, *, actor: Actor, card: CardCreate, idempotency_key: str | None
) -> Created:
    """``create_card`` under an optional Idempotency-Key (same key and body: same answer)."""
    if idempotency_key is None:
        draft = await create_card(session, actor=actor, card=card)
        return Created(201, draft.model_dump(mode="json"))
    key = _checked_key(idempotency_key)
    operation = "catalog.create_card"
    fingerprint = request_fingerprint(operation, card)
    replay = await replay_or_lock(
        session, actor=actor, key=key, operation=operation, fingerprint=fingerprint
    )
    if replay is not None:
        return Created(replay[0], replay[1], replayed=True)
    draft = await create_card(session, actor=actor, card=card)
    body = draft.model_dump(mode="json")
    await remember_response(
        session,
        actor=actor,
        key=key,
        operation=operation,
        fingerprint=fingerprint,
        status_code=201,
        response=body,
    )
    return Created(201, body)


def _checked_key(key: str) -> str:
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            Text(
                f"کلید یکتایی باید ۱ تا {IDEMPOTENCY_KEY_MAX} نویسه اسکی قابل چاپ باشد",
                f"An Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            ),
            errors=[{"field": "Idempotency-Key", "message": "1-200 printable ASCII characters"}],
        )
    return key


def request_fingerprint(operation: str, body: BaseModel) -> str:
    canonical = json.dumps(
        {"operation": operation, "body": body.model_dump(mode="json")},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def replay_or_lock(
    session: AsyncSession, *, actor: Actor, key: str, operation: str, fingerprint: str
) -> tuple[int, dict[str, Any]] | None:
    """The stored answer for this key and body, or ``None`` (and the key is locked)."""
    records = IdempotencyRepository(session)
    await records.lock(actor.subject, key)
    record = await records.get(actor.subject, key)
    if record is None:
        return None
    if record.operation != operation or record.request_hash != fingerprint:
        raise IdempotencyKeyReused
    return record.status_code, record.response


async def remember_response(
    session: AsyncSession,
    *,
    actor: Actor,
    key: str,
    operation: str,
    fingerprint: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await IdempotencyRepository(session).add(
        IdempotencyRecord(
            actor=actor.subject,
            key=key,
            operation=operation,
            request_hash=fingerprint,
            status_code=status_code,
            response=response,
        )
    )
