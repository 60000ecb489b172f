"""Identity's HTTP endpoints (CONTRACT.md, "Identity")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from starlette.responses import JSONResponse

from panjereh.common.dependencies import DatabaseDep, DbReading, DbSession, IdempotencyKey
from panjereh.common.idempotency import REPLAYED_HEADER
from panjereh.identity.dependencies import (
    AppKeys,
    AppKeySource,
    AppSettings,
    CurrentCitizen,
    Inquiries,
    Now,
    OAuthForm,
    PlatformAdmin,
    RateLimitedOtpRequest,
    SessionEndedHere,
    Sms,
)
from panjereh.identity.errors import UnsupportedGrantType
from panjereh.identity.schemas import (
    CitizenRead,
    ClientCreate,
    ClientRead,
    ClientTokenRead,
    ClientWithSecret,
    DevSmsList,
    EndedSessionsRead,
    LogoutRequest,
    Mobile,
    NationalCode,
    OtpChallengeRead,
    OtpVerify,
    StaffRolesRead,
    StaffRolesUpdate,
    TokenPairRead,
)
from panjereh.identity.service import account, admin, dev, login, tokens

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
keys_router = APIRouter(tags=["keys"])
dev_router = APIRouter(prefix="/api/v1/dev", tags=["dev"])
me_router = APIRouter(prefix="/api/v1/me", tags=["me"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

_TOKEN_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {
                            "type": "string",
                            "enum": ["refresh_token", "client_credentials"],
                        },
                        "refresh_token": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "scope": {"type": "string"},
                    },
                }
            }
        },
    }
}


@auth_router.post(
    "/otp",
    status_code=202,
    response_model=OtpChallengeRead,
)
async def request_otp(
    *,
    body: RateLimitedOtpRequest,
    database: DatabaseDep,
    settings: AppSettings,
    keys: AppKeys,
    sms: Sms,
    inquiries: Inquiries,
    now: Now,
) -> OtpChallengeRead:
    """Send a one-time login code by SMS to a mobile registered to the national code."""
    return await login.request_otp(
        database,
        national_code=body.national_code,
        mobile=body.mobile,
        keys=keys,
        sms=sms,
        settings=settings,
        inquiries=inquiries,
        now=now,
    )


@auth_router.post("/otp/verify", responses={200: {"model": TokenPairRead}})
async def verify_otp(
    *,
    body: OtpVerify,
    database: DatabaseDep,
    settings: AppSettings,
    keys: AppKeys,
    key_source: AppKeySource,
    inquiries: Inquiries,
    now: Now,
) -> JSONResponse:
    """Exchange the code for tokens; the first success registers the citizen."""
    pair = await login.verify_otp(
        database,
        challenge_id=body.challenge_id,
        code=body.code,
        keys=keys,
        key_source=key_source,
        settings=settings,
        inquiries=inquiries,
        now=now,
    )
    return JSONResponse(pair.model_dump(mode="json"), headers=NO_STORE)


@auth_router.post(
    "/token",
    openapi_extra=_TOKEN_FORM,
    responses={200: {"model": TokenPairRead | ClientTokenRead}},
)
async def token(
    *,
    form: OAuthForm,
    session: DbSession,
    settings: AppSettings,
    keys: AppKeys,
    key_source: AppKeySource,
    now: Now,
    session_ended: SessionEndedHere,
) -> JSONResponse:
    """OAuth 2.0 token endpoint: ``refresh_token`` and ``client_credentials`` grants."""
    grant_type = form.require("grant_type")
    result: TokenPairRead | ClientTokenRead
    if grant_type == "refresh_token":
        result = await tokens.refresh_tokens(
            session,
            refresh_token=form.require("refresh_token"),
            keys=keys,
            key_source=key_source,
            settings=settings,
            now=now,
            session_ended=session_ended,
        )
    elif grant_type == "client_credentials":
        client_id, client_secret = form.client()
        scope = form.get("scope")
        result = await tokens.client_credentials(
            session,
            client_id=client_id,
            client_secret=client_secret,
            scopes=scope.split() if scope else None,
            keys=keys,
            key_source=key_source,
            settings=settings,
            now=now,
        )
    else:
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
    return JSONResponse(result.model_dump(mode="json"), headers=NO_STORE)


@auth_router.post("/logout", status_code=204)
async def logout(
    *,
    citizen: CurrentCitizen,
    session: DbSession,
    keys: AppKeys,
    now: Now,
    session_ended: SessionEndedHere,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    """End this login session (its refresh-token family): every service refuses its access
    tokens within seconds (401 ``token_revoked``)."""
    await tokens.logout(
        session,
        citizen_id=citizen.subject,
        access_token_id=citizen.token_id,
        refresh_token=body.refresh_token if body else None,
        keys=keys,
        now=now,
        session_ended=session_ended,
    )
    return Response(status_code=204)


@me_router.get("")
async def me(citizen: CurrentCitizen, session: DbReading) -> CitizenRead:
    """The signed-in citizen's profile, as the civil registry gave it."""
    return await account.me(session, citizen_id=citizen.subject)


