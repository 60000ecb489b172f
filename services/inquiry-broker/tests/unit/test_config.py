from __future__ import annotations

import pytest
from pydantic import ValidationError

from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.signing import AnswerSigner

PEM = AnswerSigner.generate().private_pem()
SUBJECT_KEY = "k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r"
CHAIN_KEY = "x9Kq2-rT7vB4nM8wZ1cL6pH3jF5dG0sY"


class TestProductionSettings:
    def test_a_signing_key_is_required(self) -> None:
        with pytest.raises(ValidationError, match="signing_private_key"):
            Settings(environment="prod", subject_hash_key=SUBJECT_KEY, audit_chain_key=CHAIN_KEY)

    def test_the_placeholder_subject_hash_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="subject_hash_key"):
            Settings(environment="prod", signing_private_key=PEM, audit_chain_key=CHAIN_KEY)

    def test_real_secrets_are_accepted(self) -> None:
        settings = Settings(
            environment="prod",
            signing_private_key=PEM,
            subject_hash_key=SUBJECT_KEY,
            audit_chain_key=CHAIN_KEY,
        )
        assert settings.signing_private_key.get_secret_value() == PEM

    def test_an_audit_chain_key_is_required(self) -> None:
        with pytest.raises(ValidationError, match="audit_chain_key must be set"):
            Settings(environment="prod", signing_private_key=PEM, subject_hash_key=SUBJECT_KEY)

    @pytest.mark.parametrize("environment", ["prod", "test"])
    def test_a_weak_audit_chain_key_is_refused(self, environment: str) -> None:
        with pytest.raises(ValidationError, match="audit_chain_key is too weak"):
            Settings(
                environment=environment,
                signing_private_key=PEM,
                subject_hash_key=SUBJECT_KEY,
                audit_chain_key="short-key",
            )


class TestTestModeSettings:
    def test_the_dev_subject_hash_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="subject_hash_key"):
            Settings(environment="test")

    def test_keys_generated_per_process_may_stay_empty(self) -> None:
        settings = Settings(environment="test", subject_hash_key=SUBJECT_KEY)
        assert settings.audit_chain_key.get_secret_value() == ""

    def test_dev_needs_no_secrets(self) -> None:
        assert Settings(environment="dev").signing_private_key.get_secret_value() == ""


@pytest.mark.parametrize("role", ["x; DROP TABLE audit_entry", "Robert", "a-b"])
def test_the_append_only_role_must_be_a_plain_identifier(role: str) -> None:
    with pytest.raises(ValidationError):
        Settings(audit_append_only_role=role)
