"""The kernel's idempotency table: ``Idempotency-Key`` on creating a machine client.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from panjereh.common.messaging.migration_ops import (
    create_idempotency_table_v1,
    drop_idempotency_table_v1,
)
from panjereh.identity.models import SCHEMA

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_table_v1(SCHEMA)


def downgrade() -> None:
    drop_idempotency_table_v1(SCHEMA)
