from __future__ import annotations

import hashlib
import json

import pytest
from jose import jws

from panjereh.common.jwk import b64url, b64url_decode, generate_private_key, sign_compact
from panjereh.inquiry_broker.canonical import canonical_json
from panjereh.inquiry_broker.signing import AnswerSigner, InvalidAnswerSignature, verify

PAYLOAD = {
    "inquiry_id": "5b0d7d0c-8d7e-4d0b-9d6e-0d4b0e7f2a11",
    "type": "civil-registry.person",
    "subject_sha256": "0" * 64,
    "status": "answered",
    "result": {"first_name": "مریم", "alive": True},
    "answered_at": "2026-11-28T12:00:00.000000Z",
}


@pytest.fixture(scope="module")
def signer() -> AnswerSigner:
    return AnswerSigner.generate()


class TestSignedAnswers:
    def test_a_signed_answer_verifies_with_the_published_key(self, signer: AnswerSigner) -> None:
        token = signer.sign(PAYLOAD)
        assert verify(token, {"keys": [signer.jwk]}) == PAYLOAD

    def test_one_changed_byte_of_the_payload_fails(self, signer: AnswerSigner) -> None:
        header, payload, signature = signer.sign(PAYLOAD).split(".")
        raw = bytearray(b64url_decode(payload))
        raw[raw.index(b"true")] ^= 0x01  # true -> ur... : one flipped bit of one byte
        tampered = f"{header}.{b64url(bytes(raw))}.{signature}"
        with pytest.raises(InvalidAnswerSignature):
            verify(tampered, {"keys": [signer.jwk]})

    def test_one_changed_byte_of_the_signature_fails(self, signer: AnswerSigner) -> None:
        header, payload, signature = signer.sign(PAYLOAD).split(".")
        raw = bytearray(b64url_decode(signature))
        raw[10] ^= 0xFF
        with pytest.raises(InvalidAnswerSignature):
            verify(f"{header}.{payload}.{b64url(bytes(raw))}", {"keys": [signer.jwk]})

    def test_another_key_does_not_verify(self, signer: AnswerSigner) -> None:
        other = AnswerSigner.generate()
        with pytest.raises(InvalidAnswerSignature):
            verify(signer.sign(PAYLOAD), {"keys": [{**other.jwk, "kid": signer.kid}]})

    def test_the_key_survives_a_pem_round_trip(self, signer: AnswerSigner) -> None:
        again = AnswerSigner.from_pem(signer.private_pem())
        assert again.kid == signer.kid
        assert verify(again.sign(PAYLOAD), {"keys": [signer.jwk]}) == PAYLOAD


class TestAsDocumented:
    """docs/inquiries.md, "Signed answers and how to verify one": what relying parties code to."""

    def test_the_header_and_payload_are_the_canonical_json_the_docs_describe(
        self, signer: AnswerSigner
    ) -> None:
        header, payload, _ = signer.sign(PAYLOAD).split(".")
        assert b64url_decode(header) == (
            b'{"alg":"ES256","kid":"' + signer.kid.encode() + b'","typ":"inquiry-answer+jws"}'
        )
        assert b64url_decode(payload) == canonical_json(PAYLOAD)

    def test_the_kid_is_the_rfc_7638_thumbprint(self, signer: AnswerSigner) -> None:
        members = {name: signer.jwk[name] for name in ("crv", "kty", "x", "y")}
        required = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
        assert signer.kid == b64url(hashlib.sha256(required).digest())
        assert signer.jwks() == {"keys": [signer.jwk]}
        assert (signer.jwk["alg"], signer.jwk["use"]) == ("ES256", "sig")

    def test_another_jose_library_verifies_it(self, signer: AnswerSigner) -> None:
        verified = jws.verify(signer.sign(PAYLOAD), signer.jwk, algorithms=["ES256"])
        assert json.loads(verified) == PAYLOAD

    def test_a_token_of_another_kind_signed_by_the_same_key_is_not_an_answer(self) -> None:
        key = generate_private_key()
        document = sign_compact(key, {"typ": "JWT"}, PAYLOAD)
        with pytest.raises(InvalidAnswerSignature, match="not an inquiry answer"):
            verify(document, AnswerSigner(key).jwks())
