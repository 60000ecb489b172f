"""The audit chain is keyed and its head checkpointed.

``audit_entry.chain_version`` says which rule an entry's hash follows. Every entry already
written gets 1 (the unkeyed SHA-256 rule it was written by) and is left exactly as it is:
re-keying history would mean rewriting every row, the very change the log exists to show,
and done by a migration it would also launder whatever an insider changed before it. The
broker writes 2 (HMAC-SHA256 with its audit chain key, which the database never holds) from
now on; the first keyed entry's MAC covers the last unkeyed hash, so the old entries are
anchored too, and the verifier refuses an unkeyed entry after a keyed one.

``claimed_agency`` records who a refused agency reply claimed to be from. ``audit_checkpoint``
keeps the signed checkpoints of the chain's head; like the log, it is append-only for the
service's role when ``PANJEREH_INQUIRY_BROKER_AUDIT_APPEND_ONLY_ROLE`` names it (see 0003).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = f'"{SCHEMA}".audit_checkpoint'
_SEQUENCE = f'"{SCHEMA}".audit_checkpoint_id_seq'


def upgrade() -> None:
    op.add_column(
        "audit_entry",
        sa.Column("chain_version", sa.SmallInteger, server_default=sa.text("1"), nullable=False),
        schema=SCHEMA,
    )
    op.add_column("audit_entry", sa.Column("claimed_agency", sa.Text), schema=SCHEMA)
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("head_seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.Text, nullable=False),
        sa.Column("entries", sa.BigInteger, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoint"),
        schema=SCHEMA,
    )
    role = Settings().audit_append_only_role
    if role:
        op.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON {_TABLE} FROM "{role}"')
        op.execute(f'GRANT SELECT, INSERT ON {_TABLE} TO "{role}"')
        op.execute(f'GRANT USAGE ON SEQUENCE {_SEQUENCE} TO "{role}"')


def downgrade() -> None:
    op.drop_table("audit_checkpoint", schema=SCHEMA)
    op.drop_column("audit_entry", "claimed_agency", schema=SCHEMA)
    op.drop_column("audit_entry", "chain_version", schema=SCHEMA)
