"""Checks a service card must pass when saved, beyond the shape its schema describes.

- ``form_schema`` must be a valid JSON Schema (Draft 2020-12) of an object;
- every decision rule must compile as a CEL expression over ``inputs``, ``inquiries``,
  ``citizen`` and ``now``, and may only read inquiries the card declares;
- the declared maturity must match what the card says about channels, visits, documents and
  the decision mode.

Each problem is a :class:`~panjereh.common.fields.FieldError`: the field it names (so the 422
points at it, e.g. ``decision.rules.1.when``), a stable ``code`` front ends can key on, and the
message in Persian and English.
"""

from __future__ import annotations

import re
from typing import Any

import cel
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from panjereh.catalog.schemas import (
    ONLINE_CHANNELS,
    CardContent,
    ChannelType,
    DecisionMode,
    Maturity,
)
from panjereh.common.fields import FieldError, field_error

#: Variables a decision rule may read; the requests service binds exactly these.
RULE_VARIABLES = frozenset({"inputs", "inquiries", "citizen", "now"})
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# comprehension macros bind their own variable: ``list.exists(x, x > 1)``
_BOUND_VARIABLE = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter|transformList|transformMap)\s*\(\s*"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*,(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)
_INQUIRY_READ = re.compile(r"""\binquiries\s*\[\s*(?:"([^"]*)"|'([^']*)')\s*\]""")

Problem = FieldError


def check_card(card: CardContent) -> list[Problem]:
    """Every problem found in ``card`` (empty when it may be saved)."""
    return [
        *check_form_schema(card.form_schema),
        *check_decision(card),
        *check_channels(card),
        *check_maturity(card),
    ]


def check_form_schema(schema: dict[str, Any]) -> list[Problem]:
    declared = schema.get("$schema")
    if declared is not None and declared.rstrip("#") != DRAFT_2020_12:
        return [
            field_error(
                "form_schema.$schema",
                "form_schema_draft",
                fa=f"شمای فرم با JSON Schema نسخه 2020-12 نوشته می‌شود ({DRAFT_2020_12})",
                en=f"form schemas use JSON Schema 2020-12 ({DRAFT_2020_12})",
            )
        ]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = ".".join(str(part) for part in error.absolute_path)
        return [
            field_error(
                f"form_schema.{where}" if where else "form_schema",
                "form_schema_invalid",
                fa=f"JSON Schema معتبری (2020-12) نیست: {error.message}",
                en=f"not a valid JSON Schema (2020-12): {error.message}",
            )
        ]
    if schema.get("type") != "object":
        return [
            field_error(
                "form_schema.type",
                "form_schema_not_object",
                fa='ورودی‌های درخواست یک شیء است: "type" باید "object" باشد',
                en='the inputs of a request are an object: "type" must be "object"',
            )
        ]
    return []


def compile_rule(expression: str) -> cel.Program:
    """Compile one CEL rule; ``ValueError`` with the parser's message when it does not."""
    return cel.compile(expression)


def check_decision(card: CardContent) -> list[Problem]:
    problems: list[Problem] = []
    decision = card.decision
    if decision.mode is DecisionMode.AUTOMATIC and not decision.rules:
        problems.append(
            field_error(
                "decision.rules",
                "decision_rule_required",
                fa="تصمیم‌گیری خودکار دست‌کم یک قاعده لازم دارد",
                en="an automatic decision needs at least one rule",
            )
        )
    declared_inquiries = {inquiry.type for inquiry in card.inquiries}
    seen: set[str] = set()
    for index, rule in enumerate(decision.rules):
        field = f"decision.rules.{index}"
        if rule.id in seen:
            problems.append(
                field_error(
                    f"{field}.id",
                    "decision_rule_id_repeated",
                    fa=f"شناسه قاعده {rule.id!r} تکراری است",
                    en=f"rule id {rule.id!r} repeats",
                )
            )
        seen.add(rule.id)
        try:
            program = compile_rule(rule.when)
        except ValueError as error:
            problems.append(
                field_error(
                    f"{field}.when",
                    "decision_rule_not_cel",
                    fa=f"قاعده {rule.id!r} عبارت CEL درستی نیست: {error}",
                    en=f"rule {rule.id!r} does not compile as CEL: {error}",
                )
            )
            continue
        unknown = sorted(set(program.variables()) - RULE_VARIABLES - _bound_variables(rule.when))
        if unknown:
            problems.append(
                field_error(
                    f"{field}.when",
                    "decision_rule_unknown_variable",
                    fa=(
                        f"قاعده {rule.id!r} متغیرهای ناشناخته {', '.join(unknown)} را می‌خواند؛ "
                        f"قاعده‌ها فقط {', '.join(sorted(RULE_VARIABLES))} را می‌خوانند"
                    ),
                    en=(
                        f"rule {rule.id!r} reads unknown variables {', '.join(unknown)}; "
                        f"rules may read {', '.join(sorted(RULE_VARIABLES))}"
                    ),
                )
            )
        undeclared = sorted(_inquiries_read(rule.when) - declared_inquiries)
        if undeclared:
            problems.append(
                field_error(
                    f"{field}.when",
                    "decision_rule_undeclared_inquiry",
                    fa=(
                        f"قاعده {rule.id!r} استعلام‌هایی را می‌خواند که شناسنامه اعلام نکرده است: "
                        f"{', '.join(undeclared)}"
                    ),
                    en=(
                        f"rule {rule.id!r} reads inquiries the card does not declare: "
                        f"{', '.join(undeclared)}"
                    ),
                )
            )
    return problems


def _bound_variables(expression: str) -> set[str]:
    return {
        name for match in _BOUND_VARIABLE.finditer(expression) for name in match.groups() if name
    }


def _inquiries_read(expression: str) -> set[str]:
    return {a or b for a, b in _INQUIRY_READ.findall(expression)}


def check_channels(card: CardContent) -> list[Problem]:
    return [
        field_error(
            f"channels.{index}.url",
            "web_channel_url_required",
            fa="کانال وب نشانی دقیق خود را لازم دارد",
            en="a web channel needs its exact URL",
        )
        for index, channel in enumerate(card.channels)
        if channel.type is ChannelType.WEB and channel.url is None
    ]


def check_maturity(card: CardContent) -> list[Problem]:
    """Level 4 (fully electronic) and 5 (smart) must be true of the card, not just declared."""
    problems: list[Problem] = []
    if card.maturity >= Maturity.FULLY_ELECTRONIC:
        level = int(card.maturity)
        if card.in_person_visits != 0:
            problems.append(
                field_error(
                    "in_person_visits",
                    "maturity_needs_no_visit",
                    fa=(f"سطح بلوغ {level} مراجعه حضوری ندارد (اعلام‌شده: {card.in_person_visits})"),
                    en=(
                        f"maturity {level} needs no in-person visit "
                        f"(declared {card.in_person_visits})"
                    ),
                )
            )
        if not any(channel.type in ONLINE_CHANNELS for channel in card.channels):
            problems.append(
                field_error(
                    "channels",
                    "maturity_needs_online_channel",
                    fa=f"سطح بلوغ {level} یک کانال برخط (وب یا همراه) لازم دارد",
                    en=f"maturity {level} needs an online channel (web or mobile)",
                )
            )
        if not card.electronic_stages.all_electronic:
            problems.append(
                field_error(
                    "electronic_stages",
                    "maturity_needs_electronic_stages",
                    fa=(
                        f"در سطح بلوغ {level} همه مراحل (اطلاع‌رسانی، درخواست، رسیدگی، "
                        "تحویل) الکترونیکی است"
                    ),
                    en=(
                        f"maturity {level} needs every stage (information, application, "
                        "processing, delivery) to be electronic"
                    ),
                )
            )
    if card.maturity == Maturity.SMART:
        if card.decision.mode is not DecisionMode.AUTOMATIC:
            problems.append(
                field_error(
                    "decision.mode",
                    "smart_needs_automatic_decision",
                    fa="سطح بلوغ ۵ (هوشمند) تصمیم‌گیری خودکار لازم دارد",
                    en="maturity 5 (smart) needs the automatic decision mode",
                )
            )
        if card.documents_required:
            problems.append(
                field_error(
                    "documents_required",
                    "smart_needs_no_document",
                    fa=(
                        "در سطح بلوغ ۵ (هوشمند) هیچ مدرکی از شهروند خواسته نمی‌شود: "
                        "آن را با استعلام به دست آورید"
                    ),
                    en=(
                        "maturity 5 (smart) asks the citizen for no document: "
                        "obtain them by inquiry"
                    ),
                )
            )
    return problems
