"""API shapes of the identity service (CONTRACT.md, "Identity")."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from panjereh.common.fields import FieldProblem
from panjereh.contracts import access
from panjereh.contracts.identifiers import ascii_digits, normalize_mobile, normalize_national_code

# Validators raise InvalidIdentifier (from the normalisers) or FieldProblem: both carry a stable
# ``code`` and Persian and English messages, which the kernel renders in the caller's language.


def _otp_code(value: str) -> str:
    code = ascii_digits(value.strip())
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        raise FieldProblem("otp_code_format", fa="کد ۶ رقم دارد", en="the code has 6 digits")
    return code


NationalCode = Annotated[str, Field(max_length=32), AfterValidator(normalize_national_code)]
Mobile = Annotated[str, Field(max_length=32), AfterValidator(normalize_mobile)]
OtpCode = Annotated[str, Field(max_length=16), AfterValidator(_otp_code)]

_AGENCY = r"[a-z][a-z0-9-]{1,62}"
_AGENCY_ROLES = "|".join(re.escape(role) for role in access.AGENCY_ROLES)
_OTHER_STAFF_ROLES = "|".join(
    re.escape(role) for role in access.STAFF_ROLES if role not in access.AGENCY_ROLES
)
_ROLE = re.compile(rf"^(?:(?:{_AGENCY_ROLES}):{_AGENCY}|{_OTHER_STAFF_ROLES})$")
_ROLE_FORMS = (
    f"{access.OFFICER}:<agency>, {access.AGENCY_ADMIN}:<agency>, "
    f"{access.CATALOG_AUTHORITY}, {access.PLATFORM_ADMIN}"
)
_SCOPE = re.compile(r"^[a-z][a-z0-9:._-]{0,63}$")
AgencyCode = Annotated[str, Field(pattern=rf"^{_AGENCY}$")]


def _staff_role(value: str) -> str:
    if not _ROLE.match(value):
        raise FieldProblem(
            "staff_role_unknown",
            fa=f"نقش کارکنان یکی از این‌هاست: {_ROLE_FORMS}",
            en=f"a staff role is one of {_ROLE_FORMS}",
        )
    return value


def _scope(value: str) -> str:
    if not _SCOPE.match(value):
        raise FieldProblem(
            "scope_format",
            fa="دامنه دسترسی از حروف کوچک لاتین، رقم و : . _ - ساخته می‌شود",
            en="a scope is lower-case letters, digits and : . _ -",
        )
    return value


StaffRoleName = Annotated[str, AfterValidator(_staff_role)]
Scope = Annotated[str, AfterValidator(_scope)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------ OTP login
class OtpRequest(Strict):
    national_code: NationalCode
    mobile: Mobile


class OtpChallengeRead(BaseModel):
    challenge_id: uuid.UUID
    expires_in: int
    resend_after: int


class OtpVerify(Strict):
    challenge_id: uuid.UUID
    code: OtpCode


class TokenPairRead(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type
    expires_in: int


class ClientTokenRead(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type
    expires_in: int
    scope: str


class LogoutRequest(Strict):
    refresh_token: str | None = Field(default=None, max_length=512)


# ------------------------------------------------------------------------ me
class CitizenRead(BaseModel):
    national_code: str
    first_name: str
    last_name: str
    birth_date: date | None
    mobile: str
    registered_at: datetime
    roles: list[str]


# ------------------------------------------------------------------------ admin
class StaffRolesUpdate(Strict):
    roles: list[StaffRoleName] = Field(max_length=50)


class StaffRolesRead(BaseModel):
    national_code: str
    roles: list[str]


class ClientCreate(Strict):
    client_id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{2,62}$")
    agency: AgencyCode | None = None
    service: AgencyCode | None = None
    scopes: list[Scope] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_owner(self) -> ClientCreate:
        if (self.agency is None) == (self.service is None):
            raise FieldProblem(
                "client_owner",
                fa="کلاینت دقیقاً از آن یک دستگاه (agency) یا یک سرویس (service) است",
                en="a client belongs to exactly one agency or one service",
            )
        return self


class ClientRead(BaseModel):
    client_id: str
    agency: str | None
    service: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ClientWithSecret(ClientRead):
    #: shown once, at creation and rotation; only its hash is stored
    client_secret: str


# ------------------------------------------------------------------------ dev
class DevSmsRead(BaseModel):
    mobile: str
    template: str
    tokens: list[str]
    text: str
    sent_at: datetime


class DevSmsList(BaseModel):
    items: list[DevSmsRead]


class EndedSessionRead(BaseModel):
    #: the session's id, as access tokens carry it in ``sid``
    sid: str
    #: when (epoch seconds) the last access token of the session expires anyway
    until: int


class EndedSessionsRead(BaseModel):
    """Login sessions ended lately (logout, a replayed refresh token): no one's identity, only
    opaque session ids. ``next`` is the ``since`` of the next poll."""

    sessions: list[EndedSessionRead]
    next: str
