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

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.errors import OtpRateLimited, OtpResendTooSoon
from panjereh.identity.metrics import OTP_EVENTS
from panjereh.identity.repository import ChallengeRepository, RateLimitRepository

_DAY = "otp-day"
_FAILED = "otp-failed"


async def count_otp_request(
    session: AsyncSession,
    *,
    keys: Keys,
    settings: Settings,
    mobile: str,
    client_ip: str,
    now: datetime,
) -> None:
    """Count this OTP request per client address and per mobile; 429 beyond the limits.

    Run in a unit of work of its own, committed whatever happens next: a refused ownership
    check must still count, or the endpoint becomes an oracle for who owns which number. The
    refusals are ``KeepChanges``: the hits counted so far stay counted.
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
            OTP_EVENTS.labels("rate_limited").inc()
            raise OtpRateLimited(retry_after)
    await enforce_cooldown(session, mobile=mobile, settings=settings, now=now)


async def enforce_cooldown(
    session: AsyncSession, *, mobile: str, settings: Settings, now: datetime
) -> None:
    """429 ``otp_resend_too_soon`` while the last code sent to ``mobile`` is too recent."""
    cooldown = timedelta(seconds=settings.otp_resend_cooldown_seconds)
    latest = await ChallengeRepository(session).latest_sent_to(mobile)
    if latest is not None and now - latest < cooldown:
        raise OtpResendTooSoon((latest + cooldown - now).total_seconds())


def _buckets(keys: Keys, prefix: str, *, national_code: str, mobile: str) -> tuple[str, str]:
    """The per-mobile and per-national-code counter keys (keyed hashes) under ``prefix``."""
    return (
        keys.lookup_key(f"{prefix}-mobile", mobile),
        keys.lookup_key(f"{prefix}-national-code", national_code),
    )


async def count_code_sent(
    session: AsyncSession,
    *,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> None:
    """Count a code about to be sent to a registry-confirmed pair; 429 beyond the daily caps.

    Refused, too, once the day's wrong codes are spent: a new code would only be guessed at.
    """
    await enforce_failure_caps(
        session, keys=keys, settings=settings, national_code=national_code, mobile=mobile, now=now
    )
    counters = RateLimitRepository(session)
    by_mobile, by_national_code = _buckets(keys, _DAY, national_code=national_code, mobile=mobile)
    window = settings.otp_daily_window_seconds
    for bucket, limit in (
        (by_mobile, settings.otp_daily_requests_per_mobile),
        (by_national_code, settings.otp_daily_requests_per_national_code),
    ):
        hits, retry_after = await counters.hit(bucket, window_seconds=window, now=now)
        if hits > limit:
            OTP_EVENTS.labels("rate_limited").inc()
            raise OtpRateLimited(retry_after)


async def enforce_failure_caps(
    session: AsyncSession,
    *,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> None:
    """429 ``otp_rate_limited`` once the day's wrong codes for the mobile or person are spent."""
    buckets = _buckets(keys, _FAILED, national_code=national_code, mobile=mobile)
    # both counts in one query: this runs on every OTP request and every code checked
    counts, retry_after = await RateLimitRepository(session).hits_of(
        buckets, window_seconds=settings.otp_daily_window_seconds, now=now
    )
    limits = (settings.otp_daily_failures_per_mobile, settings.otp_daily_failures_per_national_code)
    if any(hits >= limit for hits, limit in zip(counts, limits, strict=True)):
        OTP_EVENTS.labels("rate_limited").inc()
        raise OtpRateLimited(retry_after)


async def count_failure(
    session: AsyncSession,
    *,
    keys: Keys,
    settings: Settings,
    national_code: str,
    mobile: str,
    now: datetime,
) -> None:
    """Count one wrong code against the mobile and the person (committed with the refusal)."""
    counters = RateLimitRepository(session)
    for bucket in _buckets(keys, _FAILED, national_code=national_code, mobile=mobile):
        await counters.hit(bucket, window_seconds=settings.otp_daily_window_seconds, now=now)


async def forget_failures(
    session: AsyncSession, *, keys: Keys, national_code: str, mobile: str
) -> None:
    """A correct code: the owner is in, earlier wrong codes no longer count against them."""
    await RateLimitRepository(session).forget(
        _buckets(keys, _FAILED, national_code=national_code, mobile=mobile)
    )
