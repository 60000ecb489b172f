"""The registry of inquiry types: what can be asked, of whom, how it is delivered."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.pagination import Page
from panjereh.contracts.topics import agency_inquiries, agency_replies
from panjereh.inquiry_broker.models import InquiryType
from panjereh.inquiry_broker.repository import InquiryTypeRepository
from panjereh.inquiry_broker.schemas import InquiryTypeRead


async def list_inquiry_types(session: AsyncSession) -> Page[InquiryTypeRead]:
    """Every type, on one page (the registry is small: tens of types, not thousands)."""
    items = [_read(t) for t in await InquiryTypeRepository(session).all()]
    return Page[InquiryTypeRead](
        items=items, total=len(items), page=1, page_size=max(len(items), 1)
    )


def _read(inquiry_type: InquiryType) -> InquiryTypeRead:
    topic = (
        agency_inquiries(inquiry_type.provider_agency) if inquiry_type.delivery == "kafka" else None
    )
    return InquiryTypeRead.model_validate(inquiry_type).model_copy(update={"topic": topic})


async def reply_topics(session: AsyncSession) -> list[str]:
    """``agency.<code>.replies`` of every agency the registry asks: what the broker consumes.

    Literal names rather than a pattern, like the broker's Kafka ACLs: each topic is writable
    by its agency alone, so the topic a reply arrives on names its sender.
    """
    return [
        agency_replies(code) for code in await InquiryTypeRepository(session).provider_agencies()
    ]
