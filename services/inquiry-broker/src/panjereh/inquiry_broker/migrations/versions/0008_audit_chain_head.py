"""The audit chain's head as it is when read, not as a statement's snapshot saw it.

``audit_chain_head()`` returns the head's MAC (``NULL`` for an empty chain), read with a
snapshot of its own. An append's single statement first takes the chain's advisory lock and
then calls it: under READ COMMITTED a statement's snapshot is taken before the statement
waits for the lock, so a plain subquery would miss an append committed while it waited and
chain beside it. A VOLATILE PL/pgSQL function takes a fresh snapshot for each query it runs,
here after the lock. The statement checks the head the broker guessed against this one and
inserts only when they match. The function holds no key and computes no MAC.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Written out with the broker's schema: a migration does not change.
_CREATE = """
CREATE FUNCTION inquiry_broker.audit_chain_head() RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head text;
BEGIN
    SELECT entry_hash INTO head FROM inquiry_broker.audit_entry ORDER BY seq DESC LIMIT 1;
    RETURN head;
END
$$
"""


def upgrade() -> None:
    op.execute(_CREATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION inquiry_broker.audit_chain_head()")
