"""What the catalog's use cases share: who is acting, who may act on a card, the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from panjereh.catalog.errors import NotYourAgency, RoleRequired, ServiceNotFound
from panjereh.catalog.models import ServiceCard
from panjereh.catalog.repository import CardRepository
from panjereh.common.errors import Text
from panjereh.contracts import access

#: The inquiry broker's service client, which reports the agencies it hears from.
INQUIRY_BROKER = f"{access.SERVICE_PREFIX}inquiry-broker"


class Actor(Protocol):
    """Who is acting: a verified principal (staff or a service client), or the seed."""

    @property
    def subject(self) -> str: ...

    def has_role(self, role: str) -> bool: ...

    def has_any_role(self, *roles: str) -> bool: ...

    def has_qualified_role(self, role: str, qualifier: str) -> bool: ...

    def qualifiers_of(self, role: str) -> frozenset[str]: ...


def now() -> datetime:
    return datetime.now(UTC)


def is_agency_admin(actor: Actor, agency: str) -> bool:
    return actor.has_qualified_role(access.AGENCY_ADMIN, agency)


def is_catalog_authority(actor: Actor) -> bool:
    return actor.has_role(access.CATALOG_AUTHORITY)


def require_agency_admin(actor: Actor, agency: str) -> None:
    """An admin of ``agency``; an admin of another agency is told so (``not_your_agency``)."""
    if is_agency_admin(actor, agency):
        return
    if actor.qualifiers_of(access.AGENCY_ADMIN):
        raise NotYourAgency
    raise RoleRequired(
        Text(
            "فقط مدیر شناسنامه‌های همان دستگاه این کار را انجام می‌دهد",
            "Only an agency admin of the card's agency may do this",
        )
    )


def require_authority(actor: Actor) -> None:
    if not is_catalog_authority(actor):
        raise RoleRequired(
            Text(
                "فقط مرجع تأیید شناسنامه خدمات این کار را انجام می‌دهد",
                "Only the catalog authority may do this",
            )
        )


def require_authority_or_agency_admin(actor: Actor, agency: str) -> None:
    """The catalog authority, or an admin of the card's agency."""
    if not is_catalog_authority(actor):
        require_agency_admin(actor, agency)


async def card_by_code(
    cards: CardRepository, code: str, *, for_update: bool = False
) -> ServiceCard:
    card = await cards.by_code(code, for_update=for_update)
    if card is None:
        raise ServiceNotFound
    return card
