"""The gateway's public REST API, as the portal calls it (the same API a mobile app uses).

Every answer that is not a success becomes :class:`ApiProblem`, carrying the RFC 9457 fields
the API sent (``code``, ``title``, ``detail``, field ``errors``), already in the page's
language because the portal asks in it (``Accept-Language``). A gateway that cannot be reached
becomes the same kind of problem with the code ``api_unreachable``, so a page never shows a
stack trace or raw JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger("panjereh.portal.api")


_STANDARD = frozenset({"type", "title", "status", "detail", "code", "errors", "instance"})


@dataclass(frozen=True)
class FieldIssue:
    field: str
    code: str
    message: str


@dataclass
class ApiProblem(Exception):
    """A problem+json answer of the API (or the API's absence)."""

    status: int
    code: str
    title: str = ""
    detail: str = ""
    errors: list[FieldIssue] = field(default_factory=list)
    #: the problem's other members (``attempts_left``, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}"

    @classmethod
    def of(cls, response: httpx.Response) -> ApiProblem:
        body: Any = None
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, dict):
            return cls(response.status_code, f"http_{response.status_code}")
        issues = [
            FieldIssue(
                str(entry.get("field", "")),
                str(entry.get("code", "invalid")),
                str(entry.get("message", "")),
            )
            for entry in body.get("errors") or []
            if isinstance(entry, dict)
        ]
        return cls(
            response.status_code,
            str(body.get("code") or f"http_{response.status_code}"),
            str(body.get("title") or ""),
            str(body.get("detail") or ""),
            issues,
            {k: v for k, v in body.items() if k not in _STANDARD},
        )


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]
    content: bytes


class Api:
    """Calls to the gateway on behalf of one visitor (language and, when signed in, token)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        lang: str,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bool = False,
    ) -> Answer:
        sent = {"Accept-Language": lang, "Accept": "application/json"}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self.client.request(
                method, path, params=query, json=json, data=form, headers=sent
            )
        except httpx.HTTPError as error:
            logger.warning("api unreachable", extra={"path": path, "error": type(error).__name__})
            raise ApiProblem(503, "api_unreachable") from error
        if response.status_code >= 400:
            raise ApiProblem.of(response)
        if raw or not response.content:
            return Answer(response.status_code, None, response.headers, response.content)
        return Answer(response.status_code, response.json(), response.headers, response.content)

    async def get(self, path: str, **options: Any) -> Any:
        return (await self.call("GET", path, **options)).body

    async def post(self, path: str, **options: Any) -> Any:
        return (await self.call("POST", path, **options)).body
