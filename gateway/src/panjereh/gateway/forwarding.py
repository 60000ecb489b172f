"""What crosses the gateway in headers, in both directions.

Towards a service, the gateway is the only author of the forwarding and identity headers:
whatever a client wrote in ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP`` or an internal
identity header is dropped, and the gateway sets ``X-Forwarded-For`` (the client address it
determined), ``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``X-Request-ID`` and ``traceparent``
itself. The client address is the connection's peer, unless the peer is one of the configured
trusted proxies (the ingress controller): then its ``X-Forwarded-For`` is read from the right,
skipping trusted proxies, and the first other address is the client. Entries further left were
written by the client and are never believed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable

# ------------------------------------------------------------------------------- requests
#: What each request header means to the gateway; a header not listed is forwarded as is.
FORWARD, DROP, AUTHORIZATION, CONTENT_LENGTH, CHUNKED, REQUEST_ID, TRACEPARENT = range(7)
HOST, FORWARDED_FOR, FORWARDED_PROTO, ORIGIN, CONNECTION = range(7, 12)

REQUEST_HEADERS: dict[bytes, int] = {
    # RFC 9110 §7.6.1 connection-specific headers; the gateway frames bodies itself
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"proxy-authorization": DROP,
    b"proxy-authenticate": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"upgrade": DROP,
    b"expect": DROP,  # uvicorn answers 100-continue; the upstream gets the body anyway
    b"transfer-encoding": CHUNKED,
    b"content-length": CONTENT_LENGTH,
    b"host": HOST,
    # forwarding headers: only the gateway writes them
    b"x-forwarded-for": FORWARDED_FOR,
    b"x-forwarded-proto": FORWARDED_PROTO,
    b"x-forwarded-host": DROP,
    b"x-forwarded-port": DROP,
    b"x-forwarded-prefix": DROP,
    b"x-forwarded-server": DROP,
    b"x-forwarded-scheme": DROP,
    b"x-forwarded-ssl": DROP,
    b"forwarded": DROP,
    b"x-real-ip": DROP,
    b"x-client-ip": DROP,
    b"true-client-ip": DROP,
    b"x-cluster-client-ip": DROP,
    b"cf-connecting-ip": DROP,
    b"x-original-forwarded-for": DROP,
    # internal identity headers: a service must only ever learn who calls from the token
    b"x-remote-user": DROP,
    b"remote-user": DROP,
    b"x-client-id": DROP,
    b"x-principal": DROP,
    b"x-subject": DROP,
    b"x-roles": DROP,
    b"x-national-code": DROP,
    b"x-original-url": DROP,
    b"x-rewrite-url": DROP,
    b"x-http-method-override": DROP,
    b"x-method-override": DROP,
    # re-issued by the gateway
    b"x-request-id": REQUEST_ID,
    b"traceparent": TRACEPARENT,
    b"authorization": AUTHORIZATION,
    b"origin": ORIGIN,
}
#: Families of internal headers, dropped whatever follows the prefix.
DROPPED_PREFIXES = (
    b"x-panjereh-",
    b"x-user",
    b"x-auth",
    b"x-forwarded-",
    b"x-internal-",
    b"x-envoy-",
    b"x-amzn-",
)

# ------------------------------------------------------------------------------- responses
#: Upstream response headers that are the gateway's (or the connection's) to write.
RESPONSE_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"date",
        b"server",
        b"x-request-id",
        b"traceparent",
    }
)
#: Headers the gateway adds to an answer only when the upstream did not choose its own.
SECURITY_HEADERS = frozenset(
    {
        b"content-security-policy",
        b"x-content-type-options",
        b"referrer-policy",
        b"x-frame-options",
        b"strict-transport-security",
    }
)

# ------------------------------------------------------------------------------- request ids
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(incoming: bytes | None) -> bytes:
    """The client's ``X-Request-ID`` when well formed (same rule as the kernel's), else new."""
    if incoming is not None and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex().encode()


# ------------------------------------------------------------------------------- trace context
_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def child_traceparent(incoming: bytes | None) -> bytes:
    """W3C ``traceparent`` for the gateway's hop: the caller's trace continued with a new span
    id, or a new unsampled trace when the caller sent none (or a malformed one)."""
    span = os.urandom(8).hex().encode()
    if incoming is not None:
        found = _TRACEPARENT.fullmatch(incoming.strip())
        if found and found[1] != _ZERO_TRACE and found[2] != _ZERO_SPAN:
            return b"00-" + found[1] + b"-" + span + b"-" + found[3]
    return b"00-" + os.urandom(16).hex().encode() + b"-" + span + b"-00"


# ------------------------------------------------------------------------------- client address
class ClientAddress:
    """The caller's address from the peer and, only from trusted proxies, ``X-Forwarded-For``."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        self._verdicts: dict[str, bool] = {}

    @property
    def trusts_anyone(self) -> bool:
        return bool(self._networks)

    def is_trusted(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                verdict = False
            else:
                verdict = any(ip in network for network in self._networks)
            if len(self._verdicts) > 4096:
                self._verdicts.clear()  # peers are few; a flood of new ones must not grow this
            self._verdicts[address] = verdict
        return verdict

    def resolve(self, peer: str | None, forwarded_for: list[bytes]) -> str:
        if peer is None:
            return "unknown"
        if not self._networks or not forwarded_for or not self.is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in forwarded_for
            for hop in header.decode("latin-1").split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # garbage where an address should be: the proxy is the client
        return hops[0] if hops else peer

    def scheme(self, peer: str | None, own_scheme: str, forwarded_proto: bytes | None) -> str:
        """``https`` when this connection or, from a trusted proxy, the client's was TLS."""
        if forwarded_proto is not None and peer is not None and self.is_trusted(peer):
            proto = forwarded_proto.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            if proto in ("http", "https"):
                return proto
        return own_scheme
