from __future__ import annotations

import pytest

from panjereh.inquiry_broker.signing import (
    AnswerSigner,
    InvalidAnswerSignature,
    b64url,
    b64url_decode,
    verify,
)

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
