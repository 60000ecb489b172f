"""OTP login: asking for a code, and exchanging it for tokens (registering on first success).

Both use cases ask the inquiry broker, so they take the ``Database`` and keep every call
outside their units of work:

* :func:`request_otp` asks the mobile registry first, with no transaction open, then in one
  statement takes a per-mobile lock, checks the cooldown and the daily caps under it, stores
  the challenge and queues the SMS.
* :func:`verify_otp` **claims** the challenge in a first unit of work. A right code to a live
  challenge is spent by one statement that takes the per-mobile lock, checks the daily failure
  caps, and marks the challenge consumed only if it is still as it was read (unspent,
  unexpired, the same wrong codes), resetting the daily failure counts; it commits by itself.
  Anything else, and a challenge that changed in between, takes a transaction: it locks the
  row, checks the caps and the code (a wrong code is counted against the challenge and the
  daily caps, and committed: :class:`~panjereh.identity.errors.OtpInvalid` is
  ``KeepChanges``) and marks it consumed. Either way no concurrent request can use it too. A
  known citizen is then signed in (within that transaction when there is one; otherwise by
  one more statement, the code given back if it fails). For a first login the claim is
  committed, the civil registry is **called** with no transaction open, and a second unit of
  work **records** the registration and signs the person in. When the registry cannot
  answer (503 ``civil_registry_unavailable``, retryable) or has no record (422), the claim is
  given back in a short unit of work, so the same code can be sent again while it lives. A
  process that dies between claim and record leaves the code spent: no tokens were issued,
  and the person asks for a new code (fail closed).

Every one of these units of work runs for every login, and each is a few Core statements: they
are sent by the database driver (:meth:`~panjereh.common.db.Database.direct`), without the ORM
session's cost, and a giving back is one statement committed by itself.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from panjereh.common.db import Database, DirectUnit
from panjereh.common.messaging import outbox
from panjereh.contracts.identity import CitizenRegistered
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys, new_otp_code
from panjereh.identity.errors import (
    CivilRegistryUnavailable,
    MobileNotOwned,
    NotInCivilRegistry,
    OtpAlreadyUsed,
    OtpAttemptsExhausted,
    OtpChallengeNotFound,
    OtpExpired,
    OtpInvalid,
    OwnershipCheckUnavailable,
)
from panjereh.identity.inquiries import InquiryClient, InquiryUnavailable, PersonProfile
from panjereh.identity.keys import KeySource
from panjereh.identity.metrics import OTP_EVENTS
from panjereh.identity.models import messaging
from panjereh.identity.repository import (
    ChallengeRepository,
    LockedChallenge,
    NewChallenge,
    SignInRepository,
    give_back,
)
from panjereh.identity.schemas import OtpChallengeRead, TokenPairRead
from panjereh.identity.service import ratelimits, tokens
from panjereh.identity.sms import SmsQueue

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------ OTP request
async def request_otp(
    database: Database,
    *,
    national_code: str,
    mobile: str,
    keys: Keys,
    sms: SmsQueue,
    settings: Settings,
    inquiries: InquiryClient,
    now: datetime,
) -> OtpChallengeRead:
    """Check the pair with the mobile registry, then queue a 6-digit code by SMS.

    The answer is the same whether or not the national code has an account. The broker is
    asked before any unit of work opens, so no connection or lock waits on an agency.
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
        OTP_EVENTS.labels("refused").inc()
        raise MobileNotOwned

    # the code, its hash and the sealed SMS are made before the lock is taken: the lock is
    # held for two statements only
    code = new_otp_code()
    lifetime = timedelta(seconds=settings.otp_lifetime_seconds)
    message = sms.message(
        mobile=mobile,
        template=settings.sms_otp_template,
        tokens=[code],
        now=now,
        valid_for=lifetime,
    )
    challenge = NewChallenge(
        id=challenge_id,
        national_code=national_code,
        code_hash=keys.otp_hash(
            challenge_id=str(challenge_id), national_code=national_code, mobile=mobile, code=code
        ),
        created_at=now,
        expires_at=now + lifetime,
    )
    async with database.direct() as unit:
        # one request per mobile at a time (its lock, taken by the statement below and held
        # until it commits): two racing requests cannot both pass the cooldown. The cooldown
        # again, under the lock; the daily caps count only pairs the registry confirmed (see
        # ratelimits): a stranger naming this national code with other mobiles cannot spend
        # its owner's codes. The lock, the checks, the counts, the challenge and the SMS that
        # carries its code: one statement, which commits by itself
        await ratelimits.send_code(
            unit,
            keys=keys,
            settings=settings,
            national_code=national_code,
            mobile=mobile,
            challenge=challenge,
            message=message,
            now=now,
        )
        unit.after_commit(sms.queued(message, [code]))
    logger.info("otp challenge created", extra={"challenge_id": str(challenge_id)})
    OTP_EVENTS.labels("requested").inc()
    return OtpChallengeRead(
        challenge_id=challenge_id,
        expires_in=settings.otp_lifetime_seconds,
        resend_after=settings.otp_resend_cooldown_seconds,
    )


