"""Pure parts of deciding: reading a verdict, the rules' variables, hashes, masks, signatures,
retry timing and the broker's refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from panjereh.common import jwk
from panjereh.contracts.catalog import CardDecision
from panjereh.requests.broker_client import InquiryAsk, purpose_not_yet_known
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.rules import Verdict
from panjereh.requests.service import documents, receipts, rulings
from panjereh.requests.service.orchestration import MAX_RETRY_SECONDS, RetryPolicy

REASON = {"fa": "دلیل", "en": "Reason"}


def decision(otherwise: str = "reject") -> CardDecision:
    return CardDecision.model_validate(
        {
            "mode": "automatic",
            "otherwise": otherwise,
            "rules": [
                {"id": "r1", "when": "false", "outcome": "reject", "reason": REASON},
                {"id": "r2", "when": "true", "outcome": "approve", "reason": {"fa": "تایید"}},
            ],
        }
    )


class TestRulingOf:
    def test_the_first_match_decides_with_its_reason(self) -> None:
        ruling = rulings.ruling_of(decision(), Verdict(1))
        assert ruling == rulings.Ruling("approve", "r2", {"fa": "تایید"})

    @pytest.mark.parametrize(
        ("otherwise", "outcome", "reason"),
        [
            ("reject", "reject", rulings.NO_RULE_MATCHED),
            ("agency", "agency", rulings.NO_RULE_MATCHED_TO_AGENCY),
        ],
    )
    def test_no_match_follows_otherwise(
        self, otherwise: str, outcome: str, reason: dict[str, str]
    ) -> None:
        ruling = rulings.ruling_of(decision(otherwise), Verdict(None))
        assert (ruling.outcome, ruling.rule_id, ruling.reason) == (outcome, None, reason)

    @pytest.mark.parametrize("otherwise", ["reject", "agency"])
    def test_an_error_goes_to_the_agency_whatever_otherwise_says(self, otherwise: str) -> None:
        ruling = rulings.ruling_of(decision(otherwise), Verdict(None, "rule r1: TypeError: 1234"))
        assert ruling.outcome == "agency"
        assert ruling.error == "rule r1: TypeError"  # the message, which may quote data, is cut

    def test_an_index_outside_the_rules_is_not_a_match(self) -> None:
        assert rulings.ruling_of(decision(), Verdict(7)).rule_id is None


class TestVariables:
    def test_citizen_takes_the_registrys_public_fields(self) -> None:
        person = {"first_name": "سارا", "alive": True, "address": "not for rules"}
        found = rulings.variables(
            inputs={"a": 1},
            results={rulings.CIVIL_REGISTRY: person, "tax.clearance": None},
            national_code="0013542419",
        )
        assert found == {
            "inputs": {"a": 1},
            "inquiries": {rulings.CIVIL_REGISTRY: person},
            "citizen": {"national_code": "0013542419", "first_name": "سارا", "alive": True},
        }


class TestHashesAndMasks:
    def test_the_digest_ignores_key_order_and_sees_every_value(self) -> None:
        assert receipts.digest({"a": 1, "b": "ب"}) == receipts.digest({"b": "ب", "a": 1})
        assert receipts.digest({"a": 1}) != receipts.digest({"a": 2})

    @pytest.mark.parametrize(
        ("code", "masked"), [("0013542419", "0********9"), ("12", "**"), ("", "")]
    )
    def test_the_holder_is_masked_to_first_and_last_digit(self, code: str, masked: str) -> None:
        assert documents.mask(code) == masked


class TestSignedDocument:
    keys = DocumentKeys.of(jwk.generate_private_key())

    def test_a_document_we_signed_is_read_back(self) -> None:
        token = self.keys.sign({"document_id": "d1"}, typ=documents.DOCUMENT_TYP)
        assert documents.signed_document(token, self.keys) == {"document_id": "d1"}

    def test_another_type_of_token_is_not_a_document(self) -> None:
        token = self.keys.sign({"document_id": "d1"}, typ=receipts.RECEIPT_TYP)
        assert documents.signed_document(token, self.keys) is None

    def test_a_change_in_the_spare_bits_of_the_last_character_is_caught(self) -> None:
        token = self.keys.sign({"document_id": "d1"}, typ=documents.DOCUMENT_TYP)
        # 64 signature bytes leave 4 spare bits in the last base64url character
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(token[-1])
        twin = token[:-1] + alphabet[last ^ 0b0001]
        assert jwk.b64url_decode(twin.rsplit(".", 1)[1]) == jwk.b64url_decode(
            token.rsplit(".", 1)[1]
        )  # a lenient decoder cannot tell them apart
        assert documents.signed_document(twin, self.keys) is None

    def test_a_key_we_do_not_publish_is_refused(self) -> None:
        token = DocumentKeys.of(jwk.generate_private_key()).sign({}, typ=documents.DOCUMENT_TYP)
        assert documents.signed_document(token, self.keys) is None


class TestRetryPolicy:
    def test_waits_double_up_to_a_cap(self) -> None:
        policy = RetryPolicy(max_attempts=10, base_seconds=1.0)
        assert [policy.after(n).total_seconds() for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
        assert policy.after(20) == timedelta(seconds=MAX_RETRY_SECONDS)

    def test_the_brokers_retry_after_is_honoured(self) -> None:
        policy = RetryPolicy(max_attempts=10, base_seconds=1.0)
        assert policy.after(1, asked_to_wait=7.0) == timedelta(seconds=7)


class TestBrokerVocabulary:
    @pytest.mark.parametrize(
        ("reason", "retry"),
        [
            ("request_unknown", True),
            ("purpose_unknown", True),
            ("tracking_code_unknown", True),
            # a card published a moment ago: the broker consumes the catalog's event too
            ("card_not_published", True),
            ("type_not_on_card", False),
            ("caller_not_entitled", False),
            ("inquiry_type_unknown", False),
        ],
    )
    def test_only_a_purpose_not_yet_known_is_retried(self, reason: str, retry: bool) -> None:
        assert purpose_not_yet_known(reason) is retry

    def test_an_ask_never_shows_its_subject(self) -> None:
        ask = InquiryAsk("civil-registry.person", "0013542419", "s1", "1234", "law")
        assert "0013542419" not in repr(ask)
        assert ask.idempotency_key == "1234:civil-registry.person"
        assert ask.body()["subject"] == "0013542419"
