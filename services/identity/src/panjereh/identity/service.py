"""Identity's use cases: OTP login and registration, tokens, staff roles, machine clients.

Plain async functions with keyword-only arguments. They ``add`` and ``flush``; the unit of
work that opened the session commits (or, for errors marked :class:`KeepsChanges`, commits
and then answers with the error).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging import outbox
from panjereh.contracts.identity import CitizenRegistered
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys, new_opaque_token, new_otp_code
from panjereh.identity.errors import (
    CitizenNotFound,
    CivilRegistryUnavailable,
    ClientExists,
    ClientNotFound,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    MobileNotOwned,
    NotInCivilRegistry,
    OtpAlreadyUsed,
    OtpAttemptsExhausted,
    OtpChallengeNotFound,
    OtpExpired,
    OtpInvalid,
    OtpRateLimited,
    OtpResendTooSoon,
    OwnershipCheckUnavailable,
    RefreshTokenReplayed,
    SessionNotFound,
)
from panjereh.identity.inquiries import InquiryClient, InquiryUnavailable
from panjereh.identity.keys import KeySource
from panjereh.identity.models import (
    Citizen,
    MachineClient,
    OtpChallenge,
    RefreshToken,
    RefreshTokenFamily,
)
from panjereh.identity.repository import (
    ChallengeRepository,
    CitizenRepository,
    ClientRepository,
    HousekeepingRepository,
    RateLimitRepository,
    RefreshTokenRepository,
    SmsRepository,
    StaffRoleRepository,
)
from panjereh.identity.schemas import (
    CitizenRead,
    ClientCreate,
    ClientRead,
    ClientTokenRead,
    ClientWithSecret,
    DevSmsList,
    DevSmsRead,
    OtpChallengeRead,
    StaffRolesRead,
    TokenPairRead,
)
from panjereh.identity.sms import enqueue
from panjereh.identity.tokens import TokenPolicy, issue_access_token

logger = logging.getLogger(__name__)

CITIZEN_ROLE = "citizen"


def token_policy(settings: Settings) -> TokenPolicy:
    return TokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=timedelta(seconds=settings.access_token_ttl_seconds),
    )


# ------------------------------------------------------------------------ OTP request
async def enforce_otp_rate_limits(
    session: AsyncSession,
    *,
    keys: Keys,
    settings: Settings,
    mobile: str,
    client_ip: str,
    now: datetime,
) -> None:
    """Count this OTP request per mobile and per client address; 429 beyond the limits.

    Run in its own unit of work, committed whatever happens next: a refused ownership check
    must still count, or the endpoint becomes an oracle for who owns which number.
    """
    counters = RateLimitRepository(session)
    checks = (
        (
            keys.lookup_key("otp-ip", client_ip),
            settings.otp_per_ip_limit_effective,
            settings.otp_per_ip_window_seconds,
        ),
        (
            keys.lookup_key("otp-mobile", mobile),
            settings.otp_per_mobile_limit,
            settings.otp_per_mobile_window_seconds,
        ),
    )
    for bucket, limit, window in checks:
        hits, retry_after = await counters.hit(bucket, window_seconds=window, now=now)
        if hits > limit:
            raise OtpRateLimited(retry_after)
    await _enforce_cooldown(session, mobile=mobile, settings=settings, now=now)


async def _enforce_cooldown(
    session: AsyncSession, *, mobile: str, settings: Settings, now: datetime
) -> None:
    cooldown = timedelta(seconds=settings.otp_resend_cooldown_seconds)
    latest = await ChallengeRepository(session).latest_sent_to(mobile)
    if latest is not None and now - latest < cooldown:
        raise OtpResendTooSoon((latest + cooldown - now).total_seconds())


async def request_otp(
    session: AsyncSession,
    *,
    national_code: str,
    mobile: str,
    keys: Keys,
    settings: Settings,
    inquiries: InquiryClient,
    now: datetime,
) -> OtpChallengeRead:
    """Check the pair with the mobile registry, then queue a 6-digit code by SMS.

    The answer is the same whether or not the national code has an account. The broker is
    asked before this session touches the database, so no connection waits on an agency.
    """
    challenge_id = uuid.uuid4()
    try:
        owned = await inquiries.mobile_belongs_to(
            national_code=national_code, mobile=mobile, reference=str(challenge_id)
        )
    except InquiryUnavailable as exc:
        # fail closed: never send a code to a pair nobody vouched for
        raise OwnershipCheckUnavailable from exc
    if not owned:
        raise MobileNotOwned

    # one request per mobile at a time: two racing requests cannot both pass the cooldown
    challenges = ChallengeRepository(session)
    await challenges.lock_mobile(keys.lookup_key("otp-mobile", mobile))
    await _enforce_cooldown(session, mobile=mobile, settings=settings, now=now)

    code = new_otp_code()
    lifetime = timedelta(seconds=settings.otp_lifetime_seconds)
    session.add(
        OtpChallenge(
            id=challenge_id,
            national_code=national_code,
            mobile=mobile,
            code_hash=keys.otp_hash(
                challenge_id=str(challenge_id),
                national_code=national_code,
                mobile=mobile,
                code=code,
            ),
            failed_attempts=0,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    enqueue(
        session,
        keys=keys,
        mobile=mobile,
        template=settings.sms_otp_template,
        tokens=[code],
        now=now,
        valid_for=lifetime,
    )
    await session.flush()
    logger.info("otp challenge created", extra={"challenge_id": str(challenge_id)})
    return OtpChallengeRead(
        challenge_id=challenge_id,
        expires_in=settings.otp_lifetime_seconds,
        resend_after=settings.otp_resend_cooldown_seconds,
    )


# ------------------------------------------------------------------------ OTP verify
async def verify_otp(
    session: AsyncSession,
    *,
    challenge_id: uuid.UUID,
    code: str,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    inquiries: InquiryClient,
    now: datetime,
) -> TokenPairRead:
    """Spend the challenge, register the citizen on first success, and issue tokens."""
    challenge = await ChallengeRepository(session).for_update(challenge_id)
    if challenge is None:
        raise OtpChallengeNotFound
    if challenge.consumed_at is not None:
        raise OtpAlreadyUsed
    if challenge.failed_attempts >= settings.otp_max_attempts:
        raise OtpAttemptsExhausted
    if challenge.expires_at <= now:
        raise OtpExpired
    if not keys.otp_matches(
        challenge.code_hash,
        challenge_id=str(challenge.id),
        national_code=challenge.national_code,
        mobile=challenge.mobile,
        code=code,
    ):
        challenge.failed_attempts += 1
        await session.flush()
        logger.info(
            "wrong otp",
            extra={"challenge_id": str(challenge.id), "failed": challenge.failed_attempts},
        )
        raise OtpInvalid(attempts_left=settings.otp_max_attempts - challenge.failed_attempts)
    challenge.consumed_at = now

    citizen = await CitizenRepository(session).by_national_code(challenge.national_code)
    if citizen is None:
        citizen = await _register(
            session,
            national_code=challenge.national_code,
            mobile=challenge.mobile,
            reference=str(challenge.id),
            inquiries=inquiries,
            now=now,
        )
    else:
        # the person just proved this mobile is theirs and in their name
        citizen.mobile = challenge.mobile
        citizen.last_login_at = now
    family = RefreshTokenFamily(
        id=uuid.uuid4(),
        citizen_id=citizen.id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_family_ttl_seconds),
    )
    session.add(family)
    await session.flush()
    return await _issue_pair(
        session,
        citizen=citizen,
        family=family,
        keys=keys,
        key_source=key_source,
        settings=settings,
        now=now,
    )


async def _register(
    session: AsyncSession,
    *,
    national_code: str,
    mobile: str,
    reference: str,
    inquiries: InquiryClient,
    now: datetime,
) -> Citizen:
    try:
        profile = await inquiries.person(national_code=national_code, reference=reference)
    except InquiryUnavailable as exc:
        raise CivilRegistryUnavailable from exc
    if profile is None or not profile.alive:
        raise NotInCivilRegistry
    citizen = Citizen(
        id=uuid.uuid4(),
        national_code=national_code,
        mobile=mobile,
        first_name=profile.first_name,
        last_name=profile.last_name,
        birth_date=profile.birth_date,
        registered_at=now,
        last_login_at=now,
    )
    session.add(citizen)
    await session.flush()
    await _citizen_registered(session, citizen)
    logger.info("citizen registered", extra={"citizen_id": str(citizen.id)})
    return citizen


async def _citizen_registered(session: AsyncSession, citizen: Citizen) -> None:
    """Publish ``identity.citizen.registered`` through the outbox (no personal data)."""
    citizen_id = str(citizen.id)
    await outbox.add(session, CitizenRegistered(citizen_id=citizen_id), key=citizen_id)


async def _roles_of(session: AsyncSession, national_code: str) -> list[str]:
    return [CITIZEN_ROLE, *await StaffRoleRepository(session).roles_of(national_code)]


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
            expires_at=min(
                now + timedelta(seconds=settings.refresh_token_ttl_seconds), family.expires_at
            ),
        )
    )
    await session.flush()
    access_token = issue_access_token(
        keyset=await key_source.keyset(),
        policy=token_policy(settings),
        subject=str(citizen.id),
        roles=await _roles_of(session, citizen.national_code),
        national_code=citizen.national_code,
        session_id=str(family.id),
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
    return [f"client:{client.owner}" if client.kind == "agency" else f"service:{client.owner}"]


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
        roles=["service:identity"],
        scopes=["inquiries"],
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


# ------------------------------------------------------------------------ me
def _citizen_uuid(subject: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(subject)
    except ValueError:
        return None


async def me(session: AsyncSession, *, citizen_id: str) -> CitizenRead:
    key = _citizen_uuid(citizen_id)
    citizen = await CitizenRepository(session).by_id(key) if key else None
    if citizen is None:
        raise CitizenNotFound
    return CitizenRead(
        national_code=citizen.national_code,
        first_name=citizen.first_name,
        last_name=citizen.last_name,
        birth_date=citizen.birth_date,
        mobile=citizen.mobile,
        registered_at=citizen.registered_at,
        roles=await _roles_of(session, citizen.national_code),
    )


# ------------------------------------------------------------------------ staff
async def set_staff_roles(
    session: AsyncSession, *, national_code: str, roles: Sequence[str], granted_by: str
) -> StaffRolesRead:
    wanted = sorted(set(roles))
    repository = StaffRoleRepository(session)
    await repository.replace(national_code, wanted, granted_by)
    logger.info("staff roles set", extra={"by": granted_by, "roles": wanted})
    return StaffRolesRead(
        national_code=national_code, roles=await repository.roles_of(national_code)
    )


# ------------------------------------------------------------------------ machine clients
def _client_read(client: MachineClient) -> ClientRead:
    return ClientRead(
        client_id=client.client_id,
        agency=client.owner if client.kind == "agency" else None,
        service=client.owner if client.kind == "service" else None,
        scopes=list(client.scopes),
        created_at=client.created_at,
        revoked_at=client.revoked_at,
    )


async def create_client(
    session: AsyncSession,
    *,
    spec: ClientCreate,
    keys: Keys,
    now: datetime,
    secret: str | None = None,
) -> ClientWithSecret:
    """A new client; its secret is returned this once and only its hash is kept."""
    kind, owner = ("agency", spec.agency) if spec.agency else ("service", spec.service)
    assert owner is not None  # guaranteed by ClientCreate
    client_id = spec.client_id or f"{kind}-{owner}-{uuid.uuid4().hex[:8]}"
    repository = ClientRepository(session)
    if await repository.get(client_id) is not None:
        raise ClientExists
    secret = secret or new_opaque_token()
    client = MachineClient(
        client_id=client_id,
        kind=kind,
        owner=owner,
        scopes=sorted(set(spec.scopes)),
        secret_hash=keys.token_hash(secret),
        created_at=now,
    )
    session.add(client)
    await session.flush()
    return ClientWithSecret(**_client_read(client).model_dump(), client_secret=secret)


async def list_clients(session: AsyncSession) -> list[ClientRead]:
    return [_client_read(client) for client in await ClientRepository(session).all()]


async def rotate_client_secret(
    session: AsyncSession, *, client_id: str, keys: Keys, now: datetime
) -> ClientWithSecret:
    client = await ClientRepository(session).for_update(client_id)
    if client is None or client.revoked_at is not None:
        raise ClientNotFound
    secret = new_opaque_token()
    client.secret_hash = keys.token_hash(secret)
    client.secret_rotated_at = now
    await session.flush()
    return ClientWithSecret(**_client_read(client).model_dump(), client_secret=secret)


async def revoke_client(session: AsyncSession, *, client_id: str, now: datetime) -> None:
    client = await ClientRepository(session).for_update(client_id)
    if client is None:
        raise ClientNotFound
    if client.revoked_at is None:
        client.revoked_at = now
        await session.flush()


# ------------------------------------------------------------------------ dev
async def dev_sms_outbox(session: AsyncSession, *, mobile: str) -> DevSmsList:
    rows = await SmsRepository(session).dev_outbox(mobile)
    return DevSmsList(
        items=[
            DevSmsRead(
                mobile=row.mobile,
                template=row.template,
                tokens=list(row.tokens),
                text=row.text,
                sent_at=row.sent_at,
            )
            for row in rows
        ]
    )


# ------------------------------------------------------------------------ notifications
#: How a request status reads in an SMS (CONTRACT.md, "Requests" statuses)
STATUS_TEXTS = {
    "submitted": "ثبت شد",
    "awaiting_inquiries": "در انتظار استعلام",
    "deciding": "در حال تصمیم‌گیری",
    "in_review": "در حال بررسی کارشناس",
    "approved": "تأیید شد",
    "rejected": "رد شد",
    "cancelled": "لغو شد",
    "failed": "ناموفق ماند",
}
#: a status SMS that could not be delivered in a day is no longer news
STATUS_SMS_VALIDITY = timedelta(days=1)


async def notify_status_change(
    session: AsyncSession,
    *,
    citizen_id: str | None,
    tracking_code: str,
    to_status: str,
    keys: Keys,
    settings: Settings,
    now: datetime,
) -> bool:
    """Queue the citizen's Persian SMS about a request's new status; whether one was queued.

    Called inside the consumer's unit of work, whose inbox row makes it once per event.
    """
    if citizen_id is None:
        logger.warning(
            "status change names no citizen; no SMS", extra={"tracking_code": tracking_code}
        )
        return False
    key = _citizen_uuid(citizen_id)
    citizen = await CitizenRepository(session).by_id(key) if key else None
    if citizen is None:
        logger.warning(
            "status change for an unknown citizen", extra={"tracking_code": tracking_code}
        )
        return False
    enqueue(
        session,
        keys=keys,
        mobile=citizen.mobile,
        template=settings.sms_status_template,
        tokens=[tracking_code, STATUS_TEXTS.get(to_status, to_status)],
        now=now,
        valid_for=STATUS_SMS_VALIDITY,
    )
    await session.flush()
    return True


# ------------------------------------------------------------------------ housekeeping
#: how long spent challenges, settled SMS and ended sessions are kept (for support questions)
RETENTION = timedelta(days=7)


async def prune(session: AsyncSession, *, now: datetime) -> None:
    await HousekeepingRepository(session).prune(now=now, keep=RETENTION)