# ------------------------------------------------------------------------ OTP verify
@dataclass(frozen=True)
class _Claim:
    """A challenge this request consumed; ``consumed_at`` tells this claim from any other."""

    challenge_id: uuid.UUID
    national_code: str = field(repr=False)
    mobile: str = field(repr=False)
    consumed_at: datetime


#: what a wrong, late, spent or unknown code raises
_FAILED_CODE = (OtpInvalid, OtpExpired, OtpAttemptsExhausted, OtpAlreadyUsed, OtpChallengeNotFound)


async def verify_otp(
    database: Database,
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
    try:
        pair = await _verify_otp(
            database,
            challenge_id=challenge_id,
            code=code,
            keys=keys,
            key_source=key_source,
            settings=settings,
            inquiries=inquiries,
            now=now,
        )
    except _FAILED_CODE:
        OTP_EVENTS.labels("failed").inc()
        raise
    OTP_EVENTS.labels("verified").inc()
    return pair


async def _verify_otp(
    database: Database,
    *,
    challenge_id: uuid.UUID,
    code: str,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    inquiries: InquiryClient,
    now: datetime,
) -> TokenPairRead:
    async with database.direct() as unit:
        claim, citizen_id = await _claim(
            unit, challenge_id=challenge_id, code=code, keys=keys, settings=settings, now=now
        )
        sign_in = functools.partial(
            _sign_in, claim=claim, keys=keys, key_source=key_source, settings=settings, now=now
        )
        # spent the locked way, the login commits with the spent code; spent by a statement
        # of its own, the login is one more, and the code is given back if it fails
        if citizen_id is not None and unit.in_transaction:
            return await sign_in(unit, citizen_id=citizen_id)
    if citizen_id is not None:
        try:
            async with database.direct() as unit:
                return await sign_in(unit, citizen_id=citizen_id)
        except BaseException:
            await _give_back(database, claim)
            raise

    # a first login: the civil registry is asked with the claim committed and nothing open
    try:
        profile = await inquiries.person(
            national_code=claim.national_code, reference=str(claim.challenge_id)
        )
    except InquiryUnavailable as exc:
        kept = await _give_back(database, claim)
        raise CivilRegistryUnavailable(code_still_valid=kept) from exc
    except BaseException:
        await _give_back(database, claim)
        raise
    if profile is None or not profile.alive:
        await _give_back(database, claim)
        raise NotInCivilRegistry
    try:
        async with database.direct() as unit:
            return await _register_and_sign_in(
                unit,
                claim=claim,
                profile=profile,
                keys=keys,
                key_source=key_source,
                settings=settings,
                now=now,
            )
    except BaseException:
        await _give_back(database, claim)
        raise


async def _claim(
    unit: DirectUnit,
    *,
    challenge_id: uuid.UUID,
    code: str,
    keys: Keys,
    settings: Settings,
    now: datetime,
) -> tuple[_Claim, uuid.UUID | None]:
    """Lock the challenge, check the code, and consume it (for this request only).

    The id of the citizen of the challenge's national code comes with it (``None`` at a first
    login). A right code is first tried the short way (:func:`_claim_right_code`: a read and
    one statement, committed by itself); anything else, and a challenge that changed in
    between, take this unit's transaction, the challenge locked first.
    """
    quick = await _claim_right_code(
        unit, challenge_id=challenge_id, code=code, keys=keys, settings=settings, now=now
    )
    if quick is not None:
        return quick
    challenges = ChallengeRepository(unit)
    challenge = await challenges.with_citizen_for_update(challenge_id)
    if challenge is None:
        raise OtpChallengeNotFound
    if challenge.consumed_at is not None:
        raise OtpAlreadyUsed
    if challenge.failed_attempts >= settings.otp_max_attempts:
        raise OtpAttemptsExhausted
    if challenge.expires_at <= now:
        raise OtpExpired
    # one check at a time per mobile: racing guesses cannot all slip under the daily cap
    await challenges.lock_mobile(keys.lookup_key("otp-mobile", challenge.mobile))
    person = {"national_code": challenge.national_code, "mobile": challenge.mobile}
    right = _matches(keys, challenge_id, challenge, code)
    # the daily failure caps refuse a right and a wrong code alike, by the same statement;
    # below them a right code is spent there and earlier wrong guesses stop counting (it came
    # from the owner's phone)
    await ratelimits.check_code_against_caps(
        unit,
        challenge_id=challenge_id,
        right=right,
        keys=keys,
        settings=settings,
        now=now,
        **person,
    )
    if not right:
        # counted against the challenge, then the day's caps; committed with the refusal
        failed = await challenges.count_wrong_code(challenge_id)
        await ratelimits.count_failure(unit, keys=keys, settings=settings, now=now, **person)
        logger.info("wrong otp", extra={"challenge_id": str(challenge_id), "failed": failed})
        raise OtpInvalid(attempts_left=settings.otp_max_attempts - failed)
    return _spent(challenge_id, challenge, now), challenge.citizen_id


async def _claim_right_code(
    unit: DirectUnit,
    *,
    challenge_id: uuid.UUID,
    code: str,
    keys: Keys,
    settings: Settings,
    now: datetime,
) -> tuple[_Claim, uuid.UUID | None] | None:
    """:func:`_claim` for a right code to a live challenge, in two statements and no
    transaction: the challenge read without a lock, then (the code checked here) one
    statement that takes the mobile's lock and spends the challenge only if the day's failure
    caps allow it and the challenge is still as it was read. It commits by itself.

    ``None``, having written nothing, for anything else (an unknown, spent, exhausted or
    expired challenge, a wrong code, a challenge that changed since it was read): the locked
    way then answers it as before. 429 at a failure cap, as the locked way would.
    """
    challenge = await ChallengeRepository(unit).with_citizen(challenge_id)
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.failed_attempts >= settings.otp_max_attempts
        or challenge.expires_at <= now
        or not _matches(keys, challenge_id, challenge, code)
    ):
        return None
    spent = await ratelimits.spend_right_code(
        unit,
        challenge_id=challenge_id,
        read_failed=challenge.failed_attempts,
        keys=keys,
        settings=settings,
        national_code=challenge.national_code,
        mobile=challenge.mobile,
        now=now,
    )
    if not spent:
        return None
    return _spent(challenge_id, challenge, now), challenge.citizen_id


