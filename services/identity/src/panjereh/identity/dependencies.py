"""Typed dependencies: resources, the caller, the client's address, the OAuth form.

Units of work come from the kernel (``panjereh.common.dependencies``): ``DbSession`` for an
endpoint that only touches the database, ``DatabaseDep`` for one whose use case calls out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl, unquote_plus

from fastapi import Depends, Request

from panjereh.common.auth import (
    Principal,
    TokenVerifier,
    require_role,
    require_role_with_claim,
)
from panjereh.common.dependencies import DatabaseDep
from panjereh.common.errors import Text
from panjereh.contracts import access
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys
from panjereh.identity.errors import InvalidClient, InvalidRequest
from panjereh.identity.inquiries import InquiryClient
from panjereh.identity.keys import DatabaseKeySource, SecretKeySource
from panjereh.identity.schemas import OtpRequest
from panjereh.identity.service import ratelimits
from panjereh.identity.service.tokens import SessionEnded
from panjereh.identity.sms import SmsQueue

MAX_FORM_BYTES = 8 * 1024


# ------------------------------------------------------------------------ resources
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


async def get_key_source(request: Request) -> SecretKeySource | DatabaseKeySource:
    source: SecretKeySource | DatabaseKeySource = request.app.state.key_source
    return source


async def get_inquiries(request: Request) -> InquiryClient:
    client: InquiryClient = request.app.state.inquiries
    return client


async def get_sms(request: Request) -> SmsQueue:
    sms: SmsQueue = request.app.state.sms
    return sms


async def get_now() -> datetime:
    return datetime.now(UTC)


async def get_session_ended(request: Request) -> SessionEnded:
    """What to tell this process's own verifier when a use case ends a session."""
    verifier: TokenVerifier = request.app.state.token_verifier
    settings: Settings = request.app.state.settings
    lifetime = settings.access_token_ttl_seconds + settings.jwt_leeway_seconds

    def ended(session_id: str) -> None:
        if verifier.revocations is not None:
            verifier.revocations.add(session_id, time.time() + lifetime)

    return ended


AppSettings = Annotated[Settings, Depends(get_settings)]
AppKeys = Annotated[Keys, Depends(get_keys)]
AppKeySource = Annotated[SecretKeySource | DatabaseKeySource, Depends(get_key_source)]
Inquiries = Annotated[InquiryClient, Depends(get_inquiries)]
Sms = Annotated[SmsQueue, Depends(get_sms)]
Now = Annotated[datetime, Depends(get_now)]
SessionEndedHere = Annotated[SessionEnded, Depends(get_session_ended)]


# ------------------------------------------------------------------------ the caller
#: a person signed in with OTP (citizens and staff): 403 for machine clients, 401 for a
#: citizen token without its national code
CurrentCitizen = Annotated[
    Principal,
    Depends(
        require_role_with_claim(
            access.CITIZEN,
            access.NATIONAL_CODE_CLAIM,
            refusal=Text("این کار ویژه شهروندان است", "Only citizens may do this"),
        )
    ),
]
PlatformAdmin = Annotated[Principal, Depends(require_role(access.PLATFORM_ADMIN))]


# ------------------------------------------------------------------------ client address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    """The trusted proxies' networks, parsed once per setting (not at every request)."""
    return tuple(ipaddress.ip_network(network, strict=False) for network in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[str]) -> str:
    """The caller's address: the peer, unless the peer is a trusted proxy (the gateway).

    Then ``X-Forwarded-For`` is read from the right, skipping trusted proxies; the first
    other address is the client. Entries to its left were written by the client itself and
    are never believed.
    """
    networks = _networks(tuple(trusted))

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if peer is None:
        return "unknown"
    if not is_trusted(peer):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address should be: fall back to the proxy
    return hops[0] if hops else peer


async def get_client_ip(request: Request, settings: AppSettings) -> str:
    forwarded = [
        value.decode("latin-1")
        for name, value in request.scope.get("headers", [])
        if name.lower() == b"x-forwarded-for"
    ]
    peer = request.client.host if request.client else None
    return client_address(peer, forwarded, settings.trusted_proxies)


ClientIp = Annotated[str, Depends(get_client_ip)]


async def rate_limited_otp_request(
    *,
    body: OtpRequest,
    database: DatabaseDep,
    client_ip: ClientIp,
    settings: AppSettings,
    keys: AppKeys,
    now: Now,
) -> OtpRequest:
    """The OTP request body, once per-mobile and per-address limits allow it.

    The hits are counted by one statement that commits by itself, whatever happens next.
    """
    await ratelimits.count_otp_request(
        database,
        keys=keys,
        settings=settings,
        mobile=body.mobile,
        client_ip=client_ip,
        now=now,
    )
    return body


RateLimitedOtpRequest = Annotated[OtpRequest, Depends(rate_limited_otp_request)]


# ------------------------------------------------------------------------ OAuth 2.0 form
@dataclass(frozen=True)
class TokenForm:
    """The token endpoint's ``application/x-www-form-urlencoded`` body (RFC 6749 §3.2)."""

    fields: dict[str, str]
    basic_client: tuple[str, str] | None

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    def require(self, name: str) -> str:
        value = self.fields.get(name)
        if not value:
            raise InvalidRequest(f"{name} is required")
        return value

    def client(self) -> tuple[str, str]:
        """Client id and secret, from HTTP Basic or the body (never both, RFC 6749 §2.3)."""
        in_body = self.get("client_id"), self.get("client_secret")
        if self.basic_client is not None:
            if in_body[1] is not None:
                raise InvalidRequest("use one client authentication method")
            return self.basic_client
        if not in_body[0] or not in_body[1]:
            raise InvalidClient("client authentication is required")
        return in_body[0], in_body[1]


async def get_token_form(request: Request) -> TokenForm:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidRequest("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the form is not UTF-8") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise InvalidRequest(f"{name} appears more than once")
        fields[name] = value
    return TokenForm(fields=fields, basic_client=_basic_credentials(request))


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed Basic credentials") from exc
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise InvalidClient("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding
    return unquote_plus(client_id), unquote_plus(secret)


OAuthForm = Annotated[TokenForm, Depends(get_token_form)]
