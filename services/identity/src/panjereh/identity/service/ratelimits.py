"""Limits on OTP login: per client address, per mobile, the resend cooldown, and daily caps.

The daily caps (security review L2) bound how many codes a mobile or a national code is sent,
and how many wrong codes are tried against them, in a 24-hour window: with the defaults at
most 20 wrong guesses a day per person (NIST SP 800-63B allows no more than 100 consecutive
failures), where the per-challenge and hourly limits alone allowed ~600, forever. Counters live
in ``rate_limit_counter`` under HMAC lookup keys, never a plain mobile or national code, and are
counted in units of work that commit even when they refuse (``OtpRateLimited`` is
``KeepChanges``).

**Lockout trade-off.** A cap that anyone can fill locks the owner out. So:

* codes sent are counted only *after* the mobile registry confirmed that the mobile belongs
  to the national code: a stranger naming someone's national code with their own or made-up
  mobiles is refused (422 ``mobile_not_owned``) and burns nothing of that person's caps;
* wrong codes can only be tried against challenges, and a challenge exists only for a
  registry-confirmed pair, whose code went to the owner's phone;
* a correct code resets both failure counts (NIST counts *consecutive* failures), so guesses
  made before the owner signs in do not carry over.

What remains: someone who knows both the national code and the mobile registered to it can
spend that person's caps for the rest of the window (each code they ask for reaches the
owner's phone, so the attack is visible). We accept that: the alternative, letting the right
code through past the failure cap, would leave guessing unbounded. Windows are fixed and
aligned to the epoch, so across a window boundary up to twice a cap can pass (40 wrong codes
with the defaults, still well under 100).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from panjereh.common.db import Database, DirectUnit
from panjereh.identity import repository
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.errors import OtpRateLimited, OtpResendTooSoon
from panjereh.identity.metrics import OTP_EVENTS
from panjereh.identity.repository import (
    ChallengeRepository,
    NewChallenge,
    RateLimitRepository,
    Window,
)

if TYPE_CHECKING:
    from panjereh.identity.sms import QueuedMessage

_DAY = "otp-day"
_FAILED = "otp-failed"


async def count_otp_request(
    database: Database,
    *,
    keys: Keys,
    settings: Settings,
    mobile: str,
    client_ip: str,
    now: datetime,
) -> None:
    """Count this OTP request per client address and per mobile; 429 beyond the limits.

    A unit of work of its own, committed whatever happens next: a refused ownership check must
    still count, or the endpoint becomes an oracle for who owns which number. The address is
    counted first; the mobile only when the address is within its limit; then the resend
    cooldown. Both counts and the cooldown's read are one statement, committed by itself (no
    ``BEGIN``/``COMMIT``), so the hits are counted before any refusal is raised.
    """
    address = Window.of(
        keys.lookup_key("otp-ip", client_ip),
        window_seconds=settings.otp_per_ip_window_seconds,
        now=now,
    )
    by_mobile = Window.of(
        keys.lookup_key("otp-mobile", mobile),
        window_seconds=settings.otp_per_mobile_window_seconds,
        now=now,
    )
    address_limit = settings.otp_per_ip_limit_effective
    counted = await repository.count_otp_request(
        database,
        address=address,
        address_limit=address_limit,
        mobile=by_mobile,
        plain_mobile=mobile,
    )
    if counted.by_address > address_limit:
        _refuse((address.end - now).total_seconds())
    if counted.by_mobile is None or counted.by_mobile > settings.otp_per_mobile_limit:
        _refuse((by_mobile.end - now).total_seconds())
    _enforce_cooldown(counted.latest_sent, settings=settings, now=now)


def _refuse(retry_after: float) -> NoReturn:
    OTP_EVENTS.labels("rate_limited").inc()
    raise OtpRateLimited(retry_after)


def _enforce_cooldown(latest: datetime | None, *, settings: Settings, now: datetime) -> None:
    """429 ``otp_resend_too_soon`` while the last code sent to the mobile is too recent."""
    cooldown = timedelta(seconds=settings.otp_resend_cooldown_seconds)
    if latest is not None and now - latest < cooldown:
        raise OtpResendTooSoon((latest + cooldown - now).total_seconds())


def _buckets(keys: Keys, prefix: str, *, national_code: str, mobile: str) -> tuple[str, str]:
    """The per-mobile and per-national-code counter keys (keyed hashes) under ``prefix``."""
    return (
        keys.lookup_key(f"{prefix}-mobile", mobile),
        keys.lookup_key(f"{prefix}-national-code", national_code),
    )


async def send_code(
    unit: DirectUnit,
    *,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    challenge: NewChallenge,
    message: QueuedMessage,
    now: datetime,
) -> None:
    """Check the cooldown, count a code to send to a registry-confirmed pair, and store its
    challenge and SMS.

    429 within the resend cooldown; 429 once the day's wrong codes are spent (a new code would
    only be guessed at); 429 beyond the daily caps of codes per mobile and per national code.
    The reads, the counts and the inserts are one statement: nothing is counted past the first
    refusal, and the challenge and its SMS are stored only when nothing refused.
    """
    window = settings.otp_daily_window_seconds
    failed_mobile, failed_person = (
        Window.of(bucket, window_seconds=window, now=now)
        for bucket in _buckets(keys, _FAILED, national_code=national_code, mobile=mobile)
    )
    sent_mobile, sent_person = (
        Window.of(bucket, window_seconds=window, now=now)
        for bucket in _buckets(keys, _DAY, national_code=national_code, mobile=mobile)
    )
    counted = await RateLimitRepository(unit).send_code(
        mobile_lock=keys.lookup_key("otp-mobile", mobile),
        plain_mobile=mobile,
        resend_from=now - timedelta(seconds=settings.otp_resend_cooldown_seconds),
        failed_mobile=failed_mobile,
        failed_person=failed_person,
        failure_caps=(
            settings.otp_daily_failures_per_mobile,
            settings.otp_daily_failures_per_national_code,
        ),
        sent_mobile=sent_mobile,
        sent_person=sent_person,
        daily_caps=(
            settings.otp_daily_requests_per_mobile,
            settings.otp_daily_requests_per_national_code,
        ),
        challenge=challenge,
        message=message,
    )
    _enforce_cooldown(counted.latest_sent, settings=settings, now=now)
    retry_after = (sent_mobile.end - now).total_seconds()
    if (
        counted.failed_by_mobile >= settings.otp_daily_failures_per_mobile
        or counted.failed_by_person >= settings.otp_daily_failures_per_national_code
        or counted.sent_to_mobile is None
        or counted.sent_to_mobile > settings.otp_daily_requests_per_mobile
        or counted.sent_to_person is None
        or counted.sent_to_person > settings.otp_daily_requests_per_national_code
    ):
        _refuse(retry_after)
    if not counted.stored:  # pragma: no cover - stored exactly when nothing above refused
        msg = "a code within every limit was not stored"
        raise RuntimeError(msg)


async def count_failure(
    unit: DirectUnit,
    *,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> None:
    """Count one wrong code against the mobile and the person (committed with the refusal)."""
    counters = RateLimitRepository(unit)
    for bucket in _buckets(keys, _FAILED, national_code=national_code, mobile=mobile):
        await counters.hit(bucket, window_seconds=settings.otp_daily_window_seconds, now=now)


def _failure_windows(
    keys: Keys, settings: Settings, *, national_code: str, mobile: str, now: datetime
) -> tuple[Window, Window]:
    """The day's windows of wrong codes, per mobile and per national code."""
    by_mobile, by_person = (
        Window.of(bucket, window_seconds=settings.otp_daily_window_seconds, now=now)
        for bucket in _buckets(keys, _FAILED, national_code=national_code, mobile=mobile)
    )
    return by_mobile, by_person


