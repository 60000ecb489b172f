"""``python -m panjereh.identity.seed``: demo staff and machine clients for ``make run``.

Dev mode only (it refuses to run otherwise) and idempotent: run it any number of times.

Staff log in like anyone else (national code + mobile + SMS code; any well-formed mobile
not ending in 0000 belongs to everyone in the simulated mobile registry) and carry these
roles. Machine clients get **deterministic dev-only secrets**, ``dev-only-<client_id>``, so
local tools and other services can use them without reading a console; they exist only in
a dev database and are never created outside dev mode.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database
from panjereh.contracts import access
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.keys import DatabaseKeySource
from panjereh.identity.models import MachineClient, StaffRole

logger = logging.getLogger(__name__)

AGENCIES = (
    "civil-registry",
    "mobile-registry",
    "tax",
    "police",
    "social-security",
    "vehicle-registry",
    "education",
)
SERVICES = ("catalog", "identity", "requests", "inquiry-broker")

#: (national code, roles): valid checksums, chosen to be easy to type in a demo
DEV_STAFF: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("1001001001", (access.PLATFORM_ADMIN,)),
    ("1002002001", (access.CATALOG_AUTHORITY,)),
    ("2010010019", (access.agency_role(access.AGENCY_ADMIN, "civil-registry"),)),
    ("3010010011", (access.agency_role(access.OFFICER, "civil-registry"),)),
    ("2020020025", (access.agency_role(access.AGENCY_ADMIN, "mobile-registry"),)),
    ("3020020026", (access.agency_role(access.OFFICER, "mobile-registry"),)),
    ("2030030031", (access.agency_role(access.AGENCY_ADMIN, "tax"),)),
    ("3030030032", (access.agency_role(access.OFFICER, "tax"),)),
    ("2040040048", (access.agency_role(access.AGENCY_ADMIN, "police"),)),
    ("3040040049", (access.agency_role(access.OFFICER, "police"),)),
    ("2050050054", (access.agency_role(access.AGENCY_ADMIN, "social-security"),)),
    ("3050050055", (access.agency_role(access.OFFICER, "social-security"),)),
    ("2060060060", (access.agency_role(access.AGENCY_ADMIN, "vehicle-registry"),)),
    ("3060060061", (access.agency_role(access.OFFICER, "vehicle-registry"),)),
    ("2070070077", (access.agency_role(access.AGENCY_ADMIN, "education"),)),
    ("3070070078", (access.agency_role(access.OFFICER, "education"),)),
)

#: what a service may do with its token: ask inquiries; agencies also answer them
SERVICE_SCOPES = (access.INQUIRIES_SCOPE,)
AGENCY_SCOPES = (access.INQUIRIES_SCOPE, "inquiries:answer", "requests:work")


def dev_client_secret(client_id: str) -> str:
    """The documented dev-only secret of a seeded client (never valid outside dev)."""
    return f"dev-only-{client_id}"


def dev_clients() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(client_id, kind, owner, scopes) of every seeded client."""
    return [
        *((f"service-{name}", "service", name, SERVICE_SCOPES) for name in SERVICES),
        *((f"agency-{code}", "agency", code, AGENCY_SCOPES) for code in AGENCIES),
    ]


async def seed(session: AsyncSession, *, keys: Keys) -> None:
    for national_code, roles in DEV_STAFF:
        await session.execute(
            insert(StaffRole)
            .values(
                [
                    {"national_code": national_code, "role": role, "granted_by": "seed"}
                    for role in roles
                ]
            )
            .on_conflict_do_nothing()
        )
    now = datetime.now(UTC)
    for client_id, kind, owner, scopes in dev_clients():
        secret_hash = keys.token_hash(dev_client_secret(client_id))
        await session.execute(
            insert(MachineClient)
            .values(
                client_id=client_id,
                kind=kind,
                owner=owner,
                scopes=list(scopes),
                secret_hash=secret_hash,
                created_at=now,
            )
            # re-seeding restores the documented secret and scopes, and un-revokes
            .on_conflict_do_update(
                index_elements=[MachineClient.client_id],
                set_={"secret_hash": secret_hash, "scopes": list(scopes), "revoked_at": None},
            )
        )


async def run(settings: Settings) -> None:
    database = Database(settings.database_url, pool_size=1)
    try:
        if settings.signing_key_pem is None:
            await DatabaseKeySource(database, settings).ensure()  # dev keys, made once
        async with database.transaction() as session:
            await seed(session, keys=Keys.from_secret(settings.secret_key.get_secret_value()))
    finally:
        await database.dispose()


def main() -> int:
    settings = Settings()
    if not settings.is_dev:
        sys.stderr.write("identity seed data is for dev mode only; nothing done\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(run(settings))
    logger.info("seeded %d staff and %d machine clients", len(DEV_STAFF), len(dev_clients()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
