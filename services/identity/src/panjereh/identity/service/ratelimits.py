"""Limits on OTP requests: per client address, per mobile, and the resend cooldown."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.errors import OtpRateLimited, OtpResendTooSoon
from panjereh.identity.metrics import OTP_EVENTS
from panjereh.identity.repository import ChallengeRepository, RateLimitRepository


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
