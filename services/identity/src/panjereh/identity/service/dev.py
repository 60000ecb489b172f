"""Dev mode only: what the console SMS gateway "sent"."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.repository import SmsRepository
from panjereh.identity.schemas import DevSmsList, DevSmsRead


async def sms_outbox(session: AsyncSession, *, mobile: str) -> DevSmsList:
    rows = await SmsRepository(session).dev_outbox(mobile)
    return DevSmsList(
        items=[
            DevSmsRead(
                mobile=row.mobile,
                template=row.template,
                tokens=list(row.tokens),
                text=row.text,
                sent_at=row.sent_at,
            )
            for row in rows
        ]
    )
