"""The approval workflow of a card, and creating one under an ``Idempotency-Key``.

Draft → submitted → approved (a new, immutable version) | rejected; retiring withdraws a
published card. Approving publishes it: the search listing, the typo lexicon and
``catalog.service.published`` in the outbox, all in the caller's unit of work.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.errors import (
    CardInvalid,
    FourEyesRequired,
    InvalidTransition,
    ServiceCodeTaken,
)
from panjereh.catalog.models import (
    CardTransition,
    ServiceCard,
    ServiceCardDraft,
    ServiceCardVersion,
    idempotency,
    messaging,
)
from panjereh.catalog.repository import AgencyRepository, CardRepository, SearchRepository
from panjereh.catalog.schemas import CardContent, CardCreate, CardRead, CardUpdate, DraftRead
from panjereh.catalog.service import reads, search
from panjereh.catalog.service._common import (
    Actor,
    card_by_code,
    now,
    require_agency_admin,
    require_authority,
    require_authority_or_agency_admin,
)
from panjereh.catalog.validation import check_card
from panjereh.common.errors import Text
from panjereh.common.fields import field_error
from panjereh.common.idempotency import IdempotencyStore, Outcome, once
from panjereh.common.messaging import outbox
from panjereh.contracts.catalog import ServicePublished, ServiceRetired

#: The catalog's ``idempotency_record``, as the kernel keeps it.
IDEMPOTENCY = IdempotencyStore(idempotency)
#: The operation name stored with each key (changing it would orphan the stored answers).
CREATE_CARD = "catalog.create_card"


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


async def create_card(session: AsyncSession, *, actor: Actor, card: CardCreate) -> DraftRead:
    """Start a new card as a draft of the actor's agency."""
    require_agency_admin(actor, card.agency)
    if await AgencyRepository(session).get(card.agency) is None:
        raise CardInvalid(
            Text("دستگاه شناخته نیست", "Unknown agency"),
            errors=[
                field_error(
                    "agency",
                    "unknown_agency",
                    fa=f"دستگاهی با شناسه {card.agency!r} نیست",
                    en=f"no agency has the code {card.agency!r}",
                )
            ],
        )
    _check(card)
    cards = CardRepository(session)
    if await cards.by_code(card.code) is not None:
        raise ServiceCodeTaken
    at = now()
    entity = ServiceCard(
        id=uuid.uuid4(),
        code=card.code,
        agency_code=card.agency,
        status="unpublished",
        latest_version=0,
        created_at=at,
        created_by=actor.subject,
    )
    await cards.add(entity)
    draft = ServiceCardDraft(
        card_id=entity.id,
        state="editing",
        content=_content(card),
        updated_at=at,
        updated_by=actor.subject,
    )
    await cards.add(draft, _transition(entity, "created", None, "editing", actor=actor, at=at))
    return reads.draft_read(entity, draft)


async def create_card_once(
    session: AsyncSession, *, actor: Actor, card: CardCreate, idempotency_key: str | None
) -> Outcome:
    """:func:`create_card` under an optional Idempotency-Key: the same key and body get the
    first answer (``replayed``), another body with that key is ``idempotency_key_reused``."""

    async def create() -> Outcome:
        draft = await create_card(session, actor=actor, card=card)
        return Outcome(201, draft.model_dump(mode="json"))

    return await once(
        session,
        IDEMPOTENCY,
        actor=actor.subject,
        key=idempotency_key,
        operation=CREATE_CARD,
        request=card,
        create=create,
    )


async def update_draft(
    session: AsyncSession, *, actor: Actor, code: str, content: CardUpdate
) -> DraftRead:
    """Replace the draft's content; a draft under review cannot change."""
    cards = CardRepository(session)
    card = await card_by_code(cards, code, for_update=True)
    require_agency_admin(actor, card.agency_code)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state == "submitted":
        raise InvalidTransition(
            Text(
                "پیش‌نویس در حال بررسی است و تا تصمیم مرجع تأیید تغییر نمی‌کند",
                "The draft is under review and cannot change until the authority decides",
            )
        )
    _check(content)
    at = now()
    previous = draft.state
    draft.content = _content(content)
    draft.state = "editing"
    draft.rejection_reason = None
    draft.updated_at = at
    draft.updated_by = actor.subject
    await cards.add(_transition(card, "edited", previous, "editing", actor=actor, at=at))
    return reads.draft_read(card, draft)


