from __future__ import annotations

import pytest

from panjereh.catalog import persian


class TestNormalize:
    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ("كارت ملي", "کارت ملی"),  # Arabic kaf and yeh
            ("کارت  ملی", "کارت ملی"),
            ("خانۀ ما", "خانه ما"),
            ("ماده ۱۲", "ماده 12"),  # Persian digits
            ("ماده ١٢", "ماده 12"),  # Arabic-Indic digits
            ("تـــمدید", "تمدید"),  # tatweel
            ("گُذَرنامه", "گذرنامه"),  # diacritics
            ("می\u200cخواهم", "می خواهم"),  # ZWNJ becomes a word break
            ("ﻛﺎﺭﺕ", "کارت"),  # presentation forms fold through NFKC
            ("\u200fپنجره\u202a", "پنجره"),  # bidi marks dropped
            ("Passport RENEWAL, (fast)!", "passport renewal fast"),
        ],
    )
    def test_folds_the_spellings_people_type(self, written: str, expected: str) -> None:
        assert persian.normalize(written) == expected


class TestIndexTerms:
    def test_keeps_a_zwnj_word_both_split_and_joined(self) -> None:
        assert persian.index_terms("من می\u200cخواهم") == "من می خواهم میخواهم"

    def test_punctuation_around_a_zwnj_word_does_not_glue_neighbours(self) -> None:
        assert persian.index_terms("(گذرنامه\u200cام)-فوری") == "گذرنامه ام گذرنامهام فوری"

    def test_repeated_words_are_indexed_once(self) -> None:
        assert persian.index_terms("کارت کارت") == "کارت"


class TestQueryTerms:
    def test_a_zwnj_word_may_match_split_or_joined(self) -> None:
        assert persian.query_terms("می\u200cخواهم ثبت") == [["می خواهم", "میخواهم"], ["ثبت"]]

    def test_punctuation_only_is_no_query(self) -> None:
        assert persian.query_terms(" ؟! ") == []


def test_digits_become_ascii() -> None:
    assert persian.to_ascii_digits("۰۹۱۲-١٢٣") == "0912-123"


class TestDetachedAffixes:
    def test_a_verb_prefix_typed_as_a_word_may_be_joined(self) -> None:
        assert persian.query_terms("می خواهم") == [["می خواهم", "میخواهم"]]

    def test_a_plural_suffix_typed_as_a_word_may_be_joined(self) -> None:
        assert persian.query_terms("گذرنامه ها") == [["گذرنامه ها", "گذرنامهها"]]

    def test_ordinary_words_stay_apart(self) -> None:
        assert persian.query_terms("کارت ملی") == [["کارت"], ["ملی"]]
