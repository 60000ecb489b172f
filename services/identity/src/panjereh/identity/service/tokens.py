"""Access and refresh tokens: sessions, the token endpoint's grants, logout, identity's own token.

A login starts a session (a refresh-token family); each refresh token is spent when exchanged
for the next one, and presenting a spent one again revokes the whole family.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import after_commit
from panjereh.contracts import access
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys, new_opaque_token
from panjereh.identity.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    RefreshTokenReplayed,
    SessionNotFound,
)
from panjereh.identity.keys import KeySource
from panjereh.identity.models import Citizen, MachineClient, RefreshToken, RefreshTokenFamily
from panjereh.identity.repository import (
    CitizenRepository,
    ClientRepository,
    NewSession,
    RefreshTokenRepository,
    StaffRoleRepository,
)
from panjereh.identity.schemas import (
    ClientTokenRead,
    EndedSessionRead,
    EndedSessionsRead,
    TokenPairRead,
)
from panjereh.identity.tokens import TokenPolicy, issue_access_token

logger = logging.getLogger(__name__)

#: identity's own role when it asks the inquiry broker (``service:identity``)
IDENTITY_SERVICE_ROLE = f"{access.SERVICE_PREFIX}identity"
#: Told the id of a session this process just ended (after the commit): its own verifier
#: refuses the session's tokens at once, before its next poll of the list.
SessionEnded = Callable[[str], None]
#: How far back a poll of ended sessions reaches again, for a session ended in a transaction
#: that committed after a later one (its ``revoked_at`` is when it started, not committed).
POLL_OVERLAP = timedelta(seconds=30)
#: The most ended sessions one poll answers; a poller catches up with ``next``.
POLL_LIMIT = 5000


def token_policy(settings: Settings) -> TokenPolicy:
    return TokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=timedelta(seconds=settings.access_token_ttl_seconds),
    )


async def roles_of(session: AsyncSession, national_code: str) -> list[str]:
    """A person's roles: ``citizen``, then the staff roles granted to the national code."""
    return [access.CITIZEN, *await StaffRoleRepository(session).roles_of(national_code)]


@dataclass(frozen=True)
class PendingSession:
    """A login session about to be stored: its row, and the tokens to hand out once it is."""

    row: NewSession
    refresh_token: str = field(repr=False)


def new_session(*, keys: Keys, settings: Settings, now: datetime) -> PendingSession:
    """A new login session (refresh-token family) and its first refresh token, not stored."""
    family_expires_at = now + timedelta(seconds=settings.refresh_family_ttl_seconds)
    refresh_token = new_opaque_token()
    return PendingSession(
        row=NewSession(
            family_id=uuid.uuid4(),
            family_expires_at=family_expires_at,
            token_id=uuid.uuid4(),
            token_hash=keys.token_hash(refresh_token),
            access_token_id=uuid.uuid4().hex,
            token_expires_at=_refresh_token_expiry(
                settings, now=now, family_ends=family_expires_at
            ),
        ),
        refresh_token=refresh_token,
    )


async def token_pair_of(
    pending: PendingSession,
    *,
    citizen_id: uuid.UUID,
    national_code: str,
    staff_roles: Sequence[str],
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> TokenPairRead:
    """The token pair of a session stored for the citizen ``citizen_id`` (who holds
    ``staff_roles``)."""
    return await _token_pair(
        citizen_id=citizen_id,
        national_code=national_code,
        family_id=pending.row.family_id,
        roles=[access.CITIZEN, *staff_roles],
        refresh_token=pending.refresh_token,
        access_token_id=pending.row.access_token_id,
        key_source=key_source,
        settings=settings,
        now=now,
    )


def _refresh_token_expiry(settings: Settings, *, now: datetime, family_ends: datetime) -> datetime:
    """A refresh token lives its own lifetime, never past its family's end."""
    return min(now + timedelta(seconds=settings.refresh_token_ttl_seconds), family_ends)


async def _issue_pair(
    session: AsyncSession,
    *,
    citizen: Citizen,
    family: RefreshTokenFamily,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> TokenPairRead:
    refresh_token = new_opaque_token()
    access_token_id = uuid.uuid4().hex
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            family_id=family.id,
            token_hash=keys.token_hash(refresh_token),
            access_token_id=access_token_id,
            created_at=now,
            expires_at=_refresh_token_expiry(settings, now=now, family_ends=family.expires_at),
        )
    )
    await session.flush()
    return await _token_pair(
        citizen_id=citizen.id,
        national_code=citizen.national_code,
        family_id=family.id,
        roles=await roles_of(session, citizen.national_code),
        refresh_token=refresh_token,
        access_token_id=access_token_id,
        key_source=key_source,
        settings=settings,
        now=now,
    )


