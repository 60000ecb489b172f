"""Purpose-bound access: may this caller ask this inquiry type for this purpose? Deny by default.

1. An explicit, unrevoked grant to one of the caller's principals (``service:identity``) for the
   type allows it, under the grant's legal basis.
2. Otherwise the purpose must name a service card (and a tracking code) that is currently
   published in the broker's replica, the card must list the type among its inquiries, and
   the caller must be entitled to act for the card: a platform service trusted to act for
   every card (``service:requests``) or a client of the card's own agency (``client:<agency>``).

Every answer carries a stable reason; denials are audited like permissions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    GRANT = "grant"
    CARD = "card"
    NOT_A_CLIENT = "caller_not_a_client"
    NO_PURPOSE = "purpose_missing"
    CARD_NOT_PUBLISHED = "card_not_published"
    CARD_RETIRED = "card_retired"
    TYPE_NOT_ON_CARD = "type_not_on_card"
    CALLER_NOT_ENTITLED = "caller_not_entitled"


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
    inquiry_type: str
    legal_basis: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    #: The principal the caller acts as (``service:requests``, ``client:tax``), if any.
    acting_as: str | None
    legal_basis: str | None = None


def acting_principals(roles: Iterable[str]) -> list[str]:
    """The caller's machine principals, in a stable order."""
    return sorted(r for r in roles if r.startswith(("service:", "client:")))


def decide(
    *,
    roles: Iterable[str],
    inquiry_type: str,
    service_code: str | None,
    tracking_code: str | None,
    card: CardView | None,
    grants: Iterable[GrantView],
    card_acting_services: Collection[str],
) -> Decision:
    principals = acting_principals(roles)
    if not principals:
        return Decision(allowed=False, reason=Reason.NOT_A_CLIENT, acting_as=None)
    for grant in grants:
        if grant.inquiry_type == inquiry_type and grant.principal in principals:
            return Decision(
                allowed=True,
                reason=Reason.GRANT,
                acting_as=grant.principal,
                legal_basis=grant.legal_basis,
            )
    first = principals[0]
    denial = _card_denial(inquiry_type, service_code, tracking_code, card)
    if denial is not None or card is None:
        return Decision(allowed=False, reason=denial or Reason.CARD_NOT_PUBLISHED, acting_as=first)
    entitled = [p for p in principals if p in card_acting_services or p == f"client:{card.agency}"]
    if not entitled:
        return Decision(allowed=False, reason=Reason.CALLER_NOT_ENTITLED, acting_as=first)
    return Decision(
        allowed=True, reason=Reason.CARD, acting_as=entitled[0], legal_basis=card.legal_basis
    )


def _card_denial(
    inquiry_type: str, service_code: str | None, tracking_code: str | None, card: CardView | None
) -> Reason | None:
    """Why the purpose's card does not cover ``inquiry_type``; ``None`` when it does."""
    if not service_code or not tracking_code:
        return Reason.NO_PURPOSE
    if card is None:
        return Reason.CARD_NOT_PUBLISHED
    if card.retired:
        return Reason.CARD_RETIRED
    if inquiry_type not in card.inquiry_types:
        return Reason.TYPE_NOT_ON_CARD
    return None
