"""Where a request goes: its normalised path, the upstream, whether it needs a token, its cost.

Every decision is taken on the path :func:`normalise` returns, and exactly that path is
forwarded. Dot segments (also encoded, or with ``;`` parameters), encoded slashes and
backslashes, double-encoded ones and control characters are refused with 400 before any
route is chosen: an upstream must never see a path that resolves somewhere the gateway did not
route it (``/api/v1/catalog/%2e%2e/%2e%2e/openapi.json`` was one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from panjereh.gateway.config import RouteClass

#: The gateway's own paths (served by its own app, never forwarded).
OWN_PATHS = frozenset({"/livez", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
#: Process-internal paths of any upstream (the portal's included): never reachable from outside.
INTERNAL_PATHS = frozenset({"/metrics", "/redoc", "/livez", "/readyz", "/openapi.json", "/docs"})
#: Anything under these belongs to the API: it is routed to a service or refused, never handed
#: to the portal.
API_PREFIXES = ("/api/", "/.well-known/")
PORTAL = "portal"

# An escape of ".", "/", "\" or "%" itself (double encoding), or of a control character.
_REFUSED_ESCAPE = re.compile(rb"%(?:2[eEfF5]|5[cC]|[01][0-9a-fA-F]|7[fF])")
_REFUSED_RAW = re.compile(rb"[\x00-\x20\x7f\\]")
# "." or "..", alone or with path parameters ("..;/" resolves as "../" in some servers)
_DOT_SEGMENT = re.compile(rb"(?:^|/)\.{1,2}(?:(?:;|%3[bB])[^/]*)?(?:/|$)")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/api", "/.well-known")


class BadPath(ValueError):
    """The path cannot be routed safely."""


def normalise(raw_path: bytes) -> tuple[str, bytes]:
    """``(decoded path, raw path to forward)``; repeated slashes collapse; :class:`BadPath`
    for everything that could resolve elsewhere downstream.

    An escaped dot is refused outright rather than decoded: no client of ours needs one, and a
    path with none cannot hold an encoded dot segment however a server decodes it.
    """
    if not raw_path.startswith(b"/"):
        raise BadPath("not an origin-form path")
    if _REFUSED_RAW.search(raw_path) or _REFUSED_ESCAPE.search(raw_path):
        raise BadPath("escaped separator, dot or control character")
    if b"//" in raw_path:
        raw_path = re.sub(rb"/{2,}", b"/", raw_path)
    if _DOT_SEGMENT.search(raw_path):
        raise BadPath("dot segment")
    try:
        path = unquote(raw_path.decode("ascii"), errors="strict")
    except UnicodeError as exc:
        raise BadPath("not UTF-8 once decoded") from exc
    return path, raw_path


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    upstream: str


class RouteTable:
    """Path prefix → upstream; the longest prefix wins."""

    def __init__(self, routes: Mapping[str, str], *, portal: bool) -> None:
        self.routes = tuple(
            Route(prefix, upstream)
            for prefix, upstream in sorted(routes.items(), key=lambda item: -len(item[0]))
        )
        self.portal = portal

    def api_route(self, path: str) -> Route | None:
        for route in self.routes:
            prefix = route.prefix
            if path.startswith(prefix) and (
                # a prefix without a trailing slash names a resource: match it and below only,
                # so "/api/v1/me" does not capture "/api/v1/measures"
                prefix.endswith("/") or len(path) == len(prefix) or path[len(prefix)] == "/"
            ):
                return route
        return None

    def match(self, path: str) -> Route | None:
        """The route for ``path``: a service, the portal, or ``None`` (404)."""
        route = self.api_route(path)
        if route is not None:
            return route
        if is_api(path) or path in INTERNAL_PATHS or path.startswith("/docs/"):
            return None
        return Route("/", PORTAL) if self.portal else None

    def upstream_for(self, path: str) -> str | None:
        route = self.match(path)
        return route.upstream if route else None


class AccessRules:
    """Which ``(method, path)`` may be called without an access token."""

    def __init__(self, patterns: Iterable[str]) -> None:
        by_method: dict[str, list[str]] = {}
        for pattern in patterns:
            method, _, path = pattern.strip().partition(" ")
            if not path.startswith("/"):
                msg = f"public route {pattern!r}: expected 'METHOD /path'"
                raise ValueError(msg)
            methods = [method.upper()] + (["HEAD"] if method.upper() == "GET" else [])
            for name in methods:
                by_method.setdefault(name, []).append(_pattern_regex(path.strip()))
        self._by_method = {
            method: re.compile("|".join(f"(?:{regex})" for regex in regexes))
            for method, regexes in by_method.items()
        }

    def is_public(self, method: str, path: str) -> bool:
        regex = self._by_method.get(method)
        return regex is not None and regex.fullmatch(path) is not None


def _pattern_regex(path: str) -> str:
    if path.endswith("/**"):
        return re.escape(path[:-3]) + "(?:/.*)?"
    return "/".join("[^/]+" if part == "*" else re.escape(part) for part in path.split("/"))


#: Exact ``(method, path)`` pairs with a class of their own; the rest are reads or writes.
_CLASSES: dict[tuple[str, str], RouteClass] = {
    ("POST", "/api/v1/auth/otp"): RouteClass.OTP_REQUEST,
    ("POST", "/api/v1/auth/otp/verify"): RouteClass.OTP_VERIFY,
    ("POST", "/api/v1/auth/token"): RouteClass.TOKEN,
    ("GET", "/api/v1/catalog/services"): RouteClass.SEARCH,
    ("HEAD", "/api/v1/catalog/services"): RouteClass.SEARCH,
}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_class(method: str, path: str) -> RouteClass:
    found = _CLASSES.get((method, path.rstrip("/") or "/"))
    if found is not None:
        return found
    return RouteClass.READ if method in _SAFE_METHODS else RouteClass.WRITE
