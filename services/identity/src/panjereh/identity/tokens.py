"""Access-token issuance: ES256 JWTs with the claims every service's verifier expects.

Claims: ``iss``, ``aud``, ``sub`` (a citizen's opaque id, or a client's ``client_id``),
``roles``, ``national_code`` (people), ``agency`` and ``scope`` (clients), ``client_id``
(clients), ``sid`` (people: the refresh-token family, so logout can end it), ``exp`` (10 min by
default), ``nbf``, ``iat``, ``jti``; header ``kid``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jose import jwt

from panjereh.common.jwk import ALGORITHM
from panjereh.contracts import access
from panjereh.identity.keys import KeySet

#: the machine client a token was issued to (clients; equal to ``sub``)
CLIENT_ID_CLAIM = "client_id"
#: the login session (people): the refresh-token family, so logout can end it
SESSION_CLAIM = "sid"


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audience: str
    lifetime: timedelta


def issue_access_token(
    *,
    keyset: KeySet,
    policy: TokenPolicy,
    subject: str,
    roles: Sequence[str],
    now: datetime,
    national_code: str | None = None,
    agency: str | None = None,
    scopes: Sequence[str] = (),
    client_id: str | None = None,
    session_id: str | None = None,
    token_id: str | None = None,
) -> str:
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": subject,
        "roles": list(roles),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(policy.lifetime.total_seconds()),
        "jti": token_id or uuid.uuid4().hex,
    }
    if national_code is not None:
        claims[access.NATIONAL_CODE_CLAIM] = national_code
    if agency is not None:
        claims[access.AGENCY_CLAIM] = agency
    if scopes:
        claims["scope"] = " ".join(scopes)
    if client_id is not None:
        claims[CLIENT_ID_CLAIM] = client_id
    if session_id is not None:
        claims[SESSION_CLAIM] = session_id
    token: str = jwt.encode(
        claims,
        keyset.current.pem,
        algorithm=ALGORITHM,
        headers={"kid": keyset.current.kid, "typ": "JWT"},
    )
    return token
