"""Who may do what: the platform's roles and the claims its access tokens carry.

Identity issues tokens with these roles and claims (CONTRACT.md, "Conventions"); every service
reads them through the helpers below, so the vocabulary lives in one place and the shared
kernel stays free of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

CITIZEN = "citizen"
#: ``officer:<agency>``: decides requests of the agency's cards
OFFICER = "officer"
#: ``agency-admin:<agency>``: drafts and submits the agency's service cards
AGENCY_ADMIN = "agency-admin"
CATALOG_AUTHORITY = "catalog-authority"
PLATFORM_ADMIN = "platform-admin"
#: roles qualified by an agency (``<role>:<agency>``)
AGENCY_ROLES = (OFFICER, AGENCY_ADMIN)
#: staff roles a platform admin may grant
STAFF_ROLES = (OFFICER, AGENCY_ADMIN, CATALOG_AUTHORITY, PLATFORM_ADMIN)
#: ``client:<agency>``: an agency's machine client; ``service:<name>``: a platform service
CLIENT_PREFIX = "client:"
SERVICE_PREFIX = "service:"

#: The claim naming a person's national code (citizens and staff). Personal data.
NATIONAL_CODE_CLAIM = "national_code"
#: The claim naming the agency a machine client acts for.
AGENCY_CLAIM = "agency"
#: The OAuth scope a client needs to ask inquiries.
INQUIRIES_SCOPE = "inquiries"


class Caller(Protocol):
    """What these helpers read of a verified principal."""

    @property
    def subject(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...

    @property
    def claims(self) -> Mapping[str, str]: ...


def agency_role(role: str, agency: str) -> str:
    """``agency_role(OFFICER, "tax")`` → ``officer:tax``."""
    return f"{role}:{agency}"


def national_code_of(caller: Caller) -> str | None:
    return caller.claims.get(NATIONAL_CODE_CLAIM)


def agency_of(caller: Caller) -> str | None:
    return caller.claims.get(AGENCY_CLAIM)


def is_citizen(caller: Caller) -> bool:
    return CITIZEN in caller.roles


def is_client(caller: Caller) -> bool:
    """A machine client (an agency's or a platform service's), not a person."""
    return any(role.startswith((CLIENT_PREFIX, SERVICE_PREFIX)) for role in caller.roles)


def client_id_of(caller: Caller) -> str | None:
    """For machine clients the subject is the ``client_id``; ``None`` for people."""
    return caller.subject if is_client(caller) else None


def is_staff_role(role: str) -> bool:
    name, _, qualifier = role.partition(":")
    if name in AGENCY_ROLES:
        return bool(qualifier)
    return role in (CATALOG_AUTHORITY, PLATFORM_ADMIN)