@admin_router.put("/staff/{national_code}/roles")
async def set_staff_roles(
    *,
    national_code: Annotated[NationalCode, Path()],
    body: StaffRolesUpdate,
    caller: PlatformAdmin,
    session: DbSession,
) -> StaffRolesRead:
    """Set the roles a staff member holds (replaces them all)."""
    return await admin.set_staff_roles(
        session, national_code=national_code, roles=body.roles, granted_by=caller.subject
    )


@admin_router.get("/clients")
async def list_clients(_: PlatformAdmin, session: DbSession) -> list[ClientRead]:
    """Machine clients (never their secrets)."""
    return await admin.list_clients(session)


@admin_router.post("/clients", status_code=201, responses={201: {"model": ClientWithSecret}})
async def create_client(
    *,
    body: ClientCreate,
    caller: PlatformAdmin,
    idempotency_key: IdempotencyKey,
    session: DbSession,
    keys: AppKeys,
    now: Now,
) -> JSONResponse:
    """A new machine client; the secret is in this answer only (repeat it with Idempotency-Key)."""
    created = await admin.create_client_once(
        session,
        spec=body,
        keys=keys,
        now=now,
        actor=caller.subject,
        idempotency_key=idempotency_key,
    )
    headers = {**NO_STORE, **({REPLAYED_HEADER: "true"} if created.replayed else {})}
    return JSONResponse(created.client.model_dump(mode="json"), status_code=201, headers=headers)


@admin_router.post("/clients/{client_id}/rotate", responses={200: {"model": ClientWithSecret}})
async def rotate_client_secret(
    *, client_id: str, _: PlatformAdmin, session: DbSession, keys: AppKeys, now: Now
) -> JSONResponse:
    """A new secret for the client; the old one stops working now."""
    rotated = await admin.rotate_client_secret(session, client_id=client_id, keys=keys, now=now)
    return JSONResponse(rotated.model_dump(mode="json"), headers=NO_STORE)


@admin_router.delete("/clients/{client_id}", status_code=204)
async def revoke_client(
    *, client_id: str, _: PlatformAdmin, session: DbSession, now: Now
) -> Response:
    """Revoke the client: it can no longer get tokens."""
    await admin.revoke_client(session, client_id=client_id, now=now)
    return Response(status_code=204)


@keys_router.get("/.well-known/jwks.json")
async def jwks(key_source: AppKeySource) -> JSONResponse:
    """Public keys that verify access tokens: the current, the next and recently retired."""
    keyset = await key_source.keyset()
    return JSONResponse(keyset.jwks(), headers={"Cache-Control": "public, max-age=300"})


@keys_router.get("/.well-known/revoked-sessions", responses={200: {"model": EndedSessionsRead}})
async def revoked_sessions(
    session: DbReading,
    settings: AppSettings,
    now: Now,
    since: Annotated[datetime | None, Query(description="the previous answer's `next`")] = None,
) -> JSONResponse:
    """Login sessions ended lately (opaque ids): every service polls it and refuses their
    access tokens."""
    ended = await tokens.ended_sessions(session, since=since, settings=settings, now=now)
    return JSONResponse(ended.model_dump(mode="json"), headers=NO_STORE)


@dev_router.get("/sms-outbox")
async def sms_outbox(session: DbReading, mobile: Annotated[Mobile, Query()]) -> DevSmsList:
    """Dev mode only: the messages the console SMS gateway "sent" to this mobile."""
    return await dev.sms_outbox(session, mobile=mobile)
