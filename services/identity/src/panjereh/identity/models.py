"""ORM tables of the identity service, in its own ``identity`` schema."""

from __future__ import annotations

from panjereh.common.db import service_metadata
from panjereh.common.messaging.tables import messaging_tables
from sqlalchemy.orm import DeclarativeBase

SCHEMA = "identity"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
