"""Kernel tables: transactional outbox and idempotent-consumer inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from panjereh.catalog.models import SCHEMA
from panjereh.common.messaging.migration_ops import (
    create_messaging_tables_v1,
    drop_messaging_tables_v1,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables_v1(SCHEMA)


def downgrade() -> None:
    drop_messaging_tables_v1(SCHEMA)
