"""National code, legal-entity ID and mobile rules, with DOMAIN.md's test vectors."""

from __future__ import annotations

import pytest

from panjereh.contracts.identifiers import (
    InvalidIdentifier,
    ascii_digits,
    is_valid_legal_entity_id,
    is_valid_mobile,
    is_valid_national_code,
    mask_mobile,
    normalize_legal_entity_id,
    normalize_mobile,
    normalize_national_code,
)

VALID_NATIONAL_CODES = [
    "0499370899",
    "0790419904",
    "0084575948",
    "0963695398",
    "0684159414",
    "0067749828",
    "0650451252",
    "1583250689",
    "4032152314",
    "0076229645",
]
INVALID_NATIONAL_CODES = ["4271427685", "0200203041", "0684159415", "0000000000", "123000000"]


class TestNationalCode:
    @pytest.mark.parametrize("code", VALID_NATIONAL_CODES)
    def test_accepts_the_valid_vectors(self, code: str) -> None:
        assert normalize_national_code(code) == code

    @pytest.mark.parametrize("code", INVALID_NATIONAL_CODES)
    def test_rejects_the_invalid_vectors(self, code: str) -> None:
        assert not is_valid_national_code(code)

    def test_left_pads_nine_digits(self) -> None:
        assert normalize_national_code("068415941") == "0068415941"

    def test_left_pads_eight_digits(self) -> None:
        assert normalize_national_code("84575948") == "0084575948"

    def test_rejects_seven_and_eleven_digits(self) -> None:
        assert not is_valid_national_code("4575948")
        assert not is_valid_national_code("04993708990")

    @pytest.mark.parametrize("digit", "0123456789")
    def test_rejects_all_same_digit_codes_even_when_the_checksum_passes(self, digit: str) -> None:
        assert not is_valid_national_code(digit * 10)

    def test_1111111111_passes_the_bare_checksum_but_is_refused(self) -> None:
        # the rule matters only because the arithmetic alone would let it through
        digits = [1] * 10
        remainder = sum(d * (10 - i) for i, d in enumerate(digits[:9])) % 11
        assert digits[9] == (remainder if remainder < 2 else 11 - remainder)
        with pytest.raises(InvalidIdentifier, match="repeat"):
            normalize_national_code("1111111111")

    def test_rejects_codes_whose_digits_4_to_9_are_zero(self) -> None:
        # build a code with a correct check digit, so only the zero rule can refuse it
        base = "123000000"
        remainder = sum(int(d) * (10 - i) for i, d in enumerate(base)) % 11
        check = remainder if remainder < 2 else 11 - remainder
        code = f"{base}{check}"
        with pytest.raises(InvalidIdentifier, match="zeros"):
            normalize_national_code(code)

    def test_reads_persian_digits(self) -> None:
        assert normalize_national_code("۰۴۹۹۳۷۰۸۹۹") == "0499370899"

    def test_reads_arabic_indic_digits(self) -> None:
        assert normalize_national_code("٠٤٩٩٣٧٠٨٩٩") == "0499370899"

    def test_strips_spaces_and_dashes(self) -> None:
        assert normalize_national_code(" 049-937089-9 ") == "0499370899"

    @pytest.mark.parametrize("value", ["", "abcdefghij", "04993708a9", "０４９９３７０８９９"])
    def test_rejects_non_digits(self, value: str) -> None:
        assert not is_valid_national_code(value)


class TestLegalEntityId:
    @pytest.mark.parametrize("code", ["10380284790", "10100387143", "77111986110", "18061055669"])
    def test_accepts_the_valid_vectors(self, code: str) -> None:
        assert normalize_legal_entity_id(code) == code

    @pytest.mark.parametrize("code", ["84735069516", "65399567978", "11111111111"])
    def test_rejects_the_invalid_vectors(self, code: str) -> None:
        assert not is_valid_legal_entity_id(code)

    def test_reads_persian_digits(self) -> None:
        assert normalize_legal_entity_id("۱۰۳۸۰۲۸۴۷۹۰") == "10380284790"

    def test_requires_eleven_digits(self) -> None:
        assert not is_valid_legal_entity_id("1038028479")


class TestMobile:
    @pytest.mark.parametrize(
        "value",
        [
            "09121234567",
            "9121234567",
            "+989121234567",
            "00989121234567",
            "989121234567",
            "0912 123 4567",
            "0912-123-4567",
            "(0912) 123-4567",
            "+98 912 123 4567",
            "۰۹۱۲۱۲۳۴۵۶۷",
            "٠٩١٢١٢٣٤٥٦٧",
        ],
    )
    def test_each_prefix_form_becomes_09xxxxxxxxx(self, value: str) -> None:
        assert normalize_mobile(value) == "09121234567"

    def test_does_not_check_operator_prefixes(self) -> None:
        # a range no operator had yet is still a well-formed number
        assert normalize_mobile("09991234567") == "09991234567"

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "0912123456",  # one digit short
            "091212345678",  # one digit long
            "08121234567",  # not a mobile (landline-style)
            "+9712121234567",  # another country
            "+98 0912 123 4567",  # both prefixes
            "0912abc4567",
        ],
    )
    def test_rejects_malformed_numbers(self, value: str) -> None:
        assert not is_valid_mobile(value)

    def test_masking_keeps_only_the_ends(self) -> None:
        assert mask_mobile("09121234567") == "0912***4567"


def test_ascii_digits_leaves_other_text_alone() -> None:
    assert ascii_digits("کد ۱۲۳ و ٤٥٦") == "کد 123 و 456"
