"""The published API description: every contract path, and the dev outbox only in dev mode."""

from __future__ import annotations

from panjereh.identity.config import Settings
from panjereh.identity.main import create_app

CONTRACT_PATHS = {
    "/api/v1/auth/otp",
    "/api/v1/auth/otp/verify",
    "/api/v1/auth/token",
    "/api/v1/auth/logout",
    "/api/v1/me",
    "/.well-known/jwks.json",
    "/api/v1/admin/staff/{national_code}/roles",
    "/api/v1/admin/clients",
    "/api/v1/admin/clients/{client_id}/rotate",
    "/api/v1/admin/clients/{client_id}",
}


def test_every_contract_path_is_served_and_documented() -> None:
    spec = create_app(Settings(environment="dev")).openapi()
    assert CONTRACT_PATHS | {"/api/v1/dev/sms-outbox"} <= set(spec["paths"])
    verify = spec["paths"]["/api/v1/auth/otp/verify"]["post"]
    assert "TokenPairRead" in str(verify["responses"]["200"])


def test_the_dev_outbox_does_not_exist_outside_dev_mode() -> None:
    spec = create_app(
        Settings(environment="test", secret_key="k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r")
    ).openapi()
    assert "/api/v1/dev/sms-outbox" not in spec["paths"]
    assert set(spec["paths"]) >= CONTRACT_PATHS
