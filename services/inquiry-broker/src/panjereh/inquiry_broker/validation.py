"""The registry's JSON Schemas: compiled once, and what breaks them said as field errors.

An inquiry type's ``input_schema`` checks a caller's ``params``; its ``output_schema`` checks
an agency's ``result``. A broken ``params`` is answered with one ``errors[]`` entry per
violation: ``field`` (``params.mobile``), ``code`` (the JSON-Schema keyword that failed:
``required``, ``pattern``, ``type`` ...) and the message in Persian and English.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from panjereh.common.fields import FieldError, field_error

#: JSON-Schema keyword → (Persian, English); ``{value}`` is what the schema asked for.
_WORDING: dict[str, tuple[str, str]] = {
    "required": ("این فیلدها لازم‌اند: {value}", "Required: {value}"),
    "additionalProperties": ("این فیلدها شناخته نیستند: {value}", "Not expected: {value}"),
    "type": ("نوع مقدار باید {value} باشد", "Must be of type {value}"),
    "pattern": ("قالب این مقدار درست نیست", "The format is not valid"),
    "format": ("قالب این مقدار درست نیست ({value})", "Not a valid {value}"),
    "enum": ("مقدار مجاز نیست؛ یکی از {value}", "Not an allowed value; expected one of {value}"),
    "const": ("مقدار مجاز نیست؛ باید {value} باشد", "Not the allowed value; expected {value}"),
    "minLength": ("دست‌کم {value} نویسه لازم است", "At least {value} characters are required"),
    "maxLength": ("حداکثر {value} نویسه مجاز است", "At most {value} characters are allowed"),
    "minimum": ("باید دست‌کم {value} باشد", "Must be at least {value}"),
    "maximum": ("باید حداکثر {value} باشد", "Must be at most {value}"),
    "exclusiveMinimum": ("باید بیشتر از {value} باشد", "Must be greater than {value}"),
    "exclusiveMaximum": ("باید کمتر از {value} باشد", "Must be less than {value}"),
    "minItems": ("دست‌کم {value} مورد لازم است", "At least {value} items are required"),
    "maxItems": ("حداکثر {value} مورد مجاز است", "At most {value} items are allowed"),
}
_GENERIC_FA = "این مقدار معتبر نیست"
_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "string": ("متن", "text"),
    "integer": ("عدد صحیح", "integer"),
    "number": ("عدد", "number"),
    "boolean": ("درست یا نادرست", "boolean"),
    "object": ("شیء JSON", "object"),
    "array": ("فهرست", "array"),
    "null": ("تهی", "null"),
}


@lru_cache(maxsize=256)
def _compiled(schema_json: str) -> Draft202012Validator:
    """Compiled once per distinct schema (the registry changes rarely; requests are many)."""
    return Draft202012Validator(json.loads(schema_json))


def validator_for(schema: Mapping[str, Any]) -> Draft202012Validator:
    return _compiled(json.dumps(schema, sort_keys=True))


def breaks(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` violates ``schema`` (an agency's result against the output schema)."""
    return next(iter(validator_for(schema).iter_errors(value)), None) is not None


def params_errors(schema: Mapping[str, Any], params: Mapping[str, Any]) -> list[FieldError]:
    """Every way ``params`` breaks ``schema``, in field order; empty when it conforms."""
    problems = sorted(
        validator_for(schema).iter_errors(params),
        key=lambda problem: [str(part) for part in problem.absolute_path],
    )
    errors: list[FieldError] = []
    for problem in problems:
        error = _field_error(problem)
        if error not in errors:  # one per missing field set, not one per missing field
            errors.append(error)
    return errors


def _field_error(problem: ValidationError) -> FieldError:
    field = ".".join(["params", *(str(part) for part in problem.absolute_path)])
    keyword = str(problem.validator)
    if keyword not in _WORDING:
        return field_error(field, keyword, fa=_GENERIC_FA, en=problem.message)
    fa, en = _WORDING[keyword]
    value_fa, value_en = _asked_for(problem, keyword)
    return field_error(field, keyword, fa=fa.format(value=value_fa), en=en.format(value=value_en))


def _asked_for(problem: ValidationError, keyword: str) -> tuple[str, str]:
    """What the failed keyword asked for, as Persian and English text."""
    asked: Any = problem.validator_value
    instance = problem.instance
    if keyword == "required" and isinstance(instance, Mapping):
        asked = [name for name in asked if name not in instance]
    elif keyword == "additionalProperties" and isinstance(instance, Mapping):
        asked = sorted(name for name in instance if not _declared(problem.schema, name))
    elif keyword == "type":
        kinds = asked if isinstance(asked, list) else [asked]
        names = [_TYPE_NAMES.get(str(kind), (str(kind), str(kind))) for kind in kinds]
        return " یا ".join(fa for fa, _ in names), " or ".join(en for _, en in names)
    if isinstance(asked, list):
        return "، ".join(map(_text, asked)), ", ".join(map(_text, asked))
    return _text(asked), _text(asked)


def _declared(schema: Any, name: str) -> bool:
    if not isinstance(schema, Mapping):
        return False
    patterns = schema.get("patternProperties", {})
    return name in schema.get("properties", {}) or any(re.search(p, name) for p in patterns)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
