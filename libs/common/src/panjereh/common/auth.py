"""Access-token verification: ES256 JWTs issued by identity, checked against its JWKS.

A service creates one :class:`TokenVerifier` in its setup (``await
resources.enter(install_auth(app, settings))``) and its endpoints ask for the caller through the
typed dependencies below: ``CurrentPrincipal``, ``OptionalPrincipal``, and the factories
``require_role``, ``require_any_role``, ``require_qualified_role``, ``require_scope``,
``require_role_with_claim`` and ``require_that``.

The kernel knows no role names and no domain claims: which roles exist and what a claim such as
the subject's national code means is the platform's vocabulary (``panjereh.contracts.access``).
Roles may be qualified (``<role>:<qualifier>``, e.g. an office and the unit it is held in).

Every failure is problem+json: 401 with ``WWW-Authenticate: Bearer`` when the token is missing
or not acceptable, 403 when it is acceptable but lacks the role or scope.

A token whose login session identity has ended (logout, a refresh token replayed) is refused
with 401 ``token_revoked`` within seconds, by every process: :class:`RevokedSessions` polls
identity's list of recently ended sessions (``sid`` claims) every couple of seconds and keeps
each one until the last access token of that session has expired anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTError

from panjereh.common.errors import Forbidden, ServiceUnavailable, Text, Unauthorized
from panjereh.common.settings import ServiceSettings

logger = logging.getLogger(__name__)

#: The only algorithms a token may be signed with. Never derived from the token itself:
#: that is what keeps ``alg: none`` and HS256-with-the-public-key out.
ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256",)
#: Longer tokens are refused before any parsing.
MAX_TOKEN_BYTES = 8192

#: The claim naming the login session a token belongs to (RFC 9068 / OpenID ``sid``).
SESSION_CLAIM = "sid"
#: Where identity lists recently ended sessions, beside its JWKS.
JWKS_PATH = "/.well-known/jwks.json"
REVOKED_SESSIONS_PATH = "/.well-known/revoked-sessions"

#: The longest an accepted token's verdict is reused without checking its signature again
#: (the gateway's edge cache keeps the same bound); never past the token's ``exp``.
REMEMBER_SECONDS = 60.0
#: Distinct tokens remembered at most; past that the memory starts again.
REMEMBER_CAPACITY = 10_000

#: Claims the verifier reads itself; every other string claim lands in ``Principal.claims``.
REGISTERED_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "sub", "jti", "roles", "scope"})


# ------------------------------------------------------------------------------------ errors
def _bearer_challenge(error: str | None = None, **params: str) -> dict[str, str]:
    parts = ['Bearer realm="panjereh"']
    if error:
        parts.append(f'error="{error}"')
    parts.extend(f'{name}="{value}"' for name, value in params.items())
    return {"WWW-Authenticate": ", ".join(parts)}


class TokenMissing(Unauthorized):
    code = "token_missing"
    title = Text("توکن دسترسی ارسال نشده است", "An access token is required")

    def __init__(self) -> None:
        super().__init__(headers=_bearer_challenge())


class TokenInvalid(Unauthorized):
    code = "token_invalid"
    title = Text("توکن دسترسی معتبر نیست", "The access token is not valid")

    def __init__(self, detail: Text | None = None) -> None:
        super().__init__(detail, headers=_bearer_challenge("invalid_token"))


class TokenExpired(TokenInvalid):
    code = "token_expired"
    title = Text("توکن دسترسی منقضی شده است", "The access token has expired")


class TokenRevoked(TokenInvalid):
    code = "token_revoked"
    title = Text("نشست این توکن پایان یافته است", "The session of this access token has ended")


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = Text("دامنه دسترسی کافی نیست", "The token lacks a required scope")

    def __init__(self, scope: str) -> None:
        super().__init__(headers=_bearer_challenge("insufficient_scope", scope=scope))


class SigningKeysUnavailable(ServiceUnavailable):
    code = "signing_keys_unavailable"
    title = Text("کلیدهای امضای توکن در دسترس نیستند", "The token signing keys are not available")


# --------------------------------------------------------------------------------- principal
@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject, roles, scopes and other claims."""

    subject: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: datetime | None = None
    #: Other string claims of the token. They may be personal data (a national code), so they
    #: are kept out of ``repr`` and never reach logs.
    claims: Mapping[str, str] = field(default_factory=dict, repr=False)

    def claim(self, name: str) -> str | None:
        return self.claims.get(name)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_any_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    def has_qualified_role(self, role: str, qualifier: str) -> bool:
        """``has_qualified_role("officer", "tax")`` ⇔ the token carries ``officer:tax``."""
        return f"{role}:{qualifier}" in self.roles

    def qualifiers_of(self, role: str) -> frozenset[str]:
        """Where this principal holds ``role`` (``officer:tax`` → ``tax``)."""
        prefix = f"{role}:"
        return frozenset(r[len(prefix) :] for r in self.roles if r.startswith(prefix))

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


