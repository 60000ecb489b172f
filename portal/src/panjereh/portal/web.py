"""One visit to the portal: language, session, CSRF, calls to the API, rendering.

Routes take a :data:`VisitDep` and use it for everything that touches the visitor: the page's
language (cookie ``lang``), the server-side session, the CSRF check of a posted form, API
calls with the session's access token (renewed with the refresh token when it has expired),
and the rendered page or redirect (which sets or clears the session cookie as needed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from panjereh.portal import i18n
from panjereh.portal.api import Api, ApiProblem
from panjereh.portal.config import Settings
from panjereh.portal.sessions import COOKIE, Session, SessionStore

TEMPLATES = Path(__file__).parent / "templates"
STATIC_VERSION = "1"
#: a posted form larger than this is refused (the API's own limit is far above any form)
MAX_FORM_BYTES = 256 * 1024
#: renew the access token this many seconds before it expires
RENEW_MARGIN_SECONDS = 20.0


class SignInNeeded(Exception):
    """The page is for signed-in visitors: go to the sign-in page, then come back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class FormRefused(Exception):
    """A posted form without this session's CSRF token (or too large to read)."""


@dataclass
class Portal:
    settings: Settings
    templates: jinja2.Environment
    sessions: SessionStore
    api: Api | None = None
    #: agency code → name, read from the catalog now and then
    agencies: dict[str, Any] | None = None
    agencies_read_at: float = 0.0


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_version"] = STATIC_VERSION
    return env


