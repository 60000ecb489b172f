"""The public route table (CONTRACT.md, "Routing at the gateway"): longest prefix wins."""

from __future__ import annotations

ROUTES: tuple[tuple[str, str], ...] = (
    ("/api/v1/catalog/", "catalog"),
    ("/api/v1/auth/", "identity"),
    ("/api/v1/me/data-access", "inquiry-broker"),
    ("/api/v1/me", "identity"),
    ("/api/v1/admin/", "identity"),
    ("/api/v1/dev/", "identity"),
    ("/.well-known/", "identity"),
    ("/api/v1/requests", "requests"),
    ("/api/v1/agency/", "requests"),
    ("/api/v1/verify/", "requests"),
    ("/api/v1/inquiries", "inquiry-broker"),
    ("/api/v1/inquiry-types", "inquiry-broker"),
    ("/api/v1/audit/", "inquiry-broker"),
)

_BY_LENGTH = sorted(ROUTES, key=lambda route: len(route[0]), reverse=True)


def _matches(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix)
    # a prefix without a trailing slash names a resource: match it and its sub-paths only,
    # so "/api/v1/me" does not capture "/api/v1/measures"
    return path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?")


def upstream_for(path: str) -> str | None:
    """The upstream service name for ``path``, or ``None`` when no route matches."""
    for prefix, upstream in _BY_LENGTH:
        if _matches(path, prefix):
            return upstream
    return None
