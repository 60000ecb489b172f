"""Purpose binding: live purposes from the requests service, grants bound to platform purposes.

- ``live_purpose``: the citizens' requests the broker may ask for, opened by
  ``requests.request.submitted`` and closed by a final ``requests.request.status-changed``.
- ``platform_purpose``: the platform's own named purposes (``identity.login``,
  ``identity.registration``), each reserved to the client that owns it.
- ``access_grant.purpose``: a grant now applies to one platform purpose only. The two seeded
  grants of migration 0002 are bound by their ids: the mobile-ownership check to login, the
  civil-registry read to registration.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: later changes are new migrations, never edits of this one.
PLATFORM_PURPOSES = [
    {
        "name": "identity.login",
        "owner": "service:identity",
        "description": "Login: the mobile line must belong to the national code (Shahkar-style)",
    },
    {
        "name": "identity.registration",
        "owner": "service:identity",
        "description": "First login: the citizen's record in the civil registry",
    },
]
#: The grants migration 0002 seeded, by id, and the purpose each one served.
SEEDED_GRANT_PURPOSES = {
    "8a3c7a52-3f0e-4a57-9f59-2c8b8f0f6a01": "identity.login",
    "8a3c7a52-3f0e-4a57-9f59-2c8b8f0f6a02": "identity.registration",
}
_OLD_UNIQUE = "uq_access_grant_principal_inquiry_type"
_NEW_UNIQUE = "uq_access_grant_principal_purpose_inquiry_type"
_FOREIGN_KEY = "fk_access_grant_purpose_platform_purpose"


def upgrade() -> None:
    purposes = op.create_table(
        "platform_purpose",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("name", name="pk_platform_purpose"),
        schema=SCHEMA,
    )
    op.bulk_insert(purposes, PLATFORM_PURPOSES)

    op.add_column("access_grant", sa.Column("purpose", sa.Text), schema=SCHEMA)
    grants = sa.table(
        "access_grant", sa.column("id", sa.Uuid), sa.column("purpose", sa.Text), schema=SCHEMA
    )
    for grant_id, purpose in SEEDED_GRANT_PURPOSES.items():
        op.execute(grants.update().where(grants.c.id == grant_id).values(purpose=purpose))
    unbound = op.get_bind().scalar(
        sa.text(f'SELECT count(*) FROM "{SCHEMA}".access_grant WHERE purpose IS NULL')  # noqa: S608 - a constant
    )
    if unbound:
        # Refuse rather than guess: binding a grant to the wrong purpose widens or breaks it.
        msg = f"{unbound} access grant(s) name no platform purpose: bind them before upgrading"
        raise RuntimeError(msg)
    op.alter_column("access_grant", "purpose", nullable=False, schema=SCHEMA)
    op.create_foreign_key(
        _FOREIGN_KEY,
        "access_grant",
        "platform_purpose",
        ["purpose"],
        ["name"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )
    op.drop_constraint(_OLD_UNIQUE, "access_grant", type_="unique", schema=SCHEMA)
    op.create_unique_constraint(
        _NEW_UNIQUE, "access_grant", ["principal", "purpose", "inquiry_type"], schema=SCHEMA
    )

    op.create_table(
        "live_purpose",
        sa.Column("tracking_code", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("service_version", sa.Integer),
        sa.Column("subject_hash", sa.Text),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tracking_code", name="pk_live_purpose"),
        # the naming convention prefixes it: ck_live_purpose_opened_with_subject, as the model
        sa.CheckConstraint(
            "(opened_at IS NULL) = (subject_hash IS NULL)", name="opened_with_subject"
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("live_purpose", schema=SCHEMA)
    op.drop_constraint(_NEW_UNIQUE, "access_grant", type_="unique", schema=SCHEMA)
    op.create_unique_constraint(
        _OLD_UNIQUE, "access_grant", ["principal", "inquiry_type"], schema=SCHEMA
    )
    op.drop_constraint(_FOREIGN_KEY, "access_grant", type_="foreignkey", schema=SCHEMA)
    op.drop_column("access_grant", "purpose", schema=SCHEMA)
    op.drop_table("platform_purpose", schema=SCHEMA)
