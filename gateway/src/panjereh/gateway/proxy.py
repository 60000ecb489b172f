"""The gateway's ASGI application: the edge duties, then a streaming hop to the upstream.

Raw ASGI on purpose: a proxied request never passes through FastAPI routing, dependency
injection or ``BaseHTTPMiddleware``; it costs one pass over its headers, a few dictionary
looks-ups and the upstream hop (docs/gateway.md has the numbers). The gateway's own paths
(``/livez``, ``/readyz``, ``/openapi.json``, ``/docs``) and the lifespan are the kernel's
FastAPI app, built with ``create_service_app`` like every other process.

Order of the edge duties, cheapest refusal first: path (400), route (404), CORS preflight,
per-address limit (429), token (401), per-caller limit (429), body size (413), upstream
(502/503/504).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from panjereh.common.errors import AppError, PayloadTooLarge, Text, TooManyRequests
from panjereh.common.errors import problem_response as render_problem
from panjereh.common.logging import request_id_var
from panjereh.common.telemetry import current_traceparent
from panjereh.common.upstream import (
    RequestBody,
    UpstreamBroken,
    UpstreamPool,
    UpstreamTimedOut,
    UpstreamUnreachable,
)
from panjereh.gateway import forwarding as fw
from panjereh.gateway.config import RouteClass, Settings
from panjereh.gateway.edge_auth import EdgeAuthenticator
from panjereh.gateway.errors import (
    BadUpstreamResponse,
    OriginNotAllowed,
    PathRefused,
    PortalNotConfigured,
    RouteNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from panjereh.gateway.limits import RateLimiter, retry_after
from panjereh.gateway.metrics import observe
from panjereh.gateway.openapi import ApiDocument
from panjereh.gateway.routing import (
    OWN_PATHS,
    PORTAL,
    AccessRules,
    BadPath,
    RouteTable,
    is_api,
    normalise,
    route_class,
)

logger = logging.getLogger("panjereh.gateway.access")

#: Request headers a browser may send cross-origin (CORS ``Access-Control-Allow-Headers``).
CORS_ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "accept",
        "accept-language",
        "content-language",
        "idempotency-key",
        "x-request-id",
        "traceparent",
        "tracestate",
    }
)
CORS_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
CORS_EXPOSED = (
    b"X-Request-ID, traceparent, Retry-After, Idempotent-Replayed, Location, Content-Language"
)
_PREFLIGHT_METHOD = b"access-control-request-method"
_PREFLIGHT_HEADERS = b"access-control-request-headers"
#: A long run of digits in a path may be a national code or a mobile number: never logged.
_LONG_NUMBER = re.compile(r"\d{10,}")
_QUIET_PATHS = frozenset({"/livez", "/readyz"})


class ClientGone(Exception):
    """The client went away while its body was being forwarded."""


class BodyTooLarge(Exception):
    """The body grew past the limit while it was being forwarded."""


class TooManyRequestsHere(TooManyRequests):
    def __init__(self, wait: float) -> None:
        super().__init__(
            Text(
                "درخواست‌ها بیش از حد مجاز است؛ کمی بعد دوباره بکوشید",
                "Too many requests; try again a little later",
            ),
            headers={"Retry-After": retry_after(wait)},
        )


class Gateway:
    """What uvicorn runs (``create_app()`` builds it): routes, checks and forwards."""

    def __init__(self, settings: Settings, own: FastAPI) -> None:
        self.own = own
        self.settings = settings
        self.routes = RouteTable(settings.routes, portal=settings.portal_url is not None)
        self.access = AccessRules(settings.public_routes)
        self.addresses = fw.ClientAddress(settings.trusted_proxies)
        self.limiter = (
            RateLimiter(settings.rate_limits, ip_factor=settings.ip_factor)
            if settings.rate_limits_enabled
            else None
        )
        self.max_body = settings.max_body_bytes
        #: opened by the lifespan (``main.setup``)
        self.pools: dict[str, UpstreamPool] = {}
        self.auth: EdgeAuthenticator | None = None
        self.api_document: ApiDocument | None = None
        self.traced = settings.otlp_endpoint is not None
        self.access_log = settings.access_log
        self.cors_origins = frozenset(origin.encode() for origin in settings.cors_origins)
        self.cors_max_age = str(settings.cors_max_age_seconds).encode()
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        self.api_headers = [
            *common,
            (b"content-security-policy", settings.api_content_security_policy.encode()),
        ]
        self.portal_headers = [
            *common,
            (b"content-security-policy", settings.portal_content_security_policy.encode()),
        ]
        self.hsts = (
            (b"strict-transport-security", b"max-age=%d; includeSubDomains" % settings.hsts_seconds)
            if settings.hsts_seconds
            else None
        )

    # ------------------------------------------------------------------------ entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.own(scope, receive, send)  # the lifespan; websockets are refused there
            return
        if scope["path"] in OWN_PATHS:
            await self._own(scope, receive, send)
            return
        await self._proxy(scope, receive, send)

    # ------------------------------------------------------------------------ own paths
    async def _own(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0
        https = self._scheme(scope, None) == "https"
        extra = self._docs_headers if scope["path"].startswith("/docs") else self.api_headers
        origin = _header(scope, b"origin")
        cors = self._cors_headers(origin) if origin is not None else []
        document = self.api_document
        if scope["path"] == "/openapi.json" and document is not None:
            # on demand: a service that was down at start is picked up when asked for
            await document.settle()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), *extra, *cors]
                if https and self.hsts:
                    headers.append(self.hsts)
                message["headers"] = headers
            await send(message)

        try:
            await self.own(scope, receive, send_with_headers)
        finally:
            if self.access_log and scope["path"] not in _QUIET_PATHS:
                path = scope["path"]
                self._log(
                    scope, path=path, status=status, started=started, upstream=None, code=None
                )

    @property
    def _docs_headers(self) -> list[tuple[bytes, bytes]]:
        # Swagger UI is an inline script and a stylesheet from a CDN: allow exactly those
        return [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"x-frame-options", b"DENY"),
            (
                b"content-security-policy",
                b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                b"img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'",
            ),
        ]

    # ------------------------------------------------------------------------ the hop
    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0911, PLR0912, PLR0915 - one flat pass: no call per step on the hot path
        started = time.perf_counter()
        method: str = scope["method"]
        forward: list[tuple[bytes, bytes]] = []
        authorization = content_length = origin = incoming_id = incoming_trace = None
        host = forwarded_proto = connection = preflight = None
        chunked = False
        forwarded_for: list[bytes] = []
        kinds = fw.REQUEST_HEADERS
        for name, value in scope["headers"]:
            kind = kinds.get(name)
            if kind is None:
                if not name.startswith(fw.DROPPED_PREFIXES):
                    forward.append((name, value))
                    if name == _PREFLIGHT_METHOD:
                        preflight = value
            elif kind == fw.AUTHORIZATION:
                authorization = value
                forward.append((name, value))
            elif kind == fw.CONTENT_LENGTH:
                content_length = value
            elif kind == fw.CHUNKED:
                chunked = True
            elif kind == fw.REQUEST_ID:
                incoming_id = value
            elif kind == fw.TRACEPARENT:
                incoming_trace = value
            elif kind == fw.HOST:
                host = value
            elif kind == fw.FORWARDED_FOR:
                forwarded_for.append(value)
            elif kind == fw.FORWARDED_PROTO:
                forwarded_proto = value
            elif kind == fw.ORIGIN:
                origin = value
                forward.append((name, value))
            elif kind == fw.CONNECTION:
                connection = value
        if connection is not None:
            # headers the client named as hop-by-hop go no further either
            named = {token.strip().lower() for token in connection.split(b",")}
            forward = [header for header in forward if header[0] not in named]

        rid = fw.request_id(incoming_id)
        trace = current_traceparent().encode() if self.traced else None
        traceparent = trace or fw.child_traceparent(incoming_trace)
        rid_text = rid.decode()
        scope.setdefault("state", {})["request_id"] = rid_text
        token = request_id_var.set(rid_text)
        client = scope.get("client")
        peer = client[0] if client else None
        scheme = self.addresses.scheme(peer, scope.get("scheme", "http"), forwarded_proto)
        reply = _Reply(
            self,
            scope,
            send,
            request_id=rid,
            traceparent=traceparent,
            origin=origin,
            https=scheme == "https",
        )
        upstream_name: str | None = None
        klass: RouteClass | None = None
        log_path = scope["path"]
        try:
            # ---- path and route
            raw_path = scope.get("raw_path") or scope["path"].encode()
            try:
                path, raw_path = normalise(raw_path)
            except BadPath:
                await reply.problem(PathRefused())
                return
            log_path = path
            route = self.routes.match(path)
            if route is None:
                api = is_api(path) or self.settings.portal_url is not None
                await reply.problem(RouteNotFound() if api else PortalNotConfigured())
                return
            upstream_name = route.upstream
            portal = upstream_name == PORTAL
            reply.portal = portal

            # ---- CORS preflight: answered here, never forwarded
            if method == "OPTIONS" and origin is not None and preflight is not None:
                await reply.preflight(_header(scope, _PREFLIGHT_HEADERS))
                return

            # ---- limits and the caller
            address = self.addresses.resolve(peer, forwarded_for)
            klass = RouteClass.READ if portal else route_class(method, path)
            limiter = self.limiter
            if limiter is not None:
                wait = limiter.for_address(klass, address)
                if wait:
                    await reply.problem(TooManyRequestsHere(wait))
                    return
            caller: str | None = None
            if not portal:
                auth = self.auth
                assert auth is not None, "the lifespan sets the authenticator"
                if not self.access.is_public(method, path):
                    try:
                        caller = await auth.caller(authorization)
                    except AppError as error:
                        await reply.problem(error)
                        return
                elif authorization is not None:
                    caller = await auth.optional_caller(authorization)

            # ---- body
            body: RequestBody = b""
            declared: int | None = None
            if content_length is not None:
                if not content_length.isdigit():
                    await reply.problem(AppError())
                    return
                declared = int(content_length)
                if declared > self.max_body:
                    await reply.problem(self._too_large())
                    return
            if declared or chunked:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client is gone
                first: bytes = message.get("body", b"")
                if message.get("more_body", False):
                    stream = self._body(first, receive)
                    if klass is RouteClass.TOKEN:
                        # small form bodies, read whole to find the OAuth client for its limit
                        try:
                            body = b"".join([chunk async for chunk in stream])
                        except BodyTooLarge:
                            await reply.problem(self._too_large())
                            return
                        except ClientGone:
                            return
                    else:
                        body = stream
                else:
                    body = first
                if isinstance(body, bytes) and len(body) > self.max_body:
                    await reply.problem(self._too_large())
                    return

            if klass is RouteClass.TOKEN and caller is None and isinstance(body, bytes):
                caller = _oauth_client(authorization, body)
            if caller is not None and limiter is not None:
                wait = limiter.for_caller(klass, caller)
                if wait:
                    await reply.problem(TooManyRequestsHere(wait))
                    return

            # ---- the hop
            forward.append((b"x-forwarded-for", address.encode("latin-1")))
            forward.append((b"x-forwarded-proto", scheme.encode("latin-1")))
            if host is not None:
                forward.append((b"x-forwarded-host", host))
            forward.append((b"x-request-id", rid))
            forward.append((b"traceparent", traceparent))
            query: bytes = scope.get("query_string", b"")
            target = raw_path + b"?" + query if query else raw_path
            pool = self.pools[upstream_name]
            try:
                response = await pool.request(
                    method, target, forward, body, framed=content_length is not None
                )
            except BodyTooLarge:
                await reply.problem(self._too_large())
                return
            except ClientGone:
                return
            except UpstreamUnreachable:
                await reply.problem(UpstreamUnavailable(extra={"upstream": upstream_name}))
                return
            except UpstreamTimedOut:
                await reply.problem(UpstreamTimeout(extra={"upstream": upstream_name}))
                return
            except UpstreamBroken:
                await reply.problem(BadUpstreamResponse(extra={"upstream": upstream_name}))
                return
            reply.status = response.status
            headers = reply.response_headers(response.headers)
            if response.complete:
                body_bytes = response.body_now()
                await send(
                    {"type": "http.response.start", "status": reply.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body_bytes})
                return
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            try:
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (UpstreamTimedOut, UpstreamBroken) as exc:
                # the head is out: all that is left is to cut the answer off visibly
                logger.warning(
                    "upstream answer cut off",
                    extra={"upstream": upstream_name, "error": type(exc).__name__},
                )
                raise
            await send({"type": "http.response.body", "body": b""})
        finally:
            observe(upstream_name, klass, reply.status, time.perf_counter() - started)
            if self.access_log:
                self._log(
                    scope,
                    path=log_path,
                    status=reply.status,
                    started=started,
                    upstream=upstream_name,
                    code=reply.code,
                )
            request_id_var.reset(token)

    async def _body(self, first: bytes, receive: Receive) -> AsyncIterator[bytes]:
        """The request body as it arrives, refused past the limit."""
        size = len(first)
        if size > self.max_body:
            raise BodyTooLarge
        yield first
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            yield chunk
            if not message.get("more_body", False):
                return

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            Text(
                f"حداکثر حجم مجاز {self.max_body} بایت است",
                f"The largest accepted body is {self.max_body} bytes",
            )
        )

    def _scheme(self, scope: Scope, forwarded_proto: bytes | None) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if forwarded_proto is None:
            forwarded_proto = _header(scope, b"x-forwarded-proto")
        return self.addresses.scheme(peer, scope.get("scheme", "http"), forwarded_proto)

    def _cors_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if origin not in self.cors_origins:
            return [(b"vary", b"Origin")]
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", CORS_EXPOSED),
            (b"vary", b"Origin"),
        ]

    def _log(
        self,
        scope: Scope,
        *,
        path: str,
        status: int,
        started: float,
        upstream: str | None = None,
        code: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": _LONG_NUMBER.sub("{n}", path),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if upstream is not None:
            entry["upstream"] = upstream
        if code is not None:
            entry["code"] = code
        logger.info("request", extra=entry)


class _Reply:
    """The answer being built for one proxied request: its own headers and status."""

    __slots__ = (
        "code",
        "gateway",
        "https",
        "origin",
        "portal",
        "request_id",
        "scope",
        "send",
        "status",
        "traceparent",
    )

    def __init__(
        self,
        gateway: Gateway,
        scope: Scope,
        send: Send,
        *,
        request_id: bytes,
        traceparent: bytes,
        origin: bytes | None,
        https: bool,
    ) -> None:
        self.gateway = gateway
        self.scope = scope
        self.send = send
        self.request_id = request_id
        self.traceparent = traceparent
        self.origin = origin
        self.https = https
        self.portal = False
        self.status = 0
        self.code: str | None = None

    def _own_headers(self, seen: set[bytes] | None) -> list[tuple[bytes, bytes]]:
        gateway = self.gateway
        headers = [(b"x-request-id", self.request_id), (b"traceparent", self.traceparent)]
        security = gateway.portal_headers if self.portal else gateway.api_headers
        if seen:
            headers += [header for header in security if header[0] not in seen]
        else:
            headers += security
        if self.https and gateway.hsts is not None and not (seen and gateway.hsts[0] in seen):
            headers.append(gateway.hsts)
        if self.origin is not None:
            headers += gateway._cors_headers(self.origin)
        return headers

    def response_headers(self, upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        seen: set[bytes] | None = None
        kept: list[tuple[bytes, bytes]] = []
        for header in upstream:
            name = header[0]
            if name in fw.RESPONSE_DROPPED:
                continue
            if name in fw.SECURITY_HEADERS:
                seen = seen or set()
                seen.add(name)
            kept.append(header)
        return kept + self._own_headers(seen)

    async def problem(self, error: AppError) -> None:
        response = render_problem(Request(self.scope), error)
        self.status = error.status
        self.code = error.code
        await self.send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [*response.raw_headers, *self._own_headers(None)],
            }
        )
        await self.send({"type": "http.response.body", "body": response.body})

    async def preflight(self, requested_headers: bytes | None) -> None:
        gateway = self.gateway
        assert self.origin is not None
        if self.origin not in gateway.cors_origins:
            await self.problem(OriginNotAllowed())
            return
        wanted = [
            name.strip().lower()
            for name in (requested_headers or b"").decode("latin-1").split(",")
            if name.strip()
        ]
        allowed = ", ".join(name for name in wanted if name in CORS_ALLOWED_HEADERS)
        self.status = 204
        await self.send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"x-request-id", self.request_id),
                    (b"traceparent", self.traceparent),
                    (b"access-control-allow-origin", self.origin),
                    (b"access-control-allow-methods", CORS_METHODS),
                    (b"access-control-allow-headers", allowed.encode("latin-1")),
                    (b"access-control-max-age", gateway.cors_max_age),
                    (b"vary", b"Origin"),
                    *gateway.api_headers,
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            found: bytes = value
            return found
    return None


def _oauth_client(authorization: bytes | None, body: bytes) -> str | None:
    """The OAuth client a token request names (HTTP Basic or the form's ``client_id``)."""
    if authorization is not None and authorization[:6].lower() == b"basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
        except (ValueError, binascii.Error):
            return None
        client_id, _, _ = decoded.decode("latin-1").partition(":")
        return f"client:{client_id}" if client_id else None
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=False):
        if name == "client_id":
            return f"client:{value}"
    return None
