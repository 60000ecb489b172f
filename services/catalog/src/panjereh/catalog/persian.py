"""Persian-aware normalisation for search, used both when indexing and when querying.

Display text is stored as written; only the search columns hold the normalised form. The
rules (see the domain notes): NFKC first, so Arabic presentation forms fold to their base
letters; Arabic ي ى → ی and ك → ک; ۀ ة → ه; hamza carriers and alef variants fold to their bare
letters; tatweel, diacritics and zero-width/bidi marks are dropped; Persian and Arabic-Indic
digits become ASCII; everything that is not a letter or digit separates words; Latin text is
lower-cased.

The zero-width non-joiner (ZWNJ, U+200C) joins the parts of one word (``می‌خواهم``) that people
also type with a space or with nothing at all. It becomes a word break, and the index also
keeps the joined form (``میخواهم``), so all three spellings find each other.
"""

from __future__ import annotations

import re
import unicodedata

ZWNJ = "\u200c"

_LETTERS = str.maketrans(
    {
        "ي": "ی",
        "ى": "ی",
        "ئ": "ی",
        "ك": "ک",
        "ۀ": "ه",
        "ة": "ه",
        "أ": "ا",
        "إ": "ا",
        "آ": "ا",
        "ٱ": "ا",
        "ؤ": "و",
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # Persian digits
        **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
    }
)
_DROPPED = re.compile(
    "[\u0640\u064b-\u065f\u0670\u200b\u200d-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
# a word is a run of letters, digits and ZWNJs; everything else separates words
_SEPARATORS = re.compile("[^\\w\u200c]+|_+")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _DROPPED.sub("", text)
    return text.translate(_LETTERS).lower()


def _joined_words(text: str) -> list[list[str]]:
    """Each word of folded ``text`` as the list of its ZWNJ-separated parts."""
    words = []
    for chunk in _SEPARATORS.split(text):
        parts = [part for part in chunk.split(ZWNJ) if part]
        if parts:
            words.append(parts)
    return words


def normalize(text: str) -> str:
    """The search form of ``text``: folded letters and digits, words separated by one space."""
    return " ".join(part for parts in _joined_words(_fold(text)) for part in parts)


def index_terms(text: str) -> str:
    """What to index for ``text``: its normalised words plus each ZWNJ-joined word as one."""
    terms: list[str] = []
    for parts in _joined_words(_fold(text)):
        terms.extend(parts)
        if len(parts) > 1:
            terms.append("".join(parts))
    return " ".join(dict.fromkeys(terms))


#: Verb prefixes and suffixes that people write joined, with a ZWNJ, or with a space.
_PREFIXES = frozenset({"می", "نمی"})
_SUFFIXES = frozenset({"ها", "های", "هایی", "ای", "ام", "ات", "اش", "تر", "ترین"})


def query_terms(text: str) -> list[list[str]]:
    """The words of a search query, each as its alternative spellings.

    A query word written with a ZWNJ (``می‌خواهم``) may match the index either as its parts or
    as one joined word, so its alternatives are ``["می خواهم", "میخواهم"]`` (parts joined by a
    space mean "all of these words"). A detachable prefix or suffix typed as a separate word
    (``می خواهم``, ``گذرنامه ها``) gets the same two alternatives.
    """
    words = _joined_words(_fold(text))
    alternatives: list[list[str]] = []
    index = 0
    while index < len(words):
        parts = words[index]
        following = words[index + 1] if index + 1 < len(words) else None
        if (
            following is not None
            and len(parts) == 1
            and len(following) == 1
            and (parts[0] in _PREFIXES or following[0] in _SUFFIXES)
        ):
            parts = [parts[0], following[0]]
            index += 1
        alternatives.append([" ".join(parts), "".join(parts)] if len(parts) > 1 else parts)
        index += 1
    return alternatives


def to_ascii_digits(text: str) -> str:
    """Persian and Arabic-Indic digits as ASCII (for codes, phones and amounts)."""
    return text.translate(_DIGITS)


_DIGITS = {0x06F0 + d: str(d) for d in range(10)} | {0x0660 + d: str(d) for d in range(10)}
