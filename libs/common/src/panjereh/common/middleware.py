"""ASGI middleware every process installs: request ids, the body-size limit, storable text.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming and background tasks are not
buffered or copied.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from panjereh.common.errors import PayloadTooLarge, Text, ValidationFailed, problem_response
from panjereh.common.fields import field_error
from panjereh.common.logging import request_id_var

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return secrets.token_hex(16)


class RequestIdMiddleware:
    """Echo a well-formed ``X-Request-ID`` or mint one; also ``request.state.request_id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else None
        request_id = request_id or new_request_id()
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, by declared length or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, "content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # answer now and tell the app the client went away; whatever the app
                    # sends afterwards is dropped by guarded_send
                    if not refused:
                        refused = True
                        await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(
            Text(
                f"حداکثر حجم مجاز {self.max_bytes} بایت است",
                f"The largest accepted body is {self.max_bytes} bytes",
            )
        )
        response = problem_response(Request(scope, receive), error)
        await response(scope, receive, send)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


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


class StorableTextMiddleware:
    """Refuse, with 422 naming the field, text that PostgreSQL cannot store (NUL, lone
    surrogates) in the path, the query string or a JSON body, before any endpoint runs.

    Without it such text reaches the database driver and fails there as a 500. JSON bodies are
    scanned only when their raw bytes hold a suspect escape, so ordinary requests pay a single
    byte search.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = self._bad_url_fields(scope)
        if fields:
            await self._refuse(scope, receive, send, fields)
            return
        content_type = (_header(scope, "content-type") or "").split(";")[0].strip().lower()
        if not (content_type == "application/json" or content_type.endswith("+json")):
            await self.app(scope, receive, send)
            return
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
                await self._refuse(scope, receive, send, fields)
                return
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replayed, send)

    @staticmethod
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

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, fields: list[str]) -> None:
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
