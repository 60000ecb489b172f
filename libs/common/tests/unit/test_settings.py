from __future__ import annotations

import os
import ssl
import subprocess
import sys
from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from panjereh.common.messaging.kafka import connection_options, producer_options
from panjereh.common.settings import Environment, ServiceSettings


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
        strong = SecretStr("x9Kq2-rT7vB4nM8wZ1cL6pH3jF5dG0sY")
        settings = WithSecret(environment=Environment.PROD, signing_key=strong)
        assert settings.environment is Environment.PROD

    @pytest.mark.parametrize(
        "weak",
        ["abc", "x9Kq2-real", "a" * 40, "0123456789" * 3, "abababababababababababababab"],
        ids=["short", "ten-characters", "one-letter", "few-distinct-characters", "two-letters"],
    )
    def test_a_weak_secret_is_refused_in_production(self, weak: str) -> None:
        """Not only placeholder words: a short or low-variety secret protects nothing."""
        with pytest.raises(ValidationError, match="signing_key is too weak"):
            WithSecret(environment=Environment.PROD, signing_key=SecretStr(weak))

    def test_environment_comes_from_the_unprefixed_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PANJEREH_ENV", "test")
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        settings = ServiceSettings()
        assert settings.environment is Environment.TEST
        assert settings.kafka_bootstrap_servers == "kafka:9092"


class WithGenerated(ServiceSettings):
    generated_when_empty: ClassVar[frozenset[str]] = frozenset({"chain_key", "signing_pem"})
    chain_key: SecretStr = SecretStr("")
    signing_pem: SecretStr = SecretStr("")


STRONG = SecretStr("x9Kq2-rT7vB4nM8wZ1cL6pH3jF5dG0sY")
#: base64 may spell anything: a key's PEM is not read for placeholder words
PEM = SecretStr("-----BEGIN PRIVATE KEY-----\nsecretchangeme\n-----END PRIVATE KEY-----\n")


class TestSecretsOutsideDev:
    """Every mode but dev checks secrets: a test deployment guards real-looking data too."""

    def test_a_placeholder_is_refused_in_test_mode(self) -> None:
        with pytest.raises(ValidationError, match="placeholder"):
            WithSecret(environment=Environment.TEST)

    def test_a_weak_secret_is_refused_in_test_mode(self) -> None:
        with pytest.raises(ValidationError, match="signing_key is too weak"):
            WithSecret(environment=Environment.TEST, signing_key=SecretStr("abc"))

    def test_a_real_secret_is_accepted_in_test_mode(self) -> None:
        assert WithSecret(environment=Environment.TEST, signing_key=STRONG).signing_key == STRONG

    def test_a_generated_secret_may_stay_empty_in_test_mode_but_not_in_production(self) -> None:
        assert WithGenerated(environment=Environment.TEST).chain_key.get_secret_value() == ""
        with pytest.raises(ValidationError, match="chain_key must be set in production"):
            WithGenerated(environment=Environment.PROD, signing_pem=STRONG)

    @pytest.mark.parametrize("environment", [Environment.TEST, Environment.PROD])
    def test_a_generated_secret_that_is_set_must_be_strong(self, environment: Environment) -> None:
        with pytest.raises(ValidationError, match="chain_key is too weak"):
            WithGenerated(environment=environment, chain_key=SecretStr("abc"), signing_pem=PEM)

    def test_a_pem_is_not_read_for_words(self) -> None:
        settings = WithGenerated(environment=Environment.PROD, chain_key=STRONG, signing_pem=PEM)
        assert settings.signing_pem == PEM

    def test_the_test_plugin_runs_tests_as_dev(self) -> None:
        assert os.environ["PANJEREH_ENV"] == "dev"
        assert WithSecret().environment is Environment.DEV


class TestNoDefaultEnvironment:
    """A process started without PANJEREH_ENV must not quietly run as dev (dev outbox, dev
    secrets): only ``make run`` and the test plugin choose an environment for it."""

    def test_settings_refuse_a_missing_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PANJEREH_ENV", raising=False)
        with pytest.raises(ValidationError, match="PANJEREH_ENV is not set"):
            ServiceSettings()

    def test_a_process_without_it_refuses_to_start_and_says_why(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
        start = "from panjereh.common.settings import ServiceSettings; ServiceSettings()"
        result = subprocess.run(
            [sys.executable, "-c", start],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "PANJEREH_ENV is not set" in result.stderr

    def test_an_explicit_environment_is_taken(self) -> None:
        assert ServiceSettings(environment="test").environment is Environment.TEST


class TestKafkaSecurity:
    def test_the_embedded_default_is_plaintext_without_credentials(self) -> None:
        options = connection_options(ServiceSettings())
        assert options["security_protocol"] == "PLAINTEXT"
        assert "sasl_plain_password" not in options
        assert "ssl_context" not in options

    def test_sasl_ssl_carries_scram_credentials_and_a_tls_context(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "catalog")
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cr3t-from-strimzi")
        options = producer_options(ServiceSettings())
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "catalog"
        assert options["sasl_plain_password"] == "s3cr3t-from-strimzi"
        assert isinstance(options["ssl_context"], ssl.SSLContext)
        assert options["acks"] == "all"

    def test_sasl_without_credentials_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
            ServiceSettings(kafka_security_protocol="SASL_SSL")

    def test_the_password_never_shows_in_the_settings_repr(self) -> None:
        settings = ServiceSettings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="catalog",
            kafka_sasl_password=SecretStr("hunter2-xyz"),
        )
        assert "hunter2-xyz" not in repr(settings)
