"""What an OTP request is checked against, as it is when read, not as a statement's snapshot
saw it.

``otp_send_state(mobile, failed_mobile, failed_person, failed_start)`` returns when the
mobile's latest challenge was created (``NULL`` if never) and the day's wrong codes counted for
the mobile and for the person, read with a snapshot of its own. An OTP request's single
statement first takes the mobile's advisory lock and then calls it: under READ COMMITTED a
statement's snapshot is taken before the statement waits for the lock, so a plain subquery
would miss a challenge (or a wrong code) committed by the request that held the lock, and two
racing requests could both pass the resend cooldown. A VOLATILE PL/pgSQL function takes a
fresh snapshot for each query it runs, here after the lock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Written out with identity's schema: a migration does not change.
_CREATE = """
CREATE FUNCTION identity.otp_send_state(
    mobile text,
    failed_mobile text,
    failed_person text,
    failed_start timestamptz,
    OUT latest timestamptz,
    OUT failed_by_mobile integer,
    OUT failed_by_person integer
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT max(c.created_at) INTO latest
    FROM identity.otp_challenge AS c WHERE c.mobile = otp_send_state.mobile;
    SELECT coalesce(max(r.hits) FILTER (WHERE r.bucket = otp_send_state.failed_mobile), 0),
           coalesce(max(r.hits) FILTER (WHERE r.bucket = otp_send_state.failed_person), 0)
    INTO failed_by_mobile, failed_by_person
    FROM identity.rate_limit_counter AS r
    WHERE r.bucket IN (otp_send_state.failed_mobile, otp_send_state.failed_person)
      AND r.window_start = otp_send_state.failed_start;
END
$$
"""


def upgrade() -> None:
    op.execute(_CREATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION identity.otp_send_state(text, text, text, timestamptz)")
