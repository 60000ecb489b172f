"""ORM tables of the requests service, in its own ``requests`` schema."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from panjereh.common.db import service_metadata
from panjereh.common.messaging.tables import messaging_tables

SCHEMA = "requests"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
