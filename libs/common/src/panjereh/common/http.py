"""Outbound HTTP for services: an ``httpx.AsyncClient`` that refuses to call out from inside
an open database transaction.

A call to another system can take seconds (or its whole timeout); made while a transaction is
open it holds a pooled connection, and any row locks, for that long, and one slow agency or
SMS provider then stalls every request that needs those rows. The platform's shape is
**claim → call outside the transaction → record**. This client makes the rule impossible to
break by accident: a request sent while :func:`panjereh.common.db.in_transaction` is true
raises :class:`NetworkCallInTransaction` before anything leaves the process.

The client's own transport keeps what each call costs its process down. Before every request,
and again when each response is closed, the connection pool looks at each pooled connection,
and asks each idle one whether the server has closed it (a readable idle socket). Through
anyio that question rebuilds the socket's whole attribute table (a ``getpeername`` call among
them) each time, for every idle connection, twice per call: with a pool as wide as the calls
in flight (identity's ~20 waiting calls to the broker under load) it was about a fifth of the
client side of a call. Here each connection keeps one ``poll`` object for its socket and the
question is a single ``poll(0)``, with the same answer. And a small request goes out in one
send instead of two (see :class:`_OutboundStream`), which also spares the server a wake-up,
and the pool's bookkeeping looks at each connection once per pass (:class:`_OutboundPool`).
Everything else (reads, TLS, timeouts, the errors they raise) is the default backend's.
"""

from __future__ import annotations

import contextlib
import json as _json
import select
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from httpx._types import CookieTypes
from opentelemetry import propagate, trace

from panjereh.common.db import in_transaction
from panjereh.common.upstream import UpstreamPool

#: Writes up to this size (a request's head) wait for the next write or read (see below).
_HELD_WRITE_LIMIT = 16 * 1024
#: The pool of an outbound client (httpx's defaults; a caller may pass its own ``limits``):
#: room for many calls waiting on slow systems at once, and as many idle connections kept as
#: a service has calls in flight under load. Fewer kept connections make the pool's scan
#: shorter but open new ones all the time (10 for 20 callers: a connection for one call in
#: three), which costs both ends more than the scan.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0
)


class NetworkCallInTransaction(RuntimeError):
    """An outbound call was attempted while the current task held a database transaction."""


async def _refuse_inside_transactions(request: httpx.Request) -> None:
    if in_transaction():
        msg = (
            f"{request.method} {request.url.host}: no network call while a database "
            "transaction is open (claim, commit, call, then record)"
        )
        raise NetworkCallInTransaction(msg)


# The ``timeout`` parameters below are httpcore's network interface (ASYNC109 is about
# our own coroutines).


class _OutboundStream(httpcore.AsyncNetworkStream):
    """A connection's stream: "closed by the server?" is one ``poll(0)``, and a request's
    head goes out with the start of its body in one send.

    httpcore writes an HTTP/1.1 request's head and then its body, one send each: two system
    calls, and on the server two wake-ups and two reads for one small request. A small write
    is held here until the next write, which then sends both at once, or until the next read
    (a request without a body), which sends it first. A send that fails there is passed over,
    as httpcore passes over a failed request write, so the response the server may still have
    sent is read (or the read fails as it would have).
    """

    __slots__ = ("_coalesce", "_held", "_poll", "_stream")

    def __init__(self, stream: httpcore.AsyncNetworkStream, *, coalesce: bool) -> None:
        self._stream = stream
        self._coalesce = coalesce
        self._held: tuple[bytes, float | None] | None = None
        self._poll: Any = None
        sock = stream.get_extra_info("socket")
        poll = getattr(select, "poll", None)
        if sock is not None and poll is not None and sock.fileno() >= 0:
            self._poll = poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._held is not None:
            held, write_timeout = self._held
            self._held = None
            with contextlib.suppress(httpcore.WriteError):
                await self._stream.write(held, write_timeout)
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        if self._held is not None:
            buffer = self._held[0] + buffer
            self._held = None
        elif self._coalesce and len(buffer) <= _HELD_WRITE_LIMIT:
            self._held = (buffer, timeout)
            return
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        self._held = None
        self._poll = None
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _OutboundStream(stream, coalesce=self._coalesce)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._poll is not None:
            # readable while idle: the server closed it (or the fd is gone: POLLNVAL), as
            # httpcore's own check would say
            return bool(self._poll.poll(0))
        return self._stream.get_extra_info(info)


