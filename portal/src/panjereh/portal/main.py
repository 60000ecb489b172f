"""The portal's application: ``uvicorn panjereh.portal.main:create_app --factory``.

Server-rendered pages behind the gateway (which routes every path it does not own here). The
portal has no database: everything it shows comes from the gateway's public REST API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from panjereh.common.app import create_service_app
from panjereh.common.http import outbound_client
from panjereh.common.lifespan import Resources
from panjereh.portal import catalog, pages, staff
from panjereh.portal.api import Api, ApiProblem
from panjereh.portal.config import Settings
from panjereh.portal.sessions import SessionStore
from panjereh.portal.web import FormRefused, Portal, SignInNeeded, environment, query, visit_of

logger = logging.getLogger("panjereh.portal")

STATIC = Path(__file__).parent / "static"
#: the page's own scripts, styles, images and font only; no inline script or style
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    portal = Portal(
        settings=settings,
        templates=environment(),
        sessions=SessionStore(
            idle_seconds=settings.session_idle_seconds,
            max_seconds=settings.session_max_seconds,
            capacity=settings.session_capacity,
        ),
    )

    async def setup(app: FastAPI, resources: Resources) -> None:
        client = await resources.enter(
            outbound_client(
                base_url=settings.gateway_url,
                timeout=httpx.Timeout(settings.api_timeout_seconds, connect=3.0),
                follow_redirects=False,
            )
        )
        portal.api = Api(client)

    app = create_service_app(
        title="Panjereh portal",
        settings=settings,
        setup=setup,
        routers=[pages.router, staff.router, catalog.router],
    )
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=600)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            response.headers["cache-control"] = "public, max-age=604800"
        elif response.headers.get("content-type", "").startswith("text/html"):
            response.headers["cache-control"] = "no-store"
        return response

    install_pages_for_errors(app)
    return app


def install_pages_for_errors(app: FastAPI) -> None:
    """Errors become pages in the visitor's language (never JSON, never a stack trace)."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return error_page(request, exc.status, exc)

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        visit = visit_of(request)
        if visit.session is not None and visit.session.access_token is None:
            visit.session.flash = visit._(
                "برای دیدن این صفحه وارد شوید.", "Sign in to see this page."
            )
        return RedirectResponse("/login?" + query(next=exc.next_url), status_code=303)

    async def on_form_refused(request: Request, exc: Exception) -> Response:
        return error_page(request, 400, None, refused=True)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code, None)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        return error_page(request, 404, None)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.error("page failed", extra={"path": request.url.path}, exc_info=exc)
        return error_page(request, 500, None)

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(SignInNeeded, on_sign_in)
    app.add_exception_handler(FormRefused, on_form_refused)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)


def error_page(
    request: Request, status: int, problem: ApiProblem | None, *, refused: bool = False
) -> HTMLResponse:
    visit = visit_of(request)
    shown = status if status in {400, 403, 404, 409, 422, 429} else 500
    if problem is not None and problem.code == "api_unreachable":
        shown = 503
    elif problem is not None and status >= 500:
        shown = 502
    try:
        return visit.render(
            "error.html", status=shown, code=shown, problem=problem, refused=refused
        )
    except Exception:  # the error page itself must never fail the visitor
        logger.exception("error page failed")
        return HTMLResponse(
            "<!doctype html><html lang=fa dir=rtl><title>خطا</title><p>خطایی رخ داد.</p></html>",
            status_code=shown,
        )