def safe_next(target: str | None, default: str = "/") -> str:
    """A same-site path to go on to (never another site: ``//host`` and ``/\\host`` are not)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


class Visit:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.portal: Portal = request.app.state.portal
        chosen = request.cookies.get("lang")
        self.lang = chosen if chosen in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
        self.session: Session | None = self.portal.sessions.get(request.cookies.get(COOKIE))
        self._cookie_changed = False

    # ------------------------------------------------------------------ session
    def ensure_session(self) -> Session:
        if self.session is None:
            self.session = self.portal.sessions.create()
            self._cookie_changed = True
        return self.session

    def renew_session(self) -> Session:
        session = self.ensure_session()
        self.portal.sessions.renew(session)
        self._cookie_changed = True
        return session

    def end_session(self) -> None:
        if self.session is not None:
            self.portal.sessions.drop(self.session)
            self.session = None
            self._cookie_changed = True

    @property
    def signed_in(self) -> bool:
        return self.session is not None and self.session.signed_in

    def require_signed_in(self) -> Session:
        if self.session is None or not self.session.signed_in:
            raise SignInNeeded(self.here)
        return self.session

    @property
    def here(self) -> str:
        url = self.request.url
        return url.path + (f"?{url.query}" if url.query else "")

    def flash(self, message: str) -> None:
        self.ensure_session().flash = message

    # ------------------------------------------------------------------ forms
    async def form(self) -> dict[str, str]:
        """The posted form (``application/x-www-form-urlencoded``), its CSRF token checked."""
        body = await self.request.body()
        if len(body) > MAX_FORM_BYTES:
            raise FormRefused
        fields: dict[str, str] = {}
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(key, value)
        if self.session is None or not self.session.csrf_ok(fields.get("csrf")):
            raise FormRefused
        return fields

    # ------------------------------------------------------------------ API
    @property
    def api(self) -> Api:
        api = self.portal.api
        assert api is not None, "the portal's setup opens the API client"
        return api

    @property
    def client_address(self) -> str | None:
        """The visitor's address as the gateway determined it (it overwrites whatever the
        browser sent), passed on so per-address limits count people, not the portal; the
        gateway believes it only when the portal is among its ``trusted_proxies``."""
        forwarded = self.request.headers.get("x-forwarded-for", "")
        return forwarded.rsplit(",", 1)[-1].strip() or None

    async def call(self, method: str, path: str, *, auth: bool = False, **options: Any) -> Any:
        token = await self._token() if auth else None
        address = self.client_address
        if address:
            options["headers"] = {"X-Forwarded-For": address, **(options.get("headers") or {})}
        try:
            return await self.api.call(method, path, lang=self.lang, token=token, **options)
        except ApiProblem as problem:
            if auth and problem.status == 401:
                if self.session is not None:
                    self.session.access_token = None
                raise SignInNeeded(self.here) from problem
            raise

    async def get(self, path: str, *, auth: bool = False, **options: Any) -> Any:
        return (await self.call("GET", path, auth=auth, **options)).body

    async def post(self, path: str, *, auth: bool = False, **options: Any) -> Any:
        return (await self.call("POST", path, auth=auth, **options)).body

    async def _token(self) -> str:
        session = self.require_signed_in()
        if time.monotonic() < session.access_expires_at - RENEW_MARGIN_SECONDS:
            assert session.access_token is not None
            return session.access_token
        if not session.refresh_token:
            session.access_token = None
            raise SignInNeeded(self.here)
        try:
            answer = await self.api.call(
                "POST",
                "/api/v1/auth/token",
                lang=self.lang,
                form={"grant_type": "refresh_token", "refresh_token": session.refresh_token},
            )
        except ApiProblem as problem:
            session.access_token = session.refresh_token = None
            raise SignInNeeded(self.here) from problem
        session.sign_in(answer.body, time.monotonic())
        assert session.access_token is not None
        return session.access_token

    async def agency_names(self) -> dict[str, Any]:
        """Agency code → ``{"fa", "en"}`` name (refreshed every five minutes)."""
        portal = self.portal
        if portal.agencies is None or time.monotonic() - portal.agencies_read_at > 300:
            body = await self.get("/api/v1/catalog/agencies", params={"page_size": 100})
            portal.agencies = {item["code"]: item["name"] for item in body["items"]}
            portal.agencies_read_at = time.monotonic()
        return portal.agencies

    # ------------------------------------------------------------------ answers
    def _(self, fa: str, en: str) -> str:
        return fa if self.lang == "fa" else en

    def context(self) -> dict[str, Any]:
        lang = self.lang
        session = self.session
        flash = None
        if session is not None and session.flash:
            flash, session.flash = session.flash, None
        return {
            "lang": lang,
            "dir": "rtl" if lang == "fa" else "ltr",
            "_": self._,
            "num": lambda value: i18n.number(value, lang),
            "pct": lambda value: i18n.percent(value, lang),
            "dg": lambda value: i18n.digits(value, lang),
            "jdate": lambda value, with_time=False: i18n.date(value, lang, with_time=with_time),
            "iso": i18n.iso_date,
            "txt": lambda value: i18n.text(value, lang),
            "lbl": lambda kind, value: i18n.label(kind, value, lang),
            "session": session,
            "signed_in": self.signed_in,
            "csrf": session.csrf if session is not None else "",
            "here": self.here,
            "quote": lambda value: quote(str(value), safe=""),
            "flash": flash,
            "other_lang": "en" if lang == "fa" else "fa",
        }

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.portal.templates.get_template(template).render(**self.context(), **values)
        response = HTMLResponse(page, status_code=status)
        self._set_cookie(response)
        return response

    def redirect(self, url: str) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        self._set_cookie(response)
        return response

    def _set_cookie(self, response: Response) -> None:
        if not self._cookie_changed:
            return
        secure = self.portal.settings.cookie_secure
        if secure is None:
            forwarded = self.request.headers.get("x-forwarded-proto", "").split(",")[-1].strip()
            secure = (forwarded or self.request.url.scheme) == "https"
        if self.session is None:
            response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
            return
        response.set_cookie(
            COOKIE,
            self.session.id,
            path="/",
            httponly=True,
            secure=secure,
            samesite="lax",
            max_age=self.portal.settings.session_max_seconds,
        )


def visit_of(request: Request) -> Visit:
    visit: Visit | None = getattr(request.state, "visit", None)
    if visit is None:
        visit = Visit(request)
        request.state.visit = visit
    return visit


async def _visit(request: Request) -> Visit:
    # async: FastAPI would run a plain ``def`` dependency in a worker thread
    return visit_of(request)


VisitDep = Annotated[Visit, Depends(_visit)]


def query(**values: Any) -> str:
    """A query string of the values that are set."""
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})
