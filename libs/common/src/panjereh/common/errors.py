"""RFC 9457 problem details: one error type, rendered once, in Persian or English.

Services raise :class:`AppError` subclasses; they never import ``HTTPException``. The handlers
installed by :func:`install_error_handlers` turn every failure (application errors, request
validation, unknown routes, unexpected exceptions) into ``application/problem+json`` with a
stable machine ``code`` and never a stack trace.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from panjereh.common.fields import FieldError, field_errors
from panjereh.common.negotiation import preferred_language as negotiated_language

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://panjereh.ir/problems/"


class Text:
    """A human-facing message in both languages the platform speaks (``fa`` required)."""

    __slots__ = ("en", "fa")

    def __init__(self, fa: str, en: str) -> None:
        self.fa = fa
        self.en = en

    def pick(self, language: str) -> str:
        return self.en if language == "en" else self.fa


class AppError(Exception):
    """Base of every expected failure. Subclasses set ``status``, ``code`` and ``title``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[Text] = Text("درخواست نامعتبر است", "Bad request")

    def __init__(
        self,
        detail: Text | None = None,
        *,
        errors: Sequence[Mapping[str, str] | FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail.en if detail else self.title.en)
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = Text("یافت نشد", "Not found")


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"
    title = Text("این روش برای این نشانی مجاز نیست", "Method not allowed")


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"
    title = Text("اطلاعات ارسالی معتبر نیست", "Validation failed")


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    title = Text("احراز هویت لازم است", "Authentication required")


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = Text("اجازه این کار را ندارید", "Forbidden")


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = Text("با وضعیت فعلی ناسازگار است", "Conflict")


class IdempotencyKeyReused(Conflict):
    """CONTRACT.md: the same ``Idempotency-Key`` with a different body is refused."""

    code = "idempotency_key_reused"
    title = Text(
        "این کلید یکتایی پیش‌تر با درخواست دیگری به کار رفته است",
        "This Idempotency-Key was already used with a different request",
    )


class InvalidIdempotencyKey(ValidationFailed):
    code = "invalid_idempotency_key"
    title = Text("کلید یکتایی معتبر نیست", "The Idempotency-Key is not valid")


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    title = Text("حجم درخواست بیش از حد مجاز است", "Payload too large")


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"
    title = Text("تعداد درخواست‌ها بیش از حد مجاز است", "Too many requests")


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    title = Text("سرویس موقتاً در دسترس نیست", "Service unavailable")


class InternalError(AppError):
    status = 500
    code = "internal_error"
    title = Text("خطای داخلی رخ داد", "Internal error")


class DatabaseUnavailable(AppError):
    """The database cannot be reached right now (restarting, failing over, out of
    connections). Nothing was done; the same request may be sent again shortly."""

    status = 503
    code = "database_unavailable"
    title = Text(
        "سامانه موقتاً در دسترس نیست؛ کمی بعد دوباره تلاش کنید",
        "Temporarily unavailable; try again shortly",
    )


#: How long a client is asked to wait before retrying after :class:`DatabaseUnavailable`.
DATABASE_RETRY_AFTER_SECONDS = 2

#: Errors that mean "the server went away or cannot take us now", not "the statement was
#: wrong": a lost or refused connection, a server shutting down or starting, no free slot.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.ConnectionDoesNotExistError,  # closed in the middle of an operation
    asyncpg.exceptions.InternalClientError,  # the protocol state after such a loss
    sa_exc.TimeoutError,  # no pooled connection came free in time
    ConnectionError,
    TimeoutError,
)


#: what the driver says when asked to use a connection it knows to be closed
_CLOSED = "connection is closed"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from: causes, contexts, and a DB-API ``orig``."""
    seen: set[int] = set()
    waiting: list[BaseException] = [exc]
    while waiting:
        current = waiting.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        links = (current.__cause__, current.__context__, orig)
        waiting.extend(link for link in links if isinstance(link, BaseException))


def _raised_by_database_driver(exc: BaseException) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(("sqlalchemy.", "asyncpg."))
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or dropped the connection.

    Socket errors and timeouts count only when the database driver raised them, so a failed
    call to another system is never taken for a database outage. That includes a missing
    Unix socket (``FileNotFoundError``): a local server restarting has none for a moment."""
    for cause in _causes(exc):
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, OSError):
            if _raised_by_database_driver(cause):
                return True
            continue
        if isinstance(cause, _UNAVAILABLE):
            return True
        if isinstance(cause, asyncpg.InterfaceError) and _CLOSED in str(cause):
            # the driver's own word for a connection it found closed before sending (the
            # server ended it while it was idle, or a statement before lost it)
            return True
    return False


_STATUS_ERRORS: dict[int, type[AppError]] = {
    400: AppError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def preferred_language(request: Request) -> str:
    """``en`` when the client prefers English over Persian, else ``fa`` (the default)."""
    return negotiated_language(request.headers.get("accept-language"))


def problem_response(request: Request, error: AppError) -> JSONResponse:
    language = preferred_language(request)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title.pick(language),
        "status": error.status,
        "detail": (error.detail or error.title).pick(language),
        "code": error.code,
        "instance": request.url.path,
    }
    if error.errors:
        body["errors"] = [_rendered(entry, language) for entry in error.errors]
    body.update(error.extra)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(
        body,
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers={**error.headers, "Content-Language": language},
    )


def _rendered(entry: Mapping[str, str] | FieldError, language: str) -> dict[str, str]:
    if isinstance(entry, FieldError):
        return entry.render(language)
    rendered = dict(entry)
    rendered.setdefault("code", "invalid")
    return rendered


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure of ``app`` as problem+json."""

    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return problem_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = ValidationFailed(
            Text("برخی فیلدها معتبر نیستند", "Some fields are not valid"),
            errors=field_errors(exc.errors(), preferred_language(request)),
        )
        return problem_response(request, error)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error_type = _STATUS_ERRORS.get(exc.status_code, AppError)
        error = error_type(headers=exc.headers)
        if error_type is AppError and exc.status_code != 400:
            # an unusual status raised by the framework: keep its number, generic wording
            error = _with_status(exc.status_code)
        return problem_response(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            # one line, no trace: an outage is an operational event, not a bug
            logger.warning(
                "database unavailable: %s",
                type(exc).__name__,
                extra={"route": getattr(request.scope.get("route"), "path", "")},
            )
            unavailable = DatabaseUnavailable(
                headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
            )
            return problem_response(request, unavailable)
        logger.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return problem_response(request, InternalError())

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _with_status(status: int) -> AppError:
    error_class: type[AppError] = type(
        f"HttpError{status}", (AppError,), {"status": status, "code": f"http_{status}"}
    )
    return error_class()
