"""An index on when sessions ended: every service polls the sessions ended lately.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panjereh.identity.models import SCHEMA

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_refresh_token_family_revoked_at",
        "refresh_token_family",
        ["revoked_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_refresh_token_family_revoked_at", table_name="refresh_token_family", schema=SCHEMA
    )