_MALFORMED = Text("ادعاهای توکن نادرست است", "The token claims are malformed")


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Build a :class:`Principal` from verified claims; malformed claims are ``TokenInvalid``."""
    subject = claims.get("sub")
    roles = claims.get("roles", [])
    scope = claims.get("scope", "")
    jti = claims.get("jti")
    if (
        not isinstance(subject, str)
        or not subject
        or not isinstance(roles, list)
        or not all(isinstance(role, str) for role in roles)
        or not isinstance(scope, str)
        or not isinstance(jti, str | None)
    ):
        raise TokenInvalid(_MALFORMED)
    extra = {name: value for name, value in claims.items() if name not in REGISTERED_CLAIMS}
    if not all(isinstance(value, str | None) for value in extra.values()):
        raise TokenInvalid(_MALFORMED)
    return Principal(
        subject=subject,
        roles=frozenset(roles),
        scopes=frozenset(scope.split()),
        token_id=jti,
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC) if "exp" in claims else None,
        claims={name: value for name, value in extra.items() if isinstance(value, str)},
    )


# -------------------------------------------------------------------------------- JWKS cache
class JwksCache:
    """Identity's public signing keys by ``kid``, fetched over HTTP.

    Keys are refetched when older than ``ttl`` and when a token names an unknown ``kid`` (a
    key rotation), but never more often than once per ``refetch_interval``: a flood of tokens
    with random ``kid``s costs identity at most one request per interval. A failed refresh
    keeps the keys already known, for at most ``max_stale`` seconds after the last successful
    fetch: past that, verification fails closed (503), so a key identity withdrew does not stay
    trusted forever by a service that cannot reach it.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        ttl: float = 300.0,
        refetch_interval: float = 30.0,
        max_stale: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._ttl = ttl
        self._max_stale = max(max_stale, ttl)
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        #: Number of HTTP fetches made (for observability and tests).
        self.fetches = 0

    async def get(self, kid: str) -> Key | None:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._ttl:
            await self._refresh(reason="expired")
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(reason="unknown_kid")
            key = self._keys.get(kid)
        fetched_at = self._fetched_at
        if not self._keys or fetched_at is None or self._clock() - fetched_at > self._max_stale:
            raise SigningKeysUnavailable
        return key

    async def _refresh(self, *, reason: str) -> None:
        attempted_before = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted_before:
                return  # another task refreshed while this one waited
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._refetch_interval:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                response = await self._client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning(
                    "signing keys could not be fetched",
                    extra={"jwks_url": self.url, "reason": reason, "error": type(exc).__name__},
                )
                if not self._keys:
                    raise SigningKeysUnavailable from exc
                return
            self._keys = keys
            self._fetched_at = now


