"""Field errors that speak the caller's language: ``{field, code, message}``.

Every entry of a problem's ``errors`` has a stable machine ``code`` (``required``,
``too_long``, ``national_code_checksum`` ...) that front ends can key on, and a ``message`` in
the language the client asked for, without library prefixes ("Value error, ...").

Validators say what is wrong by raising a :class:`FieldProblem` (or any ``ValueError`` that
has ``code`` and ``messages = {"fa": ..., "en": ...}``, as
:class:`panjereh.contracts.identifiers.InvalidIdentifier` does); pydantic's own error types
are translated from the table below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LocalizedProblem(Protocol):
    """What a validator's ``ValueError`` carries to be rendered in both languages."""

    code: str
    messages: Mapping[str, str]


class FieldProblem(ValueError):
    """Raise from a validator: ``FieldProblem("too_young", fa="...", en="...")``."""

    def __init__(self, code: str, *, fa: str, en: str) -> None:
        super().__init__(en)
        self.code = code
        self.messages: Mapping[str, str] = {"fa": fa, "en": en}


@dataclass(frozen=True)
class FieldError:
    """One entry of ``errors``; ``message`` maps a language to the text."""

    field: str
    code: str
    message: Mapping[str, str]

    def render(self, language: str) -> dict[str, str]:
        text = (
            self.message.get(language)
            or self.message.get("fa")
            or next(iter(self.message.values()), "")
        )
        return {"field": self.field, "code": self.code, "message": text}


def field_error(field: str, code: str, *, fa: str, en: str) -> FieldError:
    return FieldError(field=field, code=code, message={"fa": fa, "en": en})


