"""Content negotiation: the client's preference among what we offer (RFC 9110 §12.5).

One parser for ``Accept`` and ``Accept-Language`` weights; callers say what they offer and
what to fall back to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def preferred(
    header: str | None,
    offered: Iterable[str],
    *,
    default: str,
    normalize: Callable[[str], str] = str.lower,
) -> str:
    """The offered value the header weighs highest; ``default`` when it names none of them.

    ``normalize`` maps each listed value to the offered vocabulary (e.g. ``fa-IR`` → ``fa``).
    Ties go to the value listed first; ``q=0`` means "not acceptable".
    """
    choices = {value.lower() for value in offered}
    best, best_q = default, 0.0
    for part in (header or "").split(","):
        value, _, params = part.strip().partition(";")
        candidate = normalize(value.strip())
        if candidate not in choices:
            continue
        quality = _quality(params)
        if quality > best_q:
            best, best_q = candidate, quality
    return best


def language_tag(tag: str) -> str:
    """``fa-IR`` → ``fa``: the primary language subtag, lower-cased."""
    return tag.split("-", 1)[0].strip().lower()


#: The languages the platform speaks, Persian first.
LANGUAGES = ("fa", "en")


def preferred_language(header: str | None) -> str:
    """``en`` when the client prefers English to Persian, else ``fa`` (the default)."""
    return preferred(header, LANGUAGES, default="fa", normalize=language_tag)
