"""Agencies: registering them, reading them with their connection status, their activity."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.errors import AgencyCodeTaken, AgencyNotFound, CardInvalid, RoleRequired
from panjereh.catalog.models import Agency
from panjereh.catalog.repository import AgencyRepository
from panjereh.catalog.schemas import AgencyCreate, AgencyRead
from panjereh.catalog.service._common import INQUIRY_BROKER, Actor, now
from panjereh.common.errors import Text
from panjereh.common.fields import field_error
from panjereh.common.pagination import Page, Paging
from panjereh.contracts import access


def _agency_read(agency: Agency, *, connected_within: timedelta) -> AgencyRead:
    connected = agency.last_seen_at is not None and agency.last_seen_at >= now() - connected_within
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
    session: AsyncSession, *, paging: Paging, connected_within: timedelta
) -> Page[AgencyRead]:
    agencies, total = await AgencyRepository(session).page(offset=paging.offset, limit=paging.limit)
    return paging.of([_agency_read(a, connected_within=connected_within) for a in agencies], total)


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
    if not actor.has_role(access.PLATFORM_ADMIN):
        raise RoleRequired
    return await register_agency(session, agency=agency, connected_within=connected_within)


async def register_agency(
    session: AsyncSession, *, agency: AgencyCreate, connected_within: timedelta
) -> AgencyRead:
    """Register an agency, whoever asks (the seed; :func:`create_agency` checks the caller)."""
    repository = AgencyRepository(session)
    if await repository.get(agency.code) is not None:
        raise AgencyCodeTaken
    if agency.parent is not None and await repository.get(agency.parent) is None:
        raise CardInvalid(
            Text("دستگاه مافوق شناخته نیست", "Unknown parent agency"),
            errors=[
                field_error(
                    "parent",
                    "unknown_agency",
                    fa=f"دستگاهی با شناسه {agency.parent!r} نیست",
                    en=f"no agency has the code {agency.parent!r}",
                )
            ],
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
    """Note that an agency was active, reported over the API (the broker, platform admins)."""
    if not actor.has_any_role(INQUIRY_BROKER, access.PLATFORM_ADMIN):
        raise RoleRequired
    if not await note_agency_activity(session, code=code, seen_at=seen_at):
        raise AgencyNotFound


async def note_agency_activity(
    session: AsyncSession, *, code: str, seen_at: datetime | None = None
) -> bool:
    """Move the agency's ``last_seen_at`` forward; false when no agency has ``code``.

    Whoever reports it was checked by the caller: the API's role check, or the Kafka ACL that
    lets only the inquiry broker write ``inquiry.agency.active``.
    """
    moment = min(seen_at or now(), now())  # a report from the future is clamped to now
    return await AgencyRepository(session).record_activity(code, moment)
