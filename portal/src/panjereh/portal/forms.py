"""A request form generated from a service card's JSON Schema (``form_schema``).

Each property becomes one field: its label is the schema's ``title`` (a string or a
``{"fa", "en"}`` text), its help the ``description``; ``enum`` gives a list, ``boolean`` a
checkbox, ``integer``/``number`` a numeric field (Persian digits accepted), ``format: date`` a
date field. The values are checked here first, so a mistake is explained next to its field in
the page's language before anything is sent; the API checks again and its field errors
(``inputs.<name>``) are shown the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from panjereh.portal.i18n import digits, latin_digits, text

#: what people read instead of a schema keyword, in each language
MESSAGES: dict[str, tuple[str, str]] = {
    "required": ("این بخش را پر کنید.", "Fill in this field."),
    "integer": ("یک عدد صحیح بنویسید.", "Enter a whole number."),
    "number": ("یک عدد بنویسید.", "Enter a number."),
    "minimum": ("باید دست‌کم {limit} باشد.", "Must be at least {limit}."),
    "maximum": ("باید حداکثر {limit} باشد.", "Must be at most {limit}."),
    "min_length": ("دست‌کم {limit} نویسه بنویسید.", "Write at least {limit} characters."),
    "max_length": ("حداکثر {limit} نویسه مجاز است.", "At most {limit} characters."),
    "pattern": ("قالب این مقدار درست نیست.", "This value is not in the expected format."),
    "enum": ("یکی از گزینه‌ها را انتخاب کنید.", "Choose one of the options."),
    "date": ("تاریخ را به شکل ۱۴۰۳-۰۱-۳۱ یا 2024-04-19 بنویسید.", "Write the date as 2024-04-19."),
    "json": ("متن JSON درست نیست.", "This is not valid JSON."),
}


def message(code: str, lang: str, **values: object) -> str:
    fa, en = MESSAGES.get(code, ("مقدار نادرست است.", "Invalid value."))
    template = fa if lang == "fa" else en
    return template.format(**{k: digits(v, lang) for k, v in values.items()})


@dataclass
class FormField:
    name: str
    kind: str  # text, textarea, integer, number, boolean, select, date, json
    label: str
    help: str
    required: bool
    schema: Mapping[str, Any]
    options: list[tuple[str, str]] = field(default_factory=list)
    value: str = ""
    error: str = ""

    @property
    def input_id(self) -> str:
        return f"f-{self.name}"

    @property
    def inputmode(self) -> str | None:
        return {"integer": "numeric", "number": "decimal"}.get(self.kind)


def _label(schema: Mapping[str, Any], name: str, lang: str) -> str:
    title = schema.get("title")
    if isinstance(title, Mapping | str) and title:
        return text(title, lang)
    return name.replace("_", " ")


def fields_of(form_schema: Mapping[str, Any], lang: str) -> list[FormField]:
    properties = form_schema.get("properties") or {}
    listed = [str(name) for name in form_schema.get("required") or []]
    required = set(listed)
    # a stored schema may not keep the order of its properties (PostgreSQL's JSONB sorts
    # them); ``x-order``, then the order of ``required``, then the name decide it
    order = form_schema.get("x-order") or listed
    rank = {name: index for index, name in enumerate(order)}
    names = sorted(properties, key=lambda name: (rank.get(name, len(rank)), name))
    fields: list[FormField] = []
    for name in names:
        raw = properties[name]
        schema: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        kind = _kind(schema)
        options: list[tuple[str, str]] = []
        if kind == "select":
            titles = schema.get("x-enum-titles") or {}
            options = [(str(v), text(titles.get(str(v)), lang) or str(v)) for v in schema["enum"]]
        help_text = schema.get("description")
        fields.append(
            FormField(
                name=str(name),
                kind=kind,
                label=_label(schema, str(name), lang),
                help=text(help_text, lang) if isinstance(help_text, Mapping | str) else "",
                required=name in required,
                schema=schema,
                options=options,
            )
        )
    return fields


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in schema:
        return "select"
    if kind in {"integer", "number", "boolean"}:
        return str(kind)
    if kind in {"object", "array"}:
        return "json"
    if schema.get("format") == "date":
        return "date"
    if int(schema.get("maxLength", 0)) > 200:
        return "textarea"
    return "text"


def read(
    fields: list[FormField], submitted: Mapping[str, str], lang: str
) -> tuple[dict[str, Any], bool]:
    """The inputs to send, and whether every field passed (errors are set on the fields)."""
    inputs: dict[str, Any] = {}
    valid = True
    for item in fields:
        raw = submitted.get(item.name, "")
        item.value = raw
        if item.kind == "boolean":
            inputs[item.name] = raw in {"on", "true", "1"}
            continue
        cleaned = raw.strip()
        if not cleaned:
            if item.required:
                item.error = message("required", lang)
                valid = False
            continue
        try:
            inputs[item.name] = _convert(item, cleaned, lang)
        except _Invalid as problem:
            item.error = problem.text
            valid = False
    return inputs, valid


class _Invalid(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _convert(item: FormField, value: str, lang: str) -> Any:
    if item.kind in {"integer", "number"}:
        return _number(item, value, lang)
    schema = item.schema
    if item.kind == "select":
        for option in schema["enum"]:
            if str(option) == value:
                return option
        raise _Invalid(message("enum", lang))
    if item.kind == "json":
        try:
            return json.loads(value)
        except ValueError:
            raise _Invalid(message("json", lang)) from None
    if item.kind == "date":
        plain = latin_digits(value)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", plain):
            raise _Invalid(message("date", lang))
        return plain
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise _Invalid(message("min_length", lang, limit=schema["minLength"]))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise _Invalid(message("max_length", lang, limit=schema["maxLength"]))
    if "pattern" in schema and not re.search(str(schema["pattern"]), value):
        raise _Invalid(message("pattern", lang))
    return value


def _number(item: FormField, value: str, lang: str) -> int | float:
    schema = item.schema
    plain = latin_digits(value).replace("٬", "").replace(",", "").replace("٫", ".")
    try:
        number: int | float = int(plain) if item.kind == "integer" else float(plain)
    except ValueError:
        raise _Invalid(message(item.kind, lang)) from None
    if "minimum" in schema and number < schema["minimum"]:
        raise _Invalid(message("minimum", lang, limit=f"{schema['minimum']:,}"))
    if "maximum" in schema and number > schema["maximum"]:
        raise _Invalid(message("maximum", lang, limit=f"{schema['maximum']:,}"))
    return number


def attach_api_errors(fields: list[FormField], errors: list[Any]) -> list[str]:
    """Put the API's field errors (``inputs.<name>``) next to their fields; the rest back."""
    by_name = {item.name: item for item in fields}
    left: list[str] = []
    for issue in errors:
        name = issue.field.removeprefix("body.").removeprefix("inputs.").split(".")[0]
        target = by_name.get(name)
        if target is not None and not target.error:
            target.error = issue.message
        else:
            left.append(issue.message)
    return left
