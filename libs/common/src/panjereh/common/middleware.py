"""The one ASGI middleware every process installs: the kernel's part of each HTTP request.

:class:`KernelMiddleware` does, in this order, what five layers did one inside the other: the
response's ``traceparent`` (the server span's), the HTTP metrics (count, latency, in flight,
by route template), the request id (``X-Request-ID`` echoed when well formed, minted
otherwise; ``request.state.request_id`` and the log context), the body-size limit (413, by
declared length or while streaming) and the refusal of text PostgreSQL cannot store (422). One
layer means one coroutine and one wrapped ``send`` per request instead of five: every response
message went through each layer's wrapper.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming and background tasks are not
buffered or copied.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from panjereh.common.errors import PayloadTooLarge, Text, ValidationFailed, problem_response
from panjereh.common.fields import field_error
from panjereh.common.logging import request_id_var
from panjereh.common.metrics import HTTP_IN_FLIGHT, record_http_request
from panjereh.common.telemetry import current_traceparent

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_TRACEPARENT = b"traceparent"
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"


def new_request_id() -> str:
    """32 hex digits. A request id correlates log lines; it is no secret (OpenTelemetry draws
    trace ids the same way), so it costs no system call."""
    return f"{random.getrandbits(128):032x}"


class KernelMiddleware:
    """Traceparent, metrics, request id, body-size limit and storable text, in one layer."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        traceparent = current_traceparent().encode()
        incoming_id, declared, content_type = _kernel_headers(scope)
        if incoming_id is not None and _SAFE_REQUEST_ID.match(incoming_id):
            request_id = incoming_id
        else:
            request_id = new_request_id()
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        added = [(_REQUEST_ID, request_id.encode()), (_TRACEPARENT, traceparent)]
        exchange = _Exchange(scope, receive, send, added, self.max_bytes)
        HTTP_IN_FLIGHT.inc()
        token = request_id_var.set(request_id)
        try:
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                await _too_large(scope, receive, exchange.send, self.max_bytes)
                return
            fields = _bad_url_fields(scope)
            if fields:
                await _unstorable_text(scope, receive, exchange.send, fields)
                return
            media_type = (content_type or "").split(";")[0].strip().lower()
            if media_type == "application/json" or media_type.endswith("+json"):
                replayed = await _checked_json(scope, exchange.receive, exchange.guarded_send)
                if replayed is not None:
                    await self.app(scope, replayed, exchange.guarded_send)
            else:
                await self.app(scope, exchange.receive, exchange.guarded_send)
        finally:
            request_id_var.reset(token)
            HTTP_IN_FLIGHT.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            record_http_request(
                scope.get("method", ""), template, exchange.status, time.perf_counter() - started
            )


def _kernel_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """``X-Request-ID``, ``Content-Length`` and ``Content-Type``, in one pass over the headers."""
    request_id = declared = content_type = None
    for key, value in scope.get("headers", ()):
        name = key.lower()
        if name == _REQUEST_ID:
            request_id = value.decode("latin-1")
        elif name == _CONTENT_LENGTH:
            declared = value.decode("latin-1")
        elif name == _CONTENT_TYPE:
            content_type = value.decode("latin-1")
    return request_id, declared, content_type


class _Exchange:
    """One request's way through the kernel: the response marked with the request id and
    traceparent (and its status noted), the body counted against the limit."""

    __slots__ = (
        "_receive",
        "_send",
        "added",
        "max_bytes",
        "received",
        "refused",
        "scope",
        "status",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        added: list[tuple[bytes, bytes]],
        max_bytes: int,
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.added = added
        self.max_bytes = max_bytes
        self.received = 0
        self.refused = False
        self.status = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            message["headers"] = [*message.get("headers", ()), *self.added]
        await self._send(message)

    async def guarded_send(self, message: Message) -> None:
        if not self.refused:
            await self.send(message)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                # answer now and tell the app the client went away; whatever the app sends
                # afterwards is dropped by guarded_send
                if not self.refused:
                    self.refused = True
                    await _too_large(self.scope, self._receive, self.send, self.max_bytes)
                return {"type": "http.disconnect"}
        return message


async def _too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    error = PayloadTooLarge(
        Text(
            f"حداکثر حجم مجاز {max_bytes} بایت است",
            f"The largest accepted body is {max_bytes} bytes",
        )
    )
    response = problem_response(Request(scope, receive), error)
    await response(scope, receive, send)


async def _checked_json(scope: Scope, receive: Receive, send: Send) -> Receive | None:
    """Read a JSON body; refuse unstorable text in it (``None``: answered), else a ``receive``
    that replays it to the app."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if _SUSPECT_JSON.search(body):
        try:
            document = json.loads(body)
        except ValueError:
            document = None  # not JSON: the endpoint's own validation answers
        fields = list(dict.fromkeys(_bad_json_fields(document, "")))
        if fields:
            await _unstorable_text(scope, receive, send, fields)
            return None
    replay = iter(messages)

    async def replayed() -> Message:
        try:
            return next(replay)
        except StopIteration:
            return await receive()

    return replayed


# ------------------------------------------------------------------------- storable text
#: a JSON escape of NUL or of a UTF-16 surrogate (lone ones cannot be stored as UTF-8)
_SUSPECT_JSON = re.compile(rb"\\u0000|\x00|\\u[dD][89a-fA-F]")


def _unstorable(text: str) -> bool:
    """True for text PostgreSQL cannot store: a NUL character or a lone surrogate."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _bad_json_fields(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if _unstorable(value):
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if _unstorable(str(key)):
                yield child
            yield from _bad_json_fields(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _bad_json_fields(item, f"{path}.{index}" if path else str(index))


def _bad_url_fields(scope: Scope) -> list[str]:
    fields: list[str] = []
    if _unstorable(str(scope.get("path", ""))):
        fields.append("path")
    raw_query: bytes = scope.get("query_string", b"")
    if raw_query and (b"%00" in raw_query or b"\x00" in raw_query):
        for name, value in parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                fields.append(f"query.{name.replace(chr(0), '')}")
    return list(dict.fromkeys(fields))


async def _unstorable_text(scope: Scope, receive: Receive, send: Send, fields: list[str]) -> None:
    """422 naming each field whose text PostgreSQL cannot store (NUL, lone surrogates).

    Without this refusal such text reaches the database driver and fails there as a 500. JSON
    bodies are scanned only when their raw bytes hold a suspect escape, so ordinary requests
    pay a single byte search.
    """
    error = ValidationFailed(
        Text("برخی فیلدها متن ذخیره‌نشدنی دارند", "Some fields hold text that cannot be stored"),
        errors=[
            field_error(
                field,
                "text_not_storable",
                fa="این متن نویسه‌ای دارد که ذخیره‌شدنی نیست (مانند NUL)",
                en="The text holds a character that cannot be stored (such as NUL)",
            )
            for field in fields
        ],
    )
    response = problem_response(Request(scope, receive), error)
    await response(scope, receive, send)