class _OutboundBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, handing out :class:`_OutboundStream` connections.

    Writes are held back only on HTTP/1.1 connections (one request at a time, always read
    after it is written); an HTTP/2 connection writes from many streams while one reads.
    """

    def __init__(self, *, coalesce: bool) -> None:
        self._backend = httpcore.AnyIOBackend()
        self._coalesce = coalesce

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _OutboundStream(stream, coalesce=self._coalesce)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _OutboundStream(stream, coalesce=self._coalesce)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _OutboundPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool, its bookkeeping in one pass over the connections.

    Before every request and again when each response is closed, httpcore's pool looks over
    its connections; for each idle one it counted the whole pool again (a list of every
    connection's ``is_idle()``, of which it took the length), and it listed every available
    and every idle connection for each queued request. With 20 kept connections that was
    about 860 questions per call. The decisions are the same here, in the same order: a
    closed connection leaves the pool, an expired one is closed, an idle one is closed while
    the pool holds more than ``max_keepalive_connections``; a queued request takes the first
    available connection for its origin, else a new one while the pool has room, else the
    first idle connection is closed for a new one.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        connections = self._connections
        closing: list[httpcore.AsyncConnectionInterface] = []
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing.append(connection)
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is None:
                if len(connections) >= self._max_connections:
                    idle = next((c for c in connections if c.is_idle()), None)
                    if idle is None:
                        continue  # waits for a connection to be released
                    connections.remove(idle)
                    closing.append(idle)
                available = self.create_connection(origin)
                connections.append(available)
            pool_request.assign_to_connection(available)
        return closing


class OutboundTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (tracing instruments it the same way) over :class:`_OutboundBackend`."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        super().__init__(verify=context, http1=http1, http2=http2, limits=limits)
        self._pool = _OutboundPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            network_backend=_OutboundBackend(coalesce=not http2),
        )


class _OutboundCookies(httpx.Cookies):
    """httpx's cookie jar; an answer that sets no cookie is not handed to it.

    httpx hands every response to the jar, which first builds urllib stand-ins of the request
    and the response (parsing the URL again) to find no ``Set-Cookie`` in it: about 1 % of a
    service's CPU for its calls to other services, which set none. A cookie that is set is
    kept and sent back as before.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _OutboundClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose cookies are :class:`_OutboundCookies`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._cookies = _OutboundCookies(self._cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        self._cookies = _OutboundCookies(cookies)


def outbound_client(**options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (same options) that enforces "no network in a transaction".

    Use it for every call to another system: agencies, the inquiry broker, SMS providers.
    Without a ``transport`` of the caller's, it sends through :class:`OutboundTransport`
    (``verify``, ``cert``, ``http1``, ``http2`` and ``limits`` go to it, as httpx would pass
    them to its own).
    """
    hooks: dict[str, list[Any]] = {
        key: list(value) for key, value in options.pop("event_hooks", {}).items()
    }
    hooks.setdefault("request", []).insert(0, _refuse_inside_transactions)
    if options.get("transport") is None:
        options["transport"] = OutboundTransport(
            verify=options.pop("verify", True),
            cert=options.pop("cert", None),
            trust_env=options.get("trust_env", True),
            http1=options.pop("http1", True),
            http2=options.pop("http2", False),
            limits=options.pop("limits", DEFAULT_LIMITS),
        )
    return _OutboundClient(event_hooks=hooks, **options)


@dataclass(frozen=True)
class ServiceResponse:
    """A platform service's whole answer."""

    status_code: int
    content: bytes
    #: header names in lower case, as received
    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), if the answer has it."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        return _json.loads(self.content)


class ServiceClient:
    """Calls from one service of the platform to another (``http://host:port`` on the cluster
    network), sent by the kernel's own HTTP/1.1 pool (:mod:`panjereh.common.upstream`).

    For the hot calls between services (identity asking the inquiry broker): httpx costs
    about 1 ms of the caller's CPU per call, this pool a few hundredths of that. The same
    rules as :func:`outbound_client`: nothing is sent while the calling task holds a
    database transaction (:class:`NetworkCallInTransaction`), each call is a client span
    whose context travels in ``traceparent``. Calls to systems outside the platform (agencies,
    SMS providers: TLS, redirects, proxies) stay on :func:`outbound_client`.

    Errors are :class:`~panjereh.common.upstream.UpstreamError` and its kinds: unreachable (no
    connection, or closed before any answer), timed out (no answer within ``timeout``
    seconds), broken (a malformed or cut answer).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float = 2.0,
        max_connections: int = DEFAULT_LIMITS.max_connections or 100,
    ) -> None:
        self._pool = UpstreamPool(
            name,
            base_url,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=timeout,
        )
        self.name = name

    async def post_json(
        self, target: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> ServiceResponse:
        """``POST target`` (a path with its query) with ``body`` as JSON; the whole answer."""
        return await self.request("POST", target, json=body, headers=headers)

    async def request(
        self,
        method: str,
        target: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> ServiceResponse:
        """``method target`` (a path with its query), with ``json`` as the body unless it is
        ``None``; the whole answer."""
        if in_transaction():
            msg = (
                f"{method} {self._pool.host}: no network call while a database transaction is "
                "open (claim, commit, call, then record)"
            )
            raise NetworkCallInTransaction(msg)
        content = b""
        wire = [_ACCEPT_JSON]
        if json is not None:
            content = _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            wire.append(_CONTENT_JSON)
        with tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "server.address": self._pool.host},
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            for name, value in (*(headers or {}).items(), *carrier.items()):
                wire.append((name.lower().encode("latin-1"), value.encode("latin-1")))
            response = await self._pool.request(method, target.encode("ascii"), wire, content)
            span.set_attribute("http.response.status_code", response.status)
            if response.complete:
                answer = response.body_now()
            else:
                answer = b"".join([chunk async for chunk in response.chunks()])
        return ServiceResponse(
            status_code=response.status, content=answer, headers=list(response.headers)
        )

    async def aclose(self) -> None:
        await self._pool.close()


_ACCEPT_JSON = (b"accept", b"application/json")
_CONTENT_JSON = (b"content-type", b"application/json")
tracer = trace.get_tracer(__name__)
