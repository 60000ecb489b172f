"""ORM tables of the inquiry broker service, in its own ``inquiry_broker`` schema."""

from __future__ import annotations

from panjereh.common.db import service_metadata
from panjereh.common.messaging.tables import messaging_tables
from sqlalchemy.orm import DeclarativeBase

SCHEMA = "inquiry_broker"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
