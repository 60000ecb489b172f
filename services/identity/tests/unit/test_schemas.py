"""Field problems speak both languages and carry stable codes (no "Value error, ..." text)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from panjereh.common.fields import translate
from panjereh.identity.schemas import ClientCreate, OtpRequest, OtpVerify, StaffRolesUpdate


def only_error(model: type[BaseModel], payload: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    [error] = caught.value.errors()
    return dict(error)


@pytest.mark.parametrize(
    ("model", "payload", "field", "code"),
    [
        (
            OtpRequest,
            {"national_code": "0684159415", "mobile": "09121234567"},
            "national_code",
            "national_code_checksum",
        ),
        (OtpRequest, {"national_code": "0499370899", "mobile": "12"}, "mobile", "mobile_format"),
        (
            OtpVerify,
            {"challenge_id": "6d1f3b4e-8a2c-4f7e-9b1d-2c3e4f5a6b7c", "code": "1"},
            "code",
            "otp_code_format",
        ),
        (StaffRolesUpdate, {"roles": ["emperor"]}, "roles.0", "staff_role_unknown"),
        (ClientCreate, {"agency": "tax", "scopes": ["Bad Scope"]}, "scopes.0", "scope_format"),
        (ClientCreate, {"agency": "tax", "service": "requests"}, "body", "client_owner"),
    ],
)
def test_each_validator_names_its_problem(
    model: type[BaseModel], payload: dict[str, Any], field: str, code: str
) -> None:
    translated = translate(only_error(model, payload))
    assert (translated.field, translated.code) == (field, code)
    assert set(translated.message) == {"fa", "en"}
    assert any("\u0600" <= character <= "\u06ff" for character in translated.message["fa"])
    assert not translated.message["en"].startswith("Value error")


def test_staff_roles_come_from_the_platform_vocabulary() -> None:
    roles = ["officer:tax", "agency-admin:civil-registry", "catalog-authority", "platform-admin"]
    assert StaffRolesUpdate.model_validate({"roles": roles}).roles == roles
    for wrong in ("officer", "officer:", "citizen", "client:tax", "platform-admin:tax"):
        with pytest.raises(ValidationError):
            StaffRolesUpdate.model_validate({"roles": [wrong]})
