"""Access-token issuance: ES256 JWTs with the claims every service's verifier expects.

Claims: ``iss``, ``aud``, ``sub`` (a citizen's opaque id, or a client's ``client_id``),
``roles``, ``national_code`` (people), ``agency`` and ``scope`` (clients), ``client_id``
(clients), ``sid`` (people: the refresh-token family, so logout can end it), ``exp`` (10 min by
default), ``nbf``, ``iat``, ``jti``; header ``kid``.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from panjereh.common.jwk import ALGORITHM, b64url
from panjereh.contracts import access
from panjereh.identity.keys import KeySet, KeySource, SigningKeyPair

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
    return _sign(keyset.current, claims)


#: ES256 signatures are the two 32-byte integers r and s, concatenated (RFC 7518 §3.4)
_COORDINATE_BYTES = 32
_ECDSA = ec.ECDSA(hashes.SHA256())


@functools.lru_cache(maxsize=8)
def _encoded_header(kid: str) -> str:
    """A key's JWS header, encoded once: it is the same for every token that key signs."""
    header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
    return b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def _sign(signing_key: SigningKeyPair, claims: dict[str, Any]) -> str:
    """A compact JWS of ``claims`` signed with the loaded key (no PEM parsed per token)."""
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_encoded_header(signing_key.kid)}.{payload}"
    r, s = decode_dss_signature(signing_key.key.sign(signing_input.encode(), _ECDSA))
    signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class _Held:
    token: str = field(repr=False)
    kid: str
    renew_at: datetime


class ReusedToken:
    """A token identity mints for itself (its calls to the broker), reused while it is young.

    A token per call cost an ES256 signature here and, each token being new, a signature
    check at the broker, which remembers a token it has verified until it expires. The token
    is minted again once half its ``lifetime`` has passed, so no call carries one close to
    expiry, and at once when the current signing key changes (a rotation).
    """

    def __init__(
        self,
        mint: Callable[[datetime], Awaitable[str]],
        key_source: KeySource,
        *,
        lifetime: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._mint = mint
        self._key_source = key_source
        self._reuse_for = lifetime / 2
        self._clock = clock
        self._held: _Held | None = None

    async def __call__(self) -> str:
        now = self._clock()
        kid = (await self._key_source.keyset()).current.kid
        held = self._held
        if held is not None and held.kid == kid and now < held.renew_at:
            return held.token
        token = await self._mint(now)
        self._held = _Held(token=token, kid=kid, renew_at=now + self._reuse_for)
        return token