# pydantic error type → (code, Persian template, English template); templates take ``ctx``
_PYDANTIC: dict[str, tuple[str, str, str]] = {
    "missing": ("required", "این فیلد لازم است", "This field is required"),
    "extra_forbidden": ("unknown_field", "این فیلد شناخته نیست", "This field is not expected"),
    "string_too_long": (
        "too_long",
        "حداکثر {max_length} نویسه مجاز است",
        "At most {max_length} characters are allowed",
    ),
    "string_too_short": (
        "too_short",
        "دست‌کم {min_length} نویسه لازم است",
        "At least {min_length} characters are required",
    ),
    "too_long": (
        "too_many",
        "حداکثر {max_length} مورد مجاز است",
        "At most {max_length} items are allowed",
    ),
    "too_short": (
        "too_few",
        "دست‌کم {min_length} مورد لازم است",
        "At least {min_length} items are required",
    ),
    "string_pattern_mismatch": ("pattern", "قالب این مقدار درست نیست", "The format is not valid"),
    "string_type": ("not_text", "باید متن باشد", "Must be text"),
    "string_unicode": ("not_text", "باید متن باشد", "Must be text"),
    "int_type": ("not_integer", "باید عدد صحیح باشد", "Must be a whole number"),
    "int_parsing": ("not_integer", "باید عدد صحیح باشد", "Must be a whole number"),
    "int_from_float": ("not_integer", "باید عدد صحیح باشد", "Must be a whole number"),
    "float_type": ("not_number", "باید عدد باشد", "Must be a number"),
    "float_parsing": ("not_number", "باید عدد باشد", "Must be a number"),
    "decimal_parsing": ("not_number", "باید عدد باشد", "Must be a number"),
    "bool_type": ("not_boolean", "باید درست یا نادرست باشد", "Must be true or false"),
    "bool_parsing": ("not_boolean", "باید درست یا نادرست باشد", "Must be true or false"),
    "greater_than": ("too_small", "باید بیشتر از {gt} باشد", "Must be greater than {gt}"),
    "greater_than_equal": (
        "too_small",
        "باید دست‌کم {ge} باشد",
        "Must be at least {ge}",
    ),
    "less_than": ("too_large", "باید کمتر از {lt} باشد", "Must be less than {lt}"),
    "less_than_equal": ("too_large", "باید حداکثر {le} باشد", "Must be at most {le}"),
    "literal_error": (
        "not_allowed",
        "مقدار مجاز نیست؛ یکی از {expected}",
        "Not an allowed value; expected {expected}",
    ),
    "enum": (
        "not_allowed",
        "مقدار مجاز نیست؛ یکی از {expected}",
        "Not an allowed value; expected {expected}",
    ),
    "dict_type": ("not_object", "باید یک شیء JSON باشد", "Must be a JSON object"),
    "model_type": ("not_object", "باید یک شیء JSON باشد", "Must be a JSON object"),
    "model_attributes_type": ("not_object", "باید یک شیء JSON باشد", "Must be a JSON object"),
    "list_type": ("not_list", "باید فهرست باشد", "Must be a list"),
    "set_type": ("not_list", "باید فهرست باشد", "Must be a list"),
    "json_invalid": ("invalid_json", "JSON معتبر نیست", "The JSON is not valid"),
    "json_type": ("invalid_json", "JSON معتبر نیست", "The JSON is not valid"),
    "uuid_parsing": ("not_uuid", "شناسه UUID معتبر نیست", "Not a valid UUID"),
    "uuid_type": ("not_uuid", "شناسه UUID معتبر نیست", "Not a valid UUID"),
    "date_parsing": ("not_date", "تاریخ معتبر نیست", "Not a valid date"),
    "date_from_datetime_parsing": ("not_date", "تاریخ معتبر نیست", "Not a valid date"),
    "date_type": ("not_date", "تاریخ معتبر نیست", "Not a valid date"),
    "datetime_parsing": ("not_datetime", "زمان معتبر نیست", "Not a valid date and time"),
    "datetime_from_date_parsing": (
        "not_datetime",
        "زمان معتبر نیست",
        "Not a valid date and time",
    ),
    "datetime_type": ("not_datetime", "زمان معتبر نیست", "Not a valid date and time"),
    "timezone_aware": (
        "timezone_required",
        "منطقه زمانی لازم است",
        "A time zone is required",
    ),
    "url_parsing": ("not_url", "نشانی معتبر نیست", "Not a valid URL"),
    "url_type": ("not_url", "نشانی معتبر نیست", "Not a valid URL"),
    "url_scheme": ("not_url", "نشانی معتبر نیست", "Not a valid URL"),
    "union_tag_invalid": ("not_allowed", "نوع مقدار مجاز نیست", "Not an allowed kind of value"),
    "text_not_storable": (
        "text_not_storable",
        "این متن نویسه‌ای دارد که ذخیره‌شدنی نیست (مانند NUL)",
        "The text holds a character that cannot be stored (such as NUL)",
    ),
}
_GENERIC = ("invalid", "این مقدار معتبر نیست", "This value is not valid")
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def field_path(location: Sequence[Any]) -> str:
    """``("body", "inputs", "year")`` → ``inputs.year``; ``("query", "q")`` → ``query.q``."""
    parts = [str(part) for part in location]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def _format(template: str, ctx: Mapping[str, Any]) -> str:
    try:
        return template.format(**ctx)
    except (KeyError, IndexError, ValueError):
        return template.split("{", 1)[0].rstrip(" ؛;:")


def translate(item: Mapping[str, Any]) -> FieldError:
    """One pydantic error (``ValidationError.errors()`` item) as a :class:`FieldError`."""
    field = field_path(item.get("loc", ()))
    ctx: Mapping[str, Any] = item.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, LocalizedProblem):
        return FieldError(field=field, code=error.code, message=dict(error.messages))
    kind = str(item.get("type", ""))
    if kind in _PYDANTIC:
        code, fa, en = _PYDANTIC[kind]
        return FieldError(
            field=field, code=code, message={"fa": _format(fa, ctx), "en": _format(en, ctx)}
        )
    if kind in {"value_error", "assertion_error"} and error is not None:
        text = str(error)
        return FieldError(field=field, code=_GENERIC[0], message={"fa": _GENERIC[1], "en": text})
    return FieldError(
        field=field, code=kind or _GENERIC[0], message={"fa": _GENERIC[1], "en": _GENERIC[2]}
    )


def field_errors(items: Iterable[Mapping[str, Any]], language: str) -> list[dict[str, str]]:
    """pydantic's errors, rendered for ``language``."""
    return [translate(item).render(language) for item in items]