def _matches(keys: Keys, challenge_id: uuid.UUID, challenge: LockedChallenge, code: str) -> bool:
    """Whether ``code`` is the challenge's."""
    return keys.otp_matches(
        challenge.code_hash,
        challenge_id=str(challenge_id),
        national_code=challenge.national_code,
        mobile=challenge.mobile,
        code=code,
    )


def _spent(challenge_id: uuid.UUID, challenge: LockedChallenge, now: datetime) -> _Claim:
    """The claim of a challenge this request spent at ``now``."""
    return _Claim(
        challenge_id=challenge_id,
        national_code=challenge.national_code,
        mobile=challenge.mobile,
        consumed_at=now,
    )


async def _give_back(database: Database, claim: _Claim) -> bool:
    """Undo ``claim`` so the code can be sent again while it lives; whether that worked."""
    try:
        return await give_back(database, claim.challenge_id, consumed_at=claim.consumed_at)
    except Exception as exc:
        # the code stays spent (fail closed): the person asks for a new one
        logger.warning(
            "otp claim not given back",
            extra={"challenge_id": str(claim.challenge_id), "error": type(exc).__name__},
        )
        return False


async def _register_and_sign_in(
    unit: DirectUnit,
    *,
    claim: _Claim,
    profile: PersonProfile,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> TokenPairRead:
    """Register the claim's person from the registry profile and sign them in.

    The citizen, its ``identity.citizen.registered`` event, the login session and its first
    refresh token are one statement, sent without a transaction (it commits by itself). First
    logins of one person are serialised by the insert itself (``ON CONFLICT DO NOTHING`` waits
    for a racing insert to commit): one registers the person and publishes the event; any
    other writes nothing there and signs the existing citizen in, in a transaction of its own.
    """
    citizen_id = uuid.uuid4()
    # the event carries the opaque id only: no personal data leaves through Kafka
    registered = outbox.row(
        unit, CitizenRegistered(citizen_id=str(citizen_id)), key=str(citizen_id)
    )
    if registered.table is not messaging.outbox:  # pragma: no cover - bound in the lifespan
        msg = "identity's events go to identity.outbox_message"
        raise RuntimeError(msg)
    pending = tokens.new_session(keys=keys, settings=settings, now=now)
    citizens = SignInRepository(unit)
    staff_roles = await citizens.register_and_start_session(
        {
            "id": citizen_id,
            "national_code": claim.national_code,
            "mobile": claim.mobile,
            "first_name": profile.first_name,
            "last_name": profile.last_name,
            "birth_date": profile.birth_date,
        },
        registered=registered.values,
        session=pending.row,
        now=now,
    )
    if staff_roles is None:
        existing = await citizens.citizen_id(claim.national_code)
        if existing is None:  # pragma: no cover - the conflicting row exists, it was committed
            msg = "a citizen conflicted on its national code and cannot be found"
            raise RuntimeError(msg)
        return await _sign_in(
            unit,
            citizen_id=existing,
            claim=claim,
            keys=keys,
            key_source=key_source,
            settings=settings,
            now=now,
        )
    logger.info("citizen registered", extra={"citizen_id": str(citizen_id)})
    return await tokens.token_pair_of(
        pending,
        citizen_id=citizen_id,
        national_code=claim.national_code,
        staff_roles=staff_roles,
        key_source=key_source,
        settings=settings,
        now=now,
    )


async def _sign_in(
    unit: DirectUnit,
    *,
    citizen_id: uuid.UUID,
    claim: _Claim,
    keys: Keys,
    key_source: KeySource,
    settings: Settings,
    now: datetime,
) -> TokenPairRead:
    """Sign a registered citizen in: the mobile they just proved theirs (and in their name)
    and the login recorded, a new login session and its first token pair. The record, the
    session and the read of the person's staff roles are one statement."""
    pending = tokens.new_session(keys=keys, settings=settings, now=now)
    staff_roles = await SignInRepository(unit).sign_in(
        citizen_id=citizen_id,
        national_code=claim.national_code,
        mobile=claim.mobile,
        session=pending.row,
        now=now,
    )
    return await tokens.token_pair_of(
        pending,
        citizen_id=citizen_id,
        national_code=claim.national_code,
        staff_roles=staff_roles,
        key_source=key_source,
        settings=settings,
        now=now,
    )
