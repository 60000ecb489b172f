"""What the gateway itself answers, as problem+json (rendered by the kernel)."""

from __future__ import annotations

from panjereh.common.errors import AppError, Forbidden, NotFound, Text


class UpstreamUnavailable(AppError):
    status = 503
    code = "upstream_unavailable"
    title = Text("سرویس مقصد در دسترس نیست", "The upstream service is unavailable")


class UpstreamTimeout(AppError):
    status = 504
    code = "upstream_timeout"
    title = Text("سرویس مقصد به موقع پاسخ نداد", "The upstream service did not answer in time")


class BadUpstreamResponse(AppError):
    status = 502
    code = "bad_upstream_response"
    title = Text("پاسخ سرویس مقصد نادرست بود", "The upstream service gave a malformed answer")


class RouteNotFound(NotFound):
    code = "route_not_found"


class PortalNotConfigured(NotFound):
    code = "portal_not_configured"
    title = Text("درگاه وب در این نشانی ارائه نمی‌شود", "The web portal is not served here")


class PathRefused(AppError):
    status = 400
    code = "path_refused"
    title = Text(
        "نشانی درخواست پذیرفته نیست",
        "The request path is refused (dot segments, encoded separators or control characters)",
    )


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"
    title = Text("این مبدأ اجازه فراخوانی ندارد", "This origin may not call the API")
