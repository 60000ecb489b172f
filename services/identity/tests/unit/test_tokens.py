"""Token issuance and key material: what verifiers elsewhere rely on."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt

from panjereh.common.jwk import generate_private_key, load_private_key, private_pem, public_jwk
from panjereh.identity.keys import KeySet, SigningKeyPair
from panjereh.identity.tokens import ReusedToken, TokenPolicy, issue_access_token

POLICY = TokenPolicy(
    issuer="panjereh-identity", audience="panjereh", lifetime=timedelta(minutes=10)
)


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    current = SigningKeyPair.of(generate_private_key())
    upcoming = public_jwk(generate_private_key())
    return KeySet(current=current, published=(current.jwk, upcoming))


class TestAccessToken:
    def test_citizen_token_carries_the_agreed_claims_and_verifies_with_the_published_key(
        self, keyset: KeySet
    ) -> None:
        now = datetime.now(UTC)
        token = issue_access_token(
            keyset=keyset,
            policy=POLICY,
            subject="c-1",
            roles=["citizen"],
            national_code="0499370899",
            session_id="family-1",
            now=now,
        )
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256"
        assert header["kid"] == keyset.current.kid
        claims = jwt.decode(
            token,
            keyset.published[0],
            algorithms=["ES256"],
            audience="panjereh",
            issuer="panjereh-identity",
        )
        assert claims["sub"] == "c-1"
        assert claims["roles"] == ["citizen"]
        assert claims["national_code"] == "0499370899"
        assert claims["sid"] == "family-1"
        assert claims["exp"] - claims["iat"] == 600
        assert claims["nbf"] == claims["iat"]
        assert len(claims["jti"]) == 32
        assert "agency" not in claims
        assert "scope" not in claims

    def test_client_token_carries_agency_scope_and_no_national_code(self, keyset: KeySet) -> None:
        token = issue_access_token(
            keyset=keyset,
            policy=POLICY,
            subject="agency-tax",
            client_id="agency-tax",
            roles=["client:tax"],
            agency="tax",
            scopes=["inquiries:reply", "inquiries:read"],
            now=datetime.now(UTC),
        )
        claims = jwt.get_unverified_claims(token)
        assert claims["agency"] == "tax"
        assert claims["scope"] == "inquiries:reply inquiries:read"
        assert claims["client_id"] == "agency-tax"
        assert "national_code" not in claims

    def test_every_token_has_its_own_jti(self, keyset: KeySet) -> None:
        now = datetime.now(UTC)
        tokens = {
            jwt.get_unverified_claims(
                issue_access_token(keyset=keyset, policy=POLICY, subject="s", roles=[], now=now)
            )["jti"]
            for _ in range(5)
        }
        assert len(tokens) == 5


class TestKeys:
    def test_kid_is_the_rfc7638_thumbprint_and_stable(self) -> None:
        key = generate_private_key()
        assert public_jwk(key)["kid"] == public_jwk(key)["kid"]
        assert public_jwk(key)["kid"] != public_jwk(generate_private_key())["kid"]

    def test_public_jwk_has_no_private_part(self) -> None:
        jwk = public_jwk(generate_private_key())
        assert "d" not in jwk
        assert jwk["kty"] == "EC"
        assert jwk["crv"] == "P-256"
        assert jwk["alg"] == "ES256"

    def test_encrypted_pem_needs_its_password(self) -> None:
        key = generate_private_key()
        pem = private_pem(key, b"right-password")
        assert "ENCRYPTED PRIVATE KEY" in pem
        assert public_jwk(load_private_key(pem, b"right-password")) == public_jwk(key)
        with pytest.raises(ValueError, match=r"(?i)(bad decrypt|incorrect password)"):
            load_private_key(pem, b"wrong-password")

    def test_refuses_keys_that_are_not_p256(self) -> None:
        other = ec.generate_private_key(ec.SECP384R1())
        with pytest.raises(ValueError, match="P-256"):
            load_private_key(private_pem(other))


class TestKidsStayTheSame:
    """Kids are RFC 7638 thumbprints: the kernel's JWK code gives the values identity gave."""

    #: a fixed key, so the expected values can be written down
    KEY = ec.derive_private_key(0x70616E6A65726568, ec.SECP256R1())
    #: computed with identity's own JWK code before it moved to panjereh.common.jwk
    JWK: ClassVar[dict[str, str]] = {
        "crv": "P-256",
        "kty": "EC",
        "x": "cFJB2hLRvmnT7f0BgxW_EAPJvx7-k99t4DIgWj0rXzg",
        "y": "OQ4b6mXjFmIK8i6ED-W1uTrKaRN1jO9d1hI1dkmsdgM",
        "kid": "0-dFpKHFvQr4DDNmJKhsRPQX4eQ9waNfnQ1ftpxIEmM",
        "use": "sig",
        "alg": "ES256",
    }

    def test_a_signing_key_has_the_kid_and_jwk_it_had_before(self) -> None:
        pair = SigningKeyPair.of(self.KEY)
        assert pair.kid == self.JWK["kid"]
        assert pair.jwk == self.JWK

    def test_the_kid_is_the_sha256_of_the_required_members_sorted_without_whitespace(
        self,
    ) -> None:
        members = {name: self.JWK[name] for name in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=")
        assert public_jwk(self.KEY)["kid"] == digest.decode()

    def test_a_stored_encrypted_key_loads_with_the_same_kid(self) -> None:
        pem = private_pem(self.KEY, b"dev-password")
        assert SigningKeyPair.of(load_private_key(pem, b"dev-password")).kid == self.JWK["kid"]


class _Source:
    """A key source whose current key can be swapped (a rotation)."""

    def __init__(self) -> None:
        self.current = _keyset()

    async def keyset(self) -> KeySet:
        return self.current


def _keyset() -> KeySet:
    current = SigningKeyPair.of(generate_private_key())
    return KeySet(current=current, published=(current.jwk,))


class TestReusedToken:
    """Identity's own token for the broker: one per half lifetime, not one per inquiry."""

    async def test_reused_until_half_its_lifetime_then_minted_again(self) -> None:
        keys, clock, minted = _Source(), [datetime(2026, 1, 1, tzinfo=UTC)], []

        async def mint(now: datetime) -> str:
            minted.append(now)
            return f"token-{len(minted)}"

        token = ReusedToken(mint, keys, lifetime=timedelta(minutes=10), clock=lambda: clock[0])
        assert [await token(), await token()] == ["token-1", "token-1"]
        clock[0] += timedelta(minutes=4, seconds=59)
        assert await token() == "token-1"
        clock[0] += timedelta(seconds=1)
        assert await token() == "token-2"
        assert minted == [datetime(2026, 1, 1, tzinfo=UTC), clock[0]]

    async def test_minted_again_at_once_when_the_signing_key_changes(self) -> None:
        keys, count = _Source(), [0]

        async def mint(now: datetime) -> str:
            count[0] += 1
            return f"token-{count[0]}"

        token = ReusedToken(mint, keys, lifetime=timedelta(minutes=10))
        assert await token() == "token-1"
        keys.current = _keyset()
        assert await token() == "token-2"
        assert await token() == "token-2"