async def submit_draft(session: AsyncSession, *, actor: Actor, code: str) -> DraftRead:
    """Send the draft to the catalog authority for approval."""
    cards = CardRepository(session)
    card = await card_by_code(cards, code, for_update=True)
    require_agency_admin(actor, card.agency_code)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state not in {"editing", "rejected"}:
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویسِ در حال ویرایش یا ردشده ارسال می‌شود",
                f"Only a draft being edited or rejected can be submitted (it is {draft.state})",
            )
        )
    _check(CardContent.model_validate(draft.content))
    at = now()
    previous = draft.state
    draft.state = "submitted"
    draft.submitted_at = at
    await cards.add(_transition(card, "submitted", previous, "submitted", actor=actor, at=at))
    return reads.draft_read(card, draft)


async def approve_draft(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    approving_organisation: str,
) -> CardRead:
    """Publish the submitted draft as the next version, immutable from now on.

    Four eyes: whoever created, edited or submitted this draft cannot approve it, whatever
    roles they hold (an agency admin who is also a catalog authority included).
    """
    require_authority(actor)
    cards = CardRepository(session)
    card = await card_by_code(cards, code, for_update=True)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state != "submitted":
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویس ارسال‌شده تأیید می‌شود",
                f"Only a submitted draft can be approved (it is {draft.state})",
            )
        )
    if actor.subject in await cards.draft_hands(card.id):
        raise FourEyesRequired
    at = now()
    version = ServiceCardVersion(
        card_id=card.id,
        version=card.latest_version + 1,
        content=draft.content,
        approved_by=actor.subject,
        approving_organisation=approving_organisation,
        approved_at=at,
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
            card, "approved", "submitted", "approved", actor=actor, at=at, version=version.version
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
                at=at,
                version=version.version,
            )
        )
    published = reads.card_read(card, version)
    agency = await AgencyRepository(session).get(card.agency_code)
    await cards.publish_listing(search.listing_values(card, published, agency))
    await SearchRepository(session).remember_words(search.lexicon(published, agency))
    await outbox.add(
        session,
        ServicePublished(
            code=card.code, version=version.version, card=reads.published_card(published)
        ),
        key=card.code,
        table=messaging.outbox,
    )
    return published


async def reject_draft(session: AsyncSession, *, actor: Actor, code: str, reason: str) -> DraftRead:
    """Send the submitted draft back to its agency with the reason."""
    require_authority(actor)
    cards = CardRepository(session)
    card = await card_by_code(cards, code, for_update=True)
    draft = await cards.draft(card.id, for_update=True)
    if draft.state != "submitted":
        raise InvalidTransition(
            Text(
                "فقط پیش‌نویس ارسال‌شده رد می‌شود",
                f"Only a submitted draft can be rejected (it is {draft.state})",
            )
        )
    draft.state = "rejected"
    draft.rejection_reason = reason
    await cards.add(
        _transition(card, "rejected", "submitted", "rejected", actor=actor, at=now(), reason=reason)
    )
    return reads.draft_read(card, draft)


async def retire_card(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    reason: str | None = None,
) -> DraftRead:
    """Withdraw a published card from the catalog; its versions stay readable."""
    cards = CardRepository(session)
    card = await card_by_code(cards, code, for_update=True)
    require_authority_or_agency_admin(actor, card.agency_code)
    if card.status != "published":
        raise InvalidTransition(
            Text(
                "فقط خدمت منتشرشده بازنشسته می‌شود",
                f"Only a published card can be retired (it is {card.status})",
            )
        )
    at = now()
    card.status = "retired"
    card.retired_at = at
    await cards.withdraw_listing(card.id)
    await cards.add(
        _transition(
            card,
            "retired",
            "published",
            "retired",
            actor=actor,
            at=at,
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
    return reads.draft_read(card, draft)
