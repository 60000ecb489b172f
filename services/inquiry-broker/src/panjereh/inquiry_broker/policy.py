"""Purpose-bound access: may this caller ask this inquiry type for this purpose? Deny by default.

The purpose's ``service_code`` is either a platform purpose or a service card:

1. A **platform purpose** (``identity.login``, ``identity.registration``) is reserved to the
   client that owns it: anyone else is refused whatever they hold. Its owner is allowed a type
   only by an explicit, unrevoked grant for that purpose and type, under the grant's legal
   basis. A grant applies to its purpose and to no other.
2. A **service card** purpose must name a card that is currently published in the broker's
   replica, not retired, listing the type among its inquiries; the caller must be entitled to
   act for the card: a platform service trusted to act for every card (``service:requests``) or
   a client of the card's own agency (``client:<agency>``). And its ``tracking_code`` must name
   a **live purpose**: a request of that card, about that subject, not yet decided.

Every answer carries a stable reason; denials are audited like permissions.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from panjereh.contracts import access


class Reason(StrEnum):
    GRANT = "grant"
    CARD = "card"
    NOT_A_CLIENT = "caller_not_a_client"
    NO_PURPOSE = "purpose_missing"
    #: a platform purpose named by a client that does not own it
    PURPOSE_RESERVED = "purpose_reserved"
    #: the platform purpose's owner holds no grant of this type for it
    TYPE_NOT_GRANTED = "type_not_granted"
    CARD_NOT_PUBLISHED = "card_not_published"
    CARD_RETIRED = "card_retired"
    TYPE_NOT_ON_CARD = "type_not_on_card"
    CALLER_NOT_ENTITLED = "caller_not_entitled"
    #: no request with this tracking code is known (yet)
    PURPOSE_UNKNOWN = "purpose_unknown"
    #: the request was decided (approved, rejected, cancelled or failed)
    PURPOSE_CLOSED = "purpose_closed"
    #: the request is of another service or about another subject
    PURPOSE_MISMATCH = "purpose_mismatch"


@dataclass(frozen=True)
class CardView:
    service_code: str
    agency: str
    inquiry_types: Collection[str]
    legal_basis: str | None
    retired: bool


@dataclass(frozen=True)
class GrantView:
    principal: str
    purpose: str
    inquiry_type: str
    legal_basis: str


@dataclass(frozen=True)
class PlatformPurposeView:
    name: str
    owner: str


@dataclass(frozen=True)
class LivePurposeView:
    """What the broker knows of the request a tracking code names."""

    service_code: str
    #: ``None`` while only the request's closing is known (the events crossed)
    subject_hash: str | None
    closed_at: datetime | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    #: The principal the caller acts as (``service:requests``, ``client:tax``), if any.
    acting_as: str | None
    legal_basis: str | None = None


def acting_principals(roles: Iterable[str]) -> list[str]:
    """The caller's machine principals, in a stable order."""
    return sorted(r for r in roles if r.startswith((access.SERVICE_PREFIX, access.CLIENT_PREFIX)))


def decide(
    *,
    roles: Iterable[str],
    inquiry_type: str,
    service_code: str | None,
    tracking_code: str | None,
    subject_hash: str,
    platform_purpose: PlatformPurposeView | None,
    grants: Iterable[GrantView],
    card: CardView | None,
    live_purpose: LivePurposeView | None,
    card_acting_services: Collection[str],
) -> Decision:
    """``platform_purpose`` is the one ``service_code`` names, if any; ``grants`` are for it.

    ``live_purpose`` is what ``tracking_code`` names; ``subject_hash`` the inquiry's subject,
    hashed as live purposes are.
    """
    principals = acting_principals(roles)
    if not principals:
        return Decision(allowed=False, reason=Reason.NOT_A_CLIENT, acting_as=None)
    if not service_code:
        return Decision(allowed=False, reason=Reason.NO_PURPOSE, acting_as=principals[0])
    if platform_purpose is not None:
        return _platform_decision(principals, inquiry_type, platform_purpose, grants)
    return _card_decision(
        principals,
        inquiry_type,
        service_code=service_code,
        tracking_code=tracking_code,
        subject_hash=subject_hash,
        card=card,
        live_purpose=live_purpose,
        card_acting_services=card_acting_services,
    )


def _card_decision(
    principals: list[str],
    inquiry_type: str,
    *,
    service_code: str,
    tracking_code: str | None,
    subject_hash: str,
    card: CardView | None,
    live_purpose: LivePurposeView | None,
    card_acting_services: Collection[str],
) -> Decision:
    first = principals[0]
    denial = _card_denial(inquiry_type, tracking_code, card)
    if denial is not None or card is None:
        return Decision(allowed=False, reason=denial or Reason.CARD_NOT_PUBLISHED, acting_as=first)
    own_client = f"{access.CLIENT_PREFIX}{card.agency}"
    entitled = [p for p in principals if p in card_acting_services or p == own_client]
    if not entitled:
        return Decision(allowed=False, reason=Reason.CALLER_NOT_ENTITLED, acting_as=first)
    # only now: a caller not entitled to the card learns nothing about its requests
    denial = _live_purpose_denial(service_code, subject_hash, live_purpose)
    if denial is not None:
        return Decision(allowed=False, reason=denial, acting_as=entitled[0])
    return Decision(
        allowed=True, reason=Reason.CARD, acting_as=entitled[0], legal_basis=card.legal_basis
    )


def _platform_decision(
    principals: list[str],
    inquiry_type: str,
    purpose: PlatformPurposeView,
    grants: Iterable[GrantView],
) -> Decision:
    if purpose.owner not in principals:
        return Decision(allowed=False, reason=Reason.PURPOSE_RESERVED, acting_as=principals[0])
    for grant in grants:
        if (
            grant.principal == purpose.owner
            and grant.purpose == purpose.name
            and grant.inquiry_type == inquiry_type
        ):
            return Decision(
                allowed=True,
                reason=Reason.GRANT,
                acting_as=grant.principal,
                legal_basis=grant.legal_basis,
            )
    return Decision(allowed=False, reason=Reason.TYPE_NOT_GRANTED, acting_as=purpose.owner)


def _card_denial(
    inquiry_type: str, tracking_code: str | None, card: CardView | None
) -> Reason | None:
    """Why the purpose's card does not cover ``inquiry_type``; ``None`` when it does."""
    if not tracking_code:
        return Reason.NO_PURPOSE
    if card is None:
        return Reason.CARD_NOT_PUBLISHED
    if card.retired:
        return Reason.CARD_RETIRED
    if inquiry_type not in card.inquiry_types:
        return Reason.TYPE_NOT_ON_CARD
    return None


def _live_purpose_denial(
    service_code: str, subject_hash: str, live: LivePurposeView | None
) -> Reason | None:
    """Why the tracking code names no live request of this card about this subject."""
    if live is None:
        return Reason.PURPOSE_UNKNOWN
    if live.service_code != service_code:
        return Reason.PURPOSE_MISMATCH
    if live.subject_hash is None:
        # only the request's final status has arrived: whatever its subject, it is decided
        return Reason.PURPOSE_CLOSED
    # one reason for another service and another subject: the caller learns no more than that
    # this request is not its purpose (compare_digest: no timing hint about the hash either)
    if not hmac.compare_digest(live.subject_hash, subject_hash):
        return Reason.PURPOSE_MISMATCH
    if live.closed_at is not None:
        return Reason.PURPOSE_CLOSED
    return None
