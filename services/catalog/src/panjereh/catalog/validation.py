"""Checks a service card must pass when saved, beyond the shape its schema describes.

- ``form_schema`` must be a valid JSON Schema (Draft 2020-12) of an object;
- every decision rule must compile as a CEL expression over ``inputs``, ``inquiries``,
  ``citizen`` and ``now``, and may only read inquiries the card declares;
- the declared maturity must match what the card says about channels, visits, documents and
  the decision mode.

Each problem is reported as ``{"field": ..., "message": ...}`` so the 422 names it.
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

#: Variables a decision rule may read; the requests service binds exactly these.
RULE_VARIABLES = frozenset({"inputs", "inquiries", "citizen", "now"})
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# comprehension macros bind their own variable: ``list.exists(x, x > 1)``
_BOUND_VARIABLE = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter|transformList|transformMap)\s*\(\s*"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*,(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)
_INQUIRY_READ = re.compile(r"""\binquiries\s*\[\s*(?:"([^"]*)"|'([^']*)')\s*\]""")

Problem = dict[str, str]


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
            {
                "field": "form_schema.$schema",
                "message": f"form schemas use JSON Schema 2020-12 ({DRAFT_2020_12})",
            }
        ]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = ".".join(str(part) for part in error.absolute_path)
        return [
            {
                "field": f"form_schema.{where}" if where else "form_schema",
                "message": f"not a valid JSON Schema (2020-12): {error.message}",
            }
        ]
    if schema.get("type") != "object":
        return [
            {
                "field": "form_schema.type",
                "message": 'the inputs of a request are an object: "type" must be "object"',
            }
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
            {
                "field": "decision.rules",
                "message": "an automatic decision needs at least one rule",
            }
        )
    declared_inquiries = {inquiry.type for inquiry in card.inquiries}
    seen: set[str] = set()
    for index, rule in enumerate(decision.rules):
        field = f"decision.rules.{index}"
        if rule.id in seen:
            problems.append({"field": f"{field}.id", "message": f"rule id {rule.id!r} repeats"})
        seen.add(rule.id)
        try:
            program = compile_rule(rule.when)
        except ValueError as error:
            problems.append(
                {
                    "field": f"{field}.when",
                    "message": f"rule {rule.id!r} does not compile as CEL: {error}",
                }
            )
            continue
        unknown = sorted(set(program.variables()) - RULE_VARIABLES - _bound_variables(rule.when))
        if unknown:
            problems.append(
                {
                    "field": f"{field}.when",
                    "message": (
                        f"rule {rule.id!r} reads unknown variables {', '.join(unknown)}; "
                        f"rules may read {', '.join(sorted(RULE_VARIABLES))}"
                    ),
                }
            )
        undeclared = sorted(_inquiries_read(rule.when) - declared_inquiries)
        if undeclared:
            problems.append(
                {
                    "field": f"{field}.when",
                    "message": (
                        f"rule {rule.id!r} reads inquiries the card does not declare: "
                        f"{', '.join(undeclared)}"
                    ),
                }
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
        {"field": f"channels.{index}.url", "message": "a web channel needs its exact URL"}
        for index, channel in enumerate(card.channels)
        if channel.type is ChannelType.WEB and channel.url is None
    ]


def check_maturity(card: CardContent) -> list[Problem]:
    """Level 4 (fully electronic) and 5 (smart) must be true of the card, not just declared."""
    problems: list[Problem] = []
    if card.maturity >= Maturity.FULLY_ELECTRONIC:
        level = f"maturity {int(card.maturity)}"
        if card.in_person_visits != 0:
            problems.append(
                {
                    "field": "in_person_visits",
                    "message": (
                        f"{level} needs no in-person visit (declared {card.in_person_visits})"
                    ),
                }
            )
        if not any(channel.type in ONLINE_CHANNELS for channel in card.channels):
            problems.append(
                {"field": "channels", "message": f"{level} needs an online channel (web or mobile)"}
            )
        if not card.electronic_stages.all_electronic:
            problems.append(
                {
                    "field": "electronic_stages",
                    "message": f"{level} needs every stage (information, application, "
                    "processing, delivery) to be electronic",
                }
            )
    if card.maturity == Maturity.SMART:
        if card.decision.mode is not DecisionMode.AUTOMATIC:
            problems.append(
                {
                    "field": "decision.mode",
                    "message": "maturity 5 (smart) needs the automatic decision mode",
                }
            )
        if card.documents_required:
            problems.append(
                {
                    "field": "documents_required",
                    "message": "maturity 5 (smart) asks the citizen for no document: "
                    "obtain them by inquiry",
                }
            )
    return problems
