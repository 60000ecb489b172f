from __future__ import annotations

import pytest

from panjereh.agency_sdk import national_code

VALID = [
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
INVALID = ["4271427685", "0200203041", "0684159415", "0000000000", "1111111111"]


class TestNationalCode:
    @pytest.mark.parametrize("code", VALID)
    def test_accepts_the_documented_valid_codes(self, code: str) -> None:
        assert national_code.is_valid(code)

    @pytest.mark.parametrize("code", INVALID)
    def test_refuses_the_documented_invalid_codes(self, code: str) -> None:
        assert not national_code.is_valid(code)

    def test_pads_short_codes_and_converts_persian_digits(self) -> None:
        assert national_code.normalize("068415941") == "0068415941"
        assert national_code.normalize("۰۴۹۹-۳۷۰۸۹۹") == "0499370899"

    @pytest.mark.parametrize("raw", ["123000000x", "1234567", "12345678901", ""])
    def test_normalize_refuses_what_is_not_a_code(self, raw: str) -> None:
        assert national_code.normalize(raw) is None

    def test_complete_appends_the_check_digit(self) -> None:
        assert national_code.complete("049937089") == "0499370899"
