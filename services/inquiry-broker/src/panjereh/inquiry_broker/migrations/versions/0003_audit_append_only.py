"""The audit log is append-only for the service's own database role.

Production runs migrations as the schema owner and the service as a separate login role named
by ``PANJEREH_INQUIRY_BROKER_AUDIT_APPEND_ONLY_ROLE``; that role may read and add audit entries
but never change or remove one (no UPDATE, DELETE or TRUNCATE), so even a compromised service
cannot rewrite history, and the hash chain shows what a more privileged hand changed.

Local dev and tests leave the setting empty: everything runs as the embedded server's
superuser, for whom a REVOKE means nothing, so the step is skipped rather than pretending.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = f'"{SCHEMA}".audit_entry'
_SEQUENCE = f'"{SCHEMA}".audit_entry_seq_seq'


def upgrade() -> None:
    role = Settings().audit_append_only_role
    if not role:
        return
    op.execute(f'GRANT USAGE ON SCHEMA "{SCHEMA}" TO "{role}"')
    op.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON {_TABLE} FROM "{role}"')
    op.execute(f'GRANT SELECT, INSERT ON {_TABLE} TO "{role}"')
    op.execute(f'GRANT USAGE ON SEQUENCE {_SEQUENCE} TO "{role}"')


def downgrade() -> None:
    role = Settings().audit_append_only_role
    if not role:
        return
    op.execute(f'REVOKE ALL ON {_TABLE} FROM "{role}"')
    op.execute(f'REVOKE ALL ON SEQUENCE {_SEQUENCE} FROM "{role}"')
