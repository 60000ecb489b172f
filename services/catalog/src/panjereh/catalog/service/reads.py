"""Reading cards: the published card, its versions, the draft and its history, as DTOs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog import cpsv
from panjereh.catalog.errors import ServiceNotFound, VersionNotFound
from panjereh.catalog.models import ServiceCard, ServiceCardDraft, ServiceCardVersion
from panjereh.catalog.repository import AgencyRepository, CardRepository
from panjereh.catalog.schemas import (
    CardRead,
    DraftRead,
    DraftSummary,
    TransitionRead,
    VersionSummary,
)
from panjereh.catalog.service._common import (
    Actor,
    card_by_code,
    require_authority,
    require_authority_or_agency_admin,
)
from panjereh.common.pagination import Page, Paging
from panjereh.contracts.catalog import PublishedCard


async def get_published(session: AsyncSession, *, code: str) -> CardRead:
    """The latest published version of a live card."""
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.status != "published":
        raise ServiceNotFound
    version = await cards.version(card.id, card.latest_version)
    if version is None:
        raise ServiceNotFound
    return card_read(card, version)


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
    """One approved version, exactly as approved (its ``status`` says where it stands now)."""
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.latest_version == 0:
        raise ServiceNotFound
    found = await cards.version(card.id, version)
    if found is None:
        raise VersionNotFound
    return card_read(card, found)


async def list_versions(
    session: AsyncSession, *, code: str, paging: Paging
) -> Page[VersionSummary]:
    """The approved versions of a card, newest first."""
    cards = CardRepository(session)
    card = await cards.by_code(code)
    if card is None or card.latest_version == 0:
        raise ServiceNotFound
    versions = await cards.versions(card.id, offset=paging.offset, limit=paging.limit)
    return paging.of(
        [
            VersionSummary(
                version=v.version,
                title=v.content["title"],
                approved_by=v.approved_by,
                approving_organisation=v.approving_organisation,
                approved_at=v.approved_at,
            )
            for v in versions
        ],
        total=card.latest_version,  # versions are numbered 1..latest, none ever removed
    )


async def get_draft(session: AsyncSession, *, actor: Actor, code: str) -> DraftRead:
    """The draft, for its agency's admins and the catalog authority."""
    cards = CardRepository(session)
    card = await card_by_code(cards, code)
    require_authority_or_agency_admin(actor, card.agency_code)
    return draft_read(card, await cards.draft(card.id))


async def submitted_drafts(
    session: AsyncSession, *, actor: Actor, paging: Paging
) -> Page[DraftSummary]:
    """The drafts waiting for approval, the longest waiting first (the catalog authority)."""
    require_authority(actor)
    rows, total = await CardRepository(session).drafts_in_state(
        "submitted", offset=paging.offset, limit=paging.limit
    )
    return paging.of(
        [
            DraftSummary(
                code=card.code,
                agency=card.agency_code,
                title=draft.content["title"],
                state=draft.state,
                card_status=card.status,
                latest_version=card.latest_version,
                submitted_at=draft.submitted_at,
                updated_at=draft.updated_at,
            )
            for card, draft in rows
        ],
        total,
    )


async def list_transitions(
    session: AsyncSession, *, actor: Actor, code: str
) -> list[TransitionRead]:
    """Every workflow step of a card, for its agency's admins and the catalog authority."""
    cards = CardRepository(session)
    card = await card_by_code(cards, code)
    require_authority_or_agency_admin(actor, card.agency_code)
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


# ------------------------------------------------------------------------- mapping
def card_read(card: ServiceCard, version: ServiceCardVersion) -> CardRead:
    """A stored version as the public card, with where it stands now."""
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


def draft_read(card: ServiceCard, draft: ServiceCardDraft) -> DraftRead:
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


def published_card(card: CardRead) -> PublishedCard:
    """The public card as the ``catalog.service.published`` contract carries it.

    The contract ignores fields it does not declare, so a field added to the card but not to
    the contract would silently stay home: a test pins that the two list the same fields.
    """
    return PublishedCard.model_validate(card.model_dump(mode="json"))