def _parse_jwks(document: Any) -> dict[str, Key]:
    """Usable ES256 verification keys from a JWK Set; anything else in it is skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        msg = "not a JWK Set"
        raise ValueError(msg)
    keys: dict[str, Key] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if (
            not isinstance(kid, str)
            or entry.get("kty") != "EC"
            or entry.get("crv") != "P-256"
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", "ES256") not in ALLOWED_ALGORITHMS
            or "d" in entry  # a private key has no business in a public JWKS
        ):
            continue
        try:
            keys[kid] = jwk.construct(entry, algorithm="ES256")
        except JOSEError:
            continue
    return keys


# --------------------------------------------------------------------------- revoked sessions
def revoked_sessions_url(jwks_url: str) -> str | None:
    """Identity's list of ended sessions, beside its JWKS; ``None`` for a JWKS elsewhere."""
    parts = urlsplit(jwks_url)
    if not parts.path.endswith(JWKS_PATH):
        return None
    path = parts.path[: -len(JWKS_PATH)] + REVOKED_SESSIONS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class RevokedSessions:
    """Login sessions identity ended, polled from it: ``GET <url>?since=<cursor>``.

    The answer is ``{"sessions": [{"sid", "until"}], "next": <cursor>}``: each session ended
    since the cursor, and until when (epoch seconds) a token of it could still be unexpired. A
    session is refused until then, and forgotten after. Polling is lazy and never blocks a
    request but the first one (which waits, briefly, so a fresh process knows the sessions
    ended before it started): a request finding the list older than ``interval`` starts a
    poll in the background. Identity unreachable keeps the list as it is (ending a session
    needs identity too); an issuer without the list (404) is asked again only every minute.
    """

    #: how long a caller waits for a poll, the first one included
    POLL_TIMEOUT_SECONDS = 2.0
    #: how long an issuer that answered 404 is left alone
    ABSENT_RETRY_SECONDS = 60.0

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._client = client
        self._interval = interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._until: dict[str, float] = {}
        self._cursor: str | None = None
        self._next_poll_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: polls made (for observability and tests)
        self.polls = 0

    def is_revoked(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > self._wall_clock()

    def add(self, session_id: str, until: float) -> None:
        """Refuse ``session_id`` until ``until`` (epoch seconds): identity's own logouts."""
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))

    async def refresh_if_due(self) -> None:
        now = self._clock()
        if self._next_poll_at is None:
            self._next_poll_at = now + self._interval
            await self._poll()
            return
        if now >= self._next_poll_at and (self._task is None or self._task.done()):
            self._next_poll_at = now + self._interval
            self._task = asyncio.create_task(self._poll(), name="revoked-sessions-poll")

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        self.polls += 1
        params = {"since": self._cursor} if self._cursor else {}
        try:
            response = await self._client.get(
                self.url,
                params=params,
                headers={"Accept": "application/json"},
                timeout=self.POLL_TIMEOUT_SECONDS,
            )
            if response.status_code == 404:
                self._next_poll_at = self._clock() + self.ABSENT_RETRY_SECONDS
                return
            response.raise_for_status()
            sessions, cursor = _parse_revoked(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            if not self._failing:
                logger.warning(
                    "ended sessions could not be fetched",
                    extra={"url": self.url, "error": type(exc).__name__},
                )
            self._failing = True
            return
        if self._failing:
            logger.info("ended sessions fetched again", extra={"url": self.url})
        self._failing = False
        now = self._wall_clock()
        self._until = {sid: until for sid, until in self._until.items() if until > now}
        for sid, until in sessions:
            self.add(sid, until)
        self._cursor = cursor


def _parse_revoked(document: Any) -> tuple[list[tuple[str, float]], str | None]:
    if not isinstance(document, dict) or not isinstance(document.get("sessions"), list):
        msg = "not a list of ended sessions"
        raise ValueError(msg)
    cursor = document.get("next")
    sessions = [
        (entry["sid"], float(entry["until"]))
        for entry in document["sessions"]
        if isinstance(entry, dict)
        and isinstance(entry.get("sid"), str)
        and isinstance(entry.get("until"), int | float)
    ]
    return sessions, cursor if isinstance(cursor, str) else None


# ---------------------------------------------------------------------------------- verifier
class TokenVerifier:
    """Verifies access tokens. Created in a lifespan; ``aclose()`` at shutdown.

    A token it accepted is remembered, with the principal it names, for ``remember_seconds``
    at most and never past its ``exp``: a caller sends the same token with every request until
    it expires, and checking the ES256 signature again each time costs more CPU than the rest
    of the verification. A refused token is not remembered. Whether the token's session has
    ended is asked on every call, remembered or not.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        jwks_cache_seconds: float = 300.0,
        jwks_refetch_interval_seconds: float = 30.0,
        jwks_max_stale_seconds: float = 3600.0,
        revoked_sessions_url: str | None = None,
        revocation_poll_seconds: float = 2.0,
        client: httpx.AsyncClient | None = None,
        remember_seconds: float = REMEMBER_SECONDS,
        remember_capacity: int = REMEMBER_CAPACITY,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        self.jwks = JwksCache(
            jwks_url,
            client=self._client,
            ttl=jwks_cache_seconds,
            refetch_interval=jwks_refetch_interval_seconds,
            max_stale=jwks_max_stale_seconds,
        )
        self.remember_seconds = remember_seconds
        self.remember_capacity = remember_capacity
        #: token → (principal, monotonic time until which its verdict stands)
        self._remembered: dict[str, tuple[Principal, float]] = {}
        #: ``None``: no list of ended sessions to honour (a JWKS not served by identity)
        self.revocations = (
            RevokedSessions(
                revoked_sessions_url, client=self._client, interval=revocation_poll_seconds
            )
            if revoked_sessions_url
            else None
        )

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, *, client: httpx.AsyncClient | None = None
    ) -> TokenVerifier:
        return cls(
            jwks_url=settings.jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
            jwks_cache_seconds=settings.jwks_cache_seconds,
            jwks_refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
            jwks_max_stale_seconds=settings.jwks_max_stale_seconds,
            revoked_sessions_url=settings.revoked_sessions_url
            or revoked_sessions_url(settings.jwks_url),
            revocation_poll_seconds=settings.revocation_poll_seconds,
            client=client,
        )

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names; ``TokenInvalid``/``TokenExpired`` otherwise."""
        remembered = self._remembered.get(token)
        if remembered is not None:
            if time.monotonic() < remembered[1]:
                await self.refuse_if_revoked(remembered[0])
                return remembered[0]
            self._remembered.pop(token, None)
        principal = await self._checked(token)
        self._remember(token, principal)
        await self.refuse_if_revoked(principal)
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        lifetime = self.remember_seconds
        if principal.expires_at is not None:
            lifetime = min(lifetime, principal.expires_at.timestamp() - time.time())
        if lifetime <= 0 or self.remember_capacity <= 0:
            return
        if len(self._remembered) >= self.remember_capacity:
            self._remembered.clear()  # cheaper than LRU bookkeeping on every hit
        self._remembered[token] = (principal, time.monotonic() + lifetime)

    async def _checked(self, token: str) -> Principal:
        """The principal of a token whose header, signature and claims are acceptable."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise TokenInvalid from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise TokenInvalid(
                Text("الگوریتم امضای توکن پذیرفته نیست", "The token signing algorithm is refused")
            )
        if "crit" in header:
            # RFC 7515 §4.1.11: extensions we do not understand make the token unacceptable
            raise TokenInvalid
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid(Text("شناسه کلید توکن ندارد", "The token names no signing key"))
        key = await self.jwks.get(kid)
        if key is None:
            raise TokenInvalid(
                Text("کلید امضای توکن شناخته نیست", "The token signing key is unknown")
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "leeway": self.leeway_seconds,
                    "require_exp": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                },
            )
        except ExpiredSignatureError as exc:
            raise TokenExpired from exc
        except JOSEError as exc:
            raise TokenInvalid from exc
        return principal_from_claims(claims)

    async def refuse_if_revoked(self, principal: Principal) -> None:
        """``TokenRevoked`` when identity ended the session ``principal``'s token belongs to.

        Also asked on every request by the kernel's dependencies, so a verifier that
        remembers verified tokens (a subclass, an edge cache) still refuses an ended session.
        """
        if self.revocations is None:
            return
        session_id = principal.claim(SESSION_CLAIM)
        await self.revocations.refresh_if_due()
        if session_id and self.revocations.is_revoked(session_id):
            raise TokenRevoked

    async def aclose(self) -> None:
        if self.revocations is not None:
            await self.revocations.aclose()
        if self._owns_client:
            await self._client.aclose()


@asynccontextmanager
async def install_auth(
    app: FastAPI, settings: ServiceSettings, *, client: httpx.AsyncClient | None = None
) -> AsyncIterator[TokenVerifier]:
    """Inside a lifespan: a verifier on ``app.state.token_verifier``, closed on the way out."""
    verifier = TokenVerifier.from_settings(settings, client=client)
    app.state.token_verifier = verifier
    try:
        yield verifier
    finally:
        await verifier.aclose()


# ------------------------------------------------------------------------------ dependencies
_bearer = HTTPBearer(auto_error=False, description="Access token issued by identity")


def _verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        msg = "no token verifier: use `async with install_auth(app, settings)` in the lifespan"
        raise RuntimeError(msg)
    return verifier


async def _optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    if credentials is None:
        if request.headers.get("authorization"):
            raise TokenInvalid  # an Authorization header that is not a bearer token
        return None
    verifier = _verifier(request)
    principal = await verifier.verify(credentials.credentials)
    await verifier.refuse_if_revoked(principal)  # a remembered verdict may predate the logout
    return principal


async def _current_principal(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal:
    if principal is None:
        raise TokenMissing
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(_optional_principal)]


PrincipalDependency = Callable[..., Awaitable[Principal]]


def require_role(role: str) -> PrincipalDependency:
    """``Annotated[Principal, Depends(require_role("catalog-authority"))]``: 403 without it."""
    return require_any_role(role)


def require_any_role(*roles: str) -> PrincipalDependency:
    """The caller holds at least one of ``roles``; 403 otherwise."""
    if not roles:
        msg = "require_any_role needs at least one role"
        raise ValueError(msg)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_any_role(*roles):
            raise Forbidden
        return principal

    return dependency


def require_qualified_role(
    role: str, qualifier: str | None = None, *, path_param: str | None = None
) -> PrincipalDependency:
    """The caller holds ``<role>:<qualifier>``.

    The qualifier is ``qualifier`` when given, else the value of the path parameter
    ``path_param`` (``require_qualified_role("agency-admin", path_param="agency_code")``); with
    neither, any qualifier will do and the endpoint checks ownership of the object it loads
    with ``principal.has_qualified_role`` / ``principal.qualifiers_of``.
    """
    if qualifier is not None and path_param is not None:
        msg = "give either qualifier or path_param, not both"
        raise ValueError(msg)

    async def dependency(request: Request, principal: CurrentPrincipal) -> Principal:
        wanted = qualifier if path_param is None else request.path_params.get(path_param)
        if qualifier is None and path_param is None:
            allowed = bool(principal.qualifiers_of(role))
        else:
            allowed = isinstance(wanted, str) and principal.has_qualified_role(role, wanted)
        if not allowed:
            raise Forbidden
        return principal

    return dependency


def require_scope(scope: str) -> PrincipalDependency:
    """The caller's token carries OAuth ``scope``; 403 ``insufficient_scope`` otherwise."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_scope(scope):
            raise InsufficientScope(scope)
        return principal

    return dependency


def require_role_with_claim(
    role: str, claim: str, *, refusal: Text | None = None
) -> PrincipalDependency:
    """The caller holds ``role`` (403 otherwise), and its token carries ``claim``.

    A token with the role but without the claim was issued wrongly: 401 ``token_invalid``.
    """

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(role):
            raise Forbidden(refusal)
        if not principal.claim(claim):
            raise TokenInvalid(_MALFORMED)
        return principal

    return dependency


def require_that(check: Callable[[Principal], bool], *, refusal: Text) -> PrincipalDependency:
    """The caller passes ``check``; 403 with ``refusal`` as the detail otherwise."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not check(principal):
            raise Forbidden(refusal)
        return principal

    return dependency
