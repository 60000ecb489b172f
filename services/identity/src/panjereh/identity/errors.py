"""Identity's failures, each with a stable ``code`` (RFC 9457, rendered by panjereh.common)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from panjereh.common.db import KeepChanges
from panjereh.common.errors import (
    AppError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Text,
    TooManyRequests,
    ValidationFailed,
)


# ------------------------------------------------------------------------ OTP
class MobileNotOwned(ValidationFailed):
    code = "mobile_not_owned"
    title = Text(
        "این شماره همراه به نام صاحب این کد ملی نیست",
        "This mobile number is not registered to this national code",
    )


class OwnershipCheckUnavailable(ServiceUnavailable):
    code = "ownership_check_unavailable"
    title = Text(
        "بررسی مالکیت شماره همراه اکنون ممکن نیست؛ کمی بعد دوباره تلاش کنید",
        "The mobile ownership check is unavailable; try again shortly",
    )


#: how soon a first login that met a civil-registry outage is worth trying again
CIVIL_REGISTRY_RETRY_SECONDS = 5


class CivilRegistryUnavailable(ServiceUnavailable):
    """A first login could not be completed: the civil registry did not answer.

    Retryable: ``Retry-After`` says when. The detail says whether the code just sent is still
    good (it is, unless giving the claim back failed too; then a new code is needed).
    """

    code = "civil_registry_unavailable"
    title = Text(
        "استعلام ثبت احوال اکنون ممکن نیست؛ کمی بعد دوباره تلاش کنید",
        "The civil registry is unavailable; try again shortly",
    )

    def __init__(self, *, code_still_valid: bool) -> None:
        detail = (
            Text(
                "ثبت‌نام شما کامل نشد؛ کد شما هنوز معتبر است: "
                "چند لحظه بعد همان کد را دوباره بفرستید",
                "Your registration could not be completed; your code is still valid: "
                "send the same code again in a moment",
            )
            if code_still_valid
            else Text(
                "ثبت‌نام شما کامل نشد؛ چند لحظه بعد کد تازه‌ای بگیرید",
                "Your registration could not be completed; ask for a new code in a moment",
            )
        )
        super().__init__(detail, headers={"Retry-After": str(CIVIL_REGISTRY_RETRY_SECONDS)})


class NotInCivilRegistry(AppError):
    status = 422
    code = "civil_registry_no_record"
    title = Text(
        "اطلاعات این کد ملی در ثبت احوال یافت نشد",
        "The civil registry has no living person with this national code",
    )


class RateLimited(TooManyRequests):
    def __init__(self, retry_after: float, detail: Text | None = None) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            detail,
            headers={"Retry-After": str(seconds)},
            extra={"retry_after": seconds},
        )


class OtpResendTooSoon(RateLimited, KeepChanges):
    """Refused, but the attempt still counts against the per-mobile and per-address limits."""

    code = "otp_resend_too_soon"
    title = Text("برای دریافت کد تازه کمی صبر کنید", "Wait a little before asking for a new code")


class OtpRateLimited(RateLimited, KeepChanges):
    """Refused; the hits counted so far stay counted (the window keeps its tally)."""

    code = "otp_rate_limited"
    title = Text(
        "درخواست کد بیش از حد مجاز است؛ بعداً تلاش کنید",
        "Too many code requests; try again later",
    )


class OtpChallengeNotFound(NotFound):
    code = "otp_challenge_not_found"
    title = Text("این درخواست کد یافت نشد", "No such code challenge")


class OtpExpired(AppError):
    status = 410
    code = "otp_expired"
    title = Text("کد منقضی شده است؛ کد تازه بگیرید", "The code has expired; ask for a new one")


class OtpAlreadyUsed(AppError):
    status = 410
    code = "otp_already_used"
    title = Text("این کد قبلاً استفاده شده است", "This code has already been used")


class OtpAttemptsExhausted(AppError):
    status = 410
    code = "otp_attempts_exhausted"
    title = Text(
        "تلاش‌های نادرست بیش از حد بود؛ کد تازه بگیرید",
        "Too many wrong codes; ask for a new one",
    )


class OtpInvalid(AppError, KeepChanges):
    """A wrong code: the try is counted against the challenge (the fifth one kills it)."""

    status = 400
    code = "otp_invalid"
    title = Text("کد وارد شده درست نیست", "The code is not correct")

    def __init__(self, attempts_left: int) -> None:
        super().__init__(extra={"attempts_left": attempts_left})


# ------------------------------------------------------------------------ OAuth 2.0
class OAuthError(AppError):
    """RFC 6749 §5.2: the body also carries ``error`` and ``error_description``."""

    status = 400
    code = "invalid_request"
    title = Text("درخواست توکن نامعتبر است", "Invalid token request")

    def __init__(
        self, description: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        extra: dict[str, Any] = {"error": self.code}
        if description:
            extra["error_description"] = description
        super().__init__(
            Text(self.title.fa, description) if description else None,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
            extra=extra,
        )


class InvalidRequest(OAuthError):
    code = "invalid_request"


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    title = Text("اعتبارنامه ارائه‌شده معتبر نیست", "The grant is invalid, expired or revoked")


class RefreshTokenReplayed(InvalidGrant, KeepChanges):
    """A spent refresh token came back: its whole family is revoked (and stays revoked)."""


class InvalidClient(OAuthError):
    status = 401
    code = "invalid_client"
    title = Text("احراز هویت کلاینت ناموفق بود", "Client authentication failed")

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description, headers={"WWW-Authenticate": 'Basic realm="panjereh"'})


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    title = Text("نوع درخواست توکن پشتیبانی نمی‌شود", "Unsupported grant type")


class InvalidScope(OAuthError):
    code = "invalid_scope"
    title = Text("دامنه دسترسی درخواستی مجاز نیست", "The requested scope is not allowed")


# ------------------------------------------------------------------------ admin
class ClientExists(Conflict):
    code = "client_exists"
    title = Text("کلاینتی با این شناسه وجود دارد", "A client with this id already exists")


class ClientNotFound(NotFound):
    code = "client_not_found"
    title = Text("کلاینت یافت نشد", "No such client")


class CitizenNotFound(NotFound):
    code = "citizen_not_found"
    title = Text("شهروند یافت نشد", "No such citizen")


class SessionNotFound(Forbidden):
    code = "session_not_found"
    title = Text("این نشست متعلق به شما نیست", "This session is not yours")
