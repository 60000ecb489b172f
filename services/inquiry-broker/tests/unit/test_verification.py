"""A machine client's token is checked once and then remembered, never past its expiry, and a
refused token is never remembered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from panjereh.common.auth import TokenInvalid
from panjereh.common.testing.tokens import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    JwksServer,
    SigningKey,
    TokenFactory,
)
from panjereh.inquiry_broker.verification import RememberingTokenVerifier


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(kid="broker-test")


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer([key.public_jwk])
    server.start()
    yield server
    server.stop()


def verifier_for(jwks: JwksServer) -> RememberingTokenVerifier:
    return RememberingTokenVerifier(
        jwks_url=jwks.url, issuer=TEST_ISSUER, audience=TEST_AUDIENCE, leeway_seconds=0
    )


async def test_a_token_is_checked_once_then_remembered(key: SigningKey, jwks: JwksServer) -> None:
    tokens = TokenFactory(key)
    verifier = verifier_for(jwks)
    try:
        token = tokens(sub="service-identity", roles=["service:identity"])
        first = await verifier.verify(token)
        again = await verifier.verify(token)
        assert again == first
        assert verifier.checks == 1
        other = tokens(sub="service-requests", roles=["service:requests"])
        assert (await verifier.verify(other)).subject == "service-requests"
        assert verifier.checks == 2
    finally:
        await verifier.aclose()


async def test_a_token_about_to_expire_is_remembered_no_longer_than_it_lives(
    key: SigningKey, jwks: JwksServer
) -> None:
    verifier = verifier_for(jwks)
    try:
        token = TokenFactory(key)(sub="service-identity", exp=timedelta(seconds=2))
        await verifier.verify(token)
        # remembered until its expiry (about 2 s from now), not for the full 60 s
        _principal, until = verifier._accepted[token]
        assert until - time.monotonic() <= 2.0
    finally:
        await verifier.aclose()


async def test_a_refused_token_is_checked_every_time(key: SigningKey, jwks: JwksServer) -> None:
    verifier = verifier_for(jwks)
    try:
        forged = TokenFactory(SigningKey(kid="broker-test"))(sub="intruder")  # same kid, other key
        for _ in range(2):
            with pytest.raises(TokenInvalid):
                await verifier.verify(forged)
        assert verifier.checks == 2
    finally:
        await verifier.aclose()
