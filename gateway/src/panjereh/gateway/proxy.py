"""Forwarding requests to upstream services over HTTP, streaming both ways."""

from __future__ import annotations

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from panjereh.common.errors import AppError, NotFound, Text

# RFC 9110 §7.6.1 connection-specific headers, never forwarded
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# set by the gateway's own server; forwarding the upstream's copy would duplicate them
OWN_RESPONSE_HEADERS = frozenset({"date", "server", "x-request-id", "traceparent"})


class UpstreamUnavailable(AppError):
    status = 503
    code = "upstream_unavailable"
    title = Text("سرویس مقصد در دسترس نیست", "The upstream service is unavailable")


class UpstreamTimeout(AppError):
    status = 504
    code = "upstream_timeout"
    title = Text("سرویس مقصد به موقع پاسخ نداد", "The upstream service did not answer in time")


class RouteNotFound(NotFound):
    code = "route_not_found"


async def forward(
    request: Request, client: httpx.AsyncClient, base_url: str, service: str
) -> Response:
    headers = [
        (name, value)
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() not in HOP_BY_HOP
    ]
    headers.append((b"x-request-id", request.state.request_id.encode()))
    if request.client:
        headers.append((b"x-forwarded-for", request.client.host.encode()))
    upstream_request = client.build_request(
        request.method,
        base_url + request.url.path,
        params=request.url.query,
        headers=headers,
        content=request.stream(),
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(extra={"upstream": service}) from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(extra={"upstream": service}) from exc
    response_headers = {
        name: value
        for name, value in upstream.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in OWN_RESPONSE_HEADERS
    }
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=response_headers,
        background=BackgroundTask(upstream.aclose),
    )