async def _token_pair(
    *,
    citizen_id: uuid.UUID,
    national_code: str,
    family_id: uuid.UUID,
    roles: list[str],
    refresh_token: str,
    access_token_id: str,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> TokenPairRead:
    access_token = issue_access_token(
        keyset=await key_source.keyset(),
        policy=token_policy(settings),
        subject=str(citizen_id),
        roles=roles,
        national_code=national_code,
        session_id=str(family_id),
        token_id=access_token_id,
        now=now,
    )
    return TokenPairRead(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
    )


# ------------------------------------------------------------------------ token endpoint
async def refresh_tokens(
    session: AsyncSession,
    *,
    refresh_token: str,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
    session_ended: SessionEnded | None = None,
) -> TokenPairRead:
    """Rotate: the presented token is spent and a new one issued in the same family.

    A spent token presented again means it leaked (or the legitimate client lost a race with
    a thief): the whole family is revoked, so neither party can go on.
    """
    tokens = RefreshTokenRepository(session)
    token = await tokens.by_hash_for_update(keys.token_hash(refresh_token))
    if token is None:
        raise InvalidGrant("unknown refresh token")
    family = await tokens.family_for_update(token.family_id)
    if family is None or family.revoked_at is not None:
        raise InvalidGrant("the session has ended")
    if token.used_at is not None:
        await tokens.revoke_family(family.id, reason="refresh token reused", now=now)
        _announce_end(session, family.id, session_ended)
        logger.warning("refresh token replayed; family revoked", extra={"family": str(family.id)})
        raise RefreshTokenReplayed("refresh token already used; the session is revoked")
    if token.expires_at <= now or family.expires_at <= now:
        raise InvalidGrant("refresh token expired")
    citizen = await CitizenRepository(session).by_id(family.citizen_id)
    if citizen is None:
        raise InvalidGrant("the account no longer exists")
    token.used_at = now
    return await _issue_pair(
        session,
        citizen=citizen,
        family=family,
        keys=keys,
        key_source=key_source,
        settings=settings,
        now=now,
    )


def client_roles(client: MachineClient) -> list[str]:
    """``client:<agency>`` for an agency's client, ``service:<name>`` for a platform service's."""
    prefix = access.CLIENT_PREFIX if client.kind == "agency" else access.SERVICE_PREFIX
    return [f"{prefix}{client.owner}"]


async def client_credentials(
    session: AsyncSession,
    *,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] | None,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> ClientTokenRead:
    client = await ClientRepository(session).get(client_id)
    # hash even for an unknown client, so timing does not tell which client ids exist
    stored = client.secret_hash if client else keys.token_hash("no-such-client")
    if not keys.token_matches(stored, client_secret) or client is None or client.revoked_at:
        # the client id is not personal data; repeated failures are worth an alert
        logger.warning("client authentication failed", extra={"client_id": client_id[:100]})
        raise InvalidClient("client authentication failed")
    granted = list(client.scopes) if scopes is None else list(dict.fromkeys(scopes))
    if not set(granted) <= set(client.scopes):
        raise InvalidScope(
            "the client may not ask for " + " ".join(sorted(set(granted) - set(client.scopes)))
        )
    access_token = issue_access_token(
        keyset=await key_source.keyset(),
        policy=token_policy(settings),
        subject=client.client_id,
        client_id=client.client_id,
        roles=client_roles(client),
        agency=client.owner if client.kind == "agency" else None,
        scopes=granted,
        now=now,
    )
    return ClientTokenRead(
        access_token=access_token,
        expires_in=settings.access_token_ttl_seconds,
        scope=" ".join(granted),
    )


async def own_service_token(*, key_source: KeySource, settings: Settings, now: datetime) -> str:
    """Identity's own ``service:identity`` token, minted locally for calls to the broker."""
    return issue_access_token(
        keyset=await key_source.keyset(),
        policy=token_policy(settings),
        subject=settings.service_client_id,
        client_id=settings.service_client_id,
        roles=[IDENTITY_SERVICE_ROLE],
        scopes=[access.INQUIRIES_SCOPE],
        now=now,
    )


async def logout(
    session: AsyncSession,
    *,
    citizen_id: str,
    access_token_id: str | None,
    refresh_token: str | None,
    keys: Keys,
    now: datetime,
    session_ended: SessionEnded | None = None,
) -> None:
    """End one login: the family of the given refresh token, else of the bearer token.

    Idempotent: logging out of a session that already ended changes nothing.
    """
    tokens = RefreshTokenRepository(session)
    if refresh_token is not None:
        token = await tokens.by_hash_for_update(keys.token_hash(refresh_token))
    elif access_token_id is not None:
        token = await tokens.issued_with(access_token_id)
    else:
        token = None
    if token is None:
        return
    family = await tokens.family_for_update(token.family_id)
    if family is None:
        return
    if str(family.citizen_id) != citizen_id:
        raise SessionNotFound
    await tokens.revoke_family(family.id, reason="logout", now=now)
    _announce_end(session, family.id, session_ended)


def _announce_end(
    session: AsyncSession, family_id: uuid.UUID, session_ended: SessionEnded | None
) -> None:
    if session_ended is not None:
        after_commit(session, lambda: session_ended(str(family_id)))


async def ended_sessions(
    session: AsyncSession, *, since: datetime | None, settings: Settings, now: datetime
) -> EndedSessionsRead:
    """Sessions ended since ``since`` whose access tokens may still be unexpired.

    Every service polls this every few seconds and refuses those tokens (``token_revoked``):
    a logout or a replayed refresh token ends the session everywhere, not only at identity.
    """
    lifetime = timedelta(seconds=settings.access_token_ttl_seconds + settings.jwt_leeway_seconds)
    oldest = now - lifetime
    start = max(since - POLL_OVERLAP, oldest) if since is not None else oldest
    ended = await RefreshTokenRepository(session).ended_since(start, limit=POLL_LIMIT)
    cursor = ended[-1][1] if len(ended) == POLL_LIMIT else now
    return EndedSessionsRead(
        sessions=[
            EndedSessionRead(sid=str(family_id), until=int((revoked_at + lifetime).timestamp()) + 1)
            for family_id, revoked_at in ended
        ],
        next=cursor.isoformat(),
    )
