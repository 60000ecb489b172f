"""What endpoints receive: the broker's runtime, typed callers and options."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from panjereh.common.auth import (
    Principal,
    require_role,
    require_role_with_claim,
    require_scope,
    require_that,
)
from panjereh.common.errors import Text
from panjereh.contracts import access
from panjereh.inquiry_broker.runtime import BrokerRuntime


async def _runtime(request: Request) -> BrokerRuntime:
    runtime: BrokerRuntime = request.app.state.broker
    return runtime


Runtime = Annotated[BrokerRuntime, Depends(_runtime)]


async def _audit_chain_key(request: Request) -> bytes:
    key: bytes = request.app.state.audit_chain_key
    return key


#: The key of the audit chain's MACs (a setting; never in the database).
AuditChainKey = Annotated[bytes, Depends(_audit_chain_key)]

#: A machine client: an agency's (``client:<agency>``) or a platform service's.
CurrentClient = Annotated[
    Principal,
    Depends(
        require_that(
            access.is_client,
            refusal=Text("این کار ویژه سامانه‌های متصل است", "Only machine clients may do this"),
        )
    ),
]
_InquiriesScope = Annotated[Principal, Depends(require_scope(access.INQUIRIES_SCOPE))]


async def _inquiring_client(client: CurrentClient, _scoped: _InquiriesScope) -> Principal:
    return client


#: A machine client whose token carries the ``inquiries`` scope: who may ask at all (a client
#: without it is 403 ``insufficient_scope``, before the policy is even asked).
InquiringClient = Annotated[Principal, Depends(_inquiring_client)]
#: A citizen; a citizen token without a national code is refused as invalid (401).
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


async def _citizens_national_code(citizen: CurrentCitizen) -> str:
    national_code = access.national_code_of(citizen)
    assert national_code  # CurrentCitizen refuses a citizen token without one
    return national_code


#: The national code of the calling citizen (personal data: never logged).
CitizensNationalCode = Annotated[str, Depends(_citizens_national_code)]

WaitSeconds = Annotated[
    float,
    Query(ge=0, le=10, description="seconds to wait for the answer (at most 10)"),
]
