from __future__ import annotations

import pytest
from panjereh.common.settings import Environment, ServiceSettings
from pydantic import SecretStr, ValidationError


class WithSecret(ServiceSettings):
    signing_key: SecretStr = SecretStr("changeme")


class TestPlaceholderSecrets:
    def test_placeholder_is_accepted_in_dev(self) -> None:
        settings = WithSecret(environment=Environment.DEV)
        assert settings.signing_key.get_secret_value() == "changeme"

    def test_placeholder_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="placeholder"):
            WithSecret(environment=Environment.PROD)

    def test_a_real_secret_is_accepted_in_production(self) -> None:
        settings = WithSecret(environment=Environment.PROD, signing_key=SecretStr("x9Kq2-real"))
        assert settings.environment is Environment.PROD

    def test_environment_comes_from_the_unprefixed_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PANJEREH_ENV", "test")
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        settings = ServiceSettings()
        assert settings.environment is Environment.TEST
        assert settings.kafka_bootstrap_servers == "kafka:9092"
