"""The signed-in citizen's own record."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.errors import CitizenNotFound
from panjereh.identity.repository import CitizenRepository
from panjereh.identity.schemas import CitizenRead
from panjereh.identity.service.tokens import roles_of


async def me(session: AsyncSession, *, citizen_id: str) -> CitizenRead:
    """The profile the civil registry gave at registration, the mobile last proven, the roles."""
    citizen = await CitizenRepository(session).by_subject(citizen_id)
    if citizen is None:
        raise CitizenNotFound
    return CitizenRead(
        national_code=citizen.national_code,
        first_name=citizen.first_name,
        last_name=citizen.last_name,
        birth_date=citizen.birth_date,
        mobile=citizen.mobile,
        registered_at=citizen.registered_at,
        roles=await roles_of(session, citizen.national_code),
    )
