"""When each agency was last announced as active (``inquiry.agency.active``): the throttle.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency_announcement",
        sa.Column("agency", sa.Text, nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agency", name="pk_agency_announcement"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("agency_announcement", schema=SCHEMA)