def _failure_caps(settings: Settings) -> tuple[int, int]:
    return settings.otp_daily_failures_per_mobile, settings.otp_daily_failures_per_national_code


def _refuse_at_failure_caps(
    by_mobile: int, by_person: int, settings: Settings, *, window: Window, now: datetime
) -> None:
    """429 ``otp_rate_limited`` once either count of the day's wrong codes is at its cap."""
    cap_mobile, cap_person = _failure_caps(settings)
    if by_mobile >= cap_mobile or by_person >= cap_person:
        _refuse((window.end - now).total_seconds())


async def check_code_against_caps(
    unit: DirectUnit,
    *,
    challenge_id: uuid.UUID,
    right: bool,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> None:
    """429 ``otp_rate_limited`` once the day's wrong codes for the mobile or person are spent,
    whether the code was right or not (one statement either way, nothing changed). Below the
    caps, the right code spends the challenge and resets both failure counts (NIST counts
    *consecutive* failures: the owner is in), in that same statement."""
    failed_mobile, failed_person = _failure_windows(
        keys, settings, national_code=national_code, mobile=mobile, now=now
    )
    by_mobile, by_person = await ChallengeRepository(unit).check_failures_and_consume(
        challenge_id,
        spend=right,
        now=now,
        failed_mobile=failed_mobile,
        failed_person=failed_person,
        failure_caps=_failure_caps(settings),
    )
    _refuse_at_failure_caps(by_mobile, by_person, settings, window=failed_mobile, now=now)


async def spend_right_code(
    unit: DirectUnit,
    *,
    challenge_id: uuid.UUID,
    read_failed: int,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> bool:
    """:func:`check_code_against_caps` for a right code checked against the challenge as it
    was read without a lock: one statement takes the mobile's lock, reads the day's wrong
    codes after it, and spends the challenge only if it is still as it was read (unspent,
    unexpired, ``read_failed`` wrong codes). 429 ``otp_rate_limited`` at either cap, as
    there; whether the challenge was spent (``False``: it changed since, nothing was written)."""
    failed_mobile, failed_person = _failure_windows(
        keys, settings, national_code=national_code, mobile=mobile, now=now
    )
    by_mobile, by_person, spent = await ChallengeRepository(unit).spend_if_unchanged(
        challenge_id,
        read_failed=read_failed,
        mobile_lock=keys.lookup_key("otp-mobile", mobile),
        mobile=mobile,
        now=now,
        failed_mobile=failed_mobile,
        failed_person=failed_person,
        failure_caps=_failure_caps(settings),
    )
    _refuse_at_failure_caps(by_mobile, by_person, settings, window=failed_mobile, now=now)
    return spent
