"""Settings that refuse unsafe production setups; the keyed hashes and encryption at rest."""

from __future__ import annotations

import re

import pytest
from cryptography.exceptions import InvalidTag
from pydantic import ValidationError

from panjereh.common.jwk import generate_private_key, private_pem
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys, new_opaque_token, new_otp_code
from panjereh.identity.keys import main

REAL_SECRET = "b3f1c0a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9"
PROVIDER_KEY = "4b6E7a2F9c1D8e3G5h0J6k2L9m4N7p1Q"


class TestProductionSettings:
    def test_the_dev_master_secret_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="secret_key"):
            Settings(
                environment="prod",
                signing_key_pem=private_pem(generate_private_key()),
                sms_provider="verify-lookup",
                sms_api_key=PROVIDER_KEY,
            )

    def test_keys_must_come_from_a_secret(self) -> None:
        with pytest.raises(ValidationError, match="signing_key_pem"):
            Settings(
                environment="prod",
                secret_key=REAL_SECRET,
                sms_provider="verify-lookup",
                sms_api_key=PROVIDER_KEY,
            )

    def test_the_console_sms_gateway_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="console"):
            Settings(
                environment="prod",
                secret_key=REAL_SECRET,
                signing_key_pem=private_pem(generate_private_key()),
            )

    def test_a_complete_production_setup_is_accepted(self) -> None:
        settings = Settings(
            environment="prod",
            secret_key=REAL_SECRET,
            signing_key_pem=private_pem(generate_private_key()),
            sms_provider="verify-lookup",
            sms_api_key=PROVIDER_KEY,
        )
        assert not settings.dev_tools_enabled
        assert settings.otp_per_ip_limit_effective == 30

    def test_dev_mode_has_the_dev_tools(self) -> None:
        settings = Settings(environment="dev")
        assert settings.dev_tools_enabled
        assert settings.otp_per_ip_limit_effective == 1000

    def test_trusted_proxies_must_be_networks(self) -> None:
        with pytest.raises(ValidationError):
            Settings(trusted_proxies=("not-a-network",))


class TestKeyedHashes:
    keys = Keys.from_secret("unit-test-master")

    def test_an_otp_hash_is_bound_to_challenge_code_and_mobile(self) -> None:
        base = {
            "challenge_id": "c1",
            "national_code": "0499370899",
            "mobile": "09121234567",
            "code": "123456",
        }
        stored = self.keys.otp_hash(**base)
        assert self.keys.otp_matches(stored, **base)
        for field, other in [
            ("challenge_id", "c2"),
            ("national_code", "0790419904"),
            ("mobile", "09121234568"),
            ("code", "123457"),
        ]:
            assert not self.keys.otp_matches(stored, **{**base, field: other})

    def test_purpose_keys_differ_and_depend_on_the_master(self) -> None:
        other = Keys.from_secret("another-master")
        assert self.keys.otp != self.keys.tokens != self.keys.lookup
        assert self.keys.token_hash("t") != other.token_hash("t")

    def test_encryption_is_bound_to_its_context(self) -> None:
        sealed = self.keys.encrypt(b"654321", context=b"message-1")
        assert b"654321" not in sealed
        assert self.keys.decrypt(sealed, context=b"message-1") == b"654321"
        with pytest.raises(InvalidTag):
            self.keys.decrypt(sealed, context=b"message-2")

    def test_codes_are_six_digits_and_tokens_long(self) -> None:
        codes = {new_otp_code() for _ in range(200)}
        assert all(re.fullmatch(r"\d{6}", code) for code in codes)
        assert len(codes) > 150  # not a constant, not a tiny range
        assert len(new_opaque_token()) >= 43


def test_generate_prints_a_p256_private_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("-----BEGIN PRIVATE KEY-----")
