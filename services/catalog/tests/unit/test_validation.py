from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from panjereh.catalog.repository import FacetBits
from panjereh.catalog.schemas import CardContent
from panjereh.catalog.seed import synthetic_cards
from panjereh.catalog.seed_data import cards
from panjereh.catalog.validation import check_card
from panjereh.common.fields import translate


def smart_card(**changes: Any) -> CardContent:
    """The seed's criminal-record certificate (a consistent smart card), with ``changes``."""
    base = next(c for c in cards() if c.code == "11030000001")
    data = base.model_dump(mode="json") | changes
    return CardContent.model_validate(
        {k: v for k, v in data.items() if k not in {"code", "agency"}}
    )


def fields(card: CardContent) -> list[str]:
    return [problem.field for problem in check_card(card)]


def test_every_seed_card_passes() -> None:
    assert {c.code: check_card(c) for c in cards() if check_card(c)} == {}


class TestFormSchema:
    def test_an_invalid_json_schema_names_the_broken_keyword(self) -> None:
        card = smart_card(form_schema={"type": "object", "properties": {"age": {"type": "nmber"}}})
        problems = check_card(card)
        assert [p.field for p in problems] == ["form_schema.properties.age.type"]
        assert "not a valid JSON Schema" in problems[0].message["en"]

    def test_another_draft_is_refused(self) -> None:
        card = smart_card(
            form_schema={"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}
        )
        assert fields(card) == ["form_schema.$schema"]

    def test_inputs_must_be_an_object(self) -> None:
        assert fields(smart_card(form_schema={"type": "string"})) == ["form_schema.type"]

    def test_a_2020_12_schema_passes(self) -> None:
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"tags": {"type": "array", "prefixItems": [{"type": "string"}]}},
        }
        assert fields(smart_card(form_schema=schema)) == []


class TestDecisionRules:
    def rules(self, *whens: str) -> dict[str, Any]:
        return {
            "mode": "automatic",
            "otherwise": "reject",
            "rules": [
                {"id": f"r{i}", "when": when, "outcome": "approve", "reason": {"fa": "دلیل"}}
                for i, when in enumerate(whens)
            ],
        }

    def test_a_rule_that_does_not_compile_is_named(self) -> None:
        problems = check_card(smart_card(decision=self.rules("true", "inputs.age >")))
        assert [p.field for p in problems] == ["decision.rules.1.when"]
        assert "'r1' does not compile as CEL" in problems[0].message["en"]

    def test_a_rule_reading_an_unknown_variable_is_named(self) -> None:
        problems = check_card(smart_card(decision=self.rules("user.age > 18")))
        assert [p.field for p in problems] == ["decision.rules.0.when"]
        assert "unknown variables user" in problems[0].message["en"]

    def test_comprehension_variables_are_not_unknown(self) -> None:
        rule = 'inquiries["police.clean-record"].has_record == false && [1, 2].all(x, x > 0)'
        assert fields(smart_card(decision=self.rules(rule))) == []

    def test_a_rule_reading_an_undeclared_inquiry_is_named(self) -> None:
        problems = check_card(
            smart_card(decision=self.rules('inquiries["tax.clearance"].has_debt'))
        )
        assert "tax.clearance" in problems[0].message["en"]

    def test_automatic_mode_needs_a_rule(self) -> None:
        decision = {"mode": "automatic", "rules": [], "otherwise": "reject"}
        assert "decision.rules" in fields(smart_card(decision=decision))

    def test_rule_ids_are_unique(self) -> None:
        decision = self.rules("true", "false")
        decision["rules"][1]["id"] = "r0"
        assert fields(smart_card(decision=decision)) == ["decision.rules.1.id"]


class TestMaturity:
    def test_smart_needs_the_automatic_mode(self) -> None:
        decision = {"mode": "agency", "rules": [], "otherwise": "agency"}
        assert fields(smart_card(decision=decision)) == ["decision.mode"]

    def test_smart_asks_for_no_document(self) -> None:
        card = smart_card(documents_required=[{"name": {"fa": "کارت ملی"}}])
        assert fields(card) == ["documents_required"]

    def test_smart_needs_an_online_channel(self) -> None:
        card = smart_card(channels=[{"type": "phone"}])
        assert fields(card) == ["channels"]

    @pytest.mark.parametrize("maturity", [4, 5])
    def test_fully_electronic_needs_no_visit(self, maturity: int) -> None:
        card = smart_card(maturity=maturity, in_person_visits=1)
        assert fields(card) == ["in_person_visits"]

    def test_a_lower_level_may_need_visits_and_documents(self) -> None:
        card = smart_card(
            maturity=3,
            in_person_visits=2,
            documents_required=[{"name": {"fa": "کارت ملی"}}],
            decision={"mode": "agency", "rules": [], "otherwise": "agency"},
        )
        assert fields(card) == []

    def test_a_web_channel_needs_its_url(self) -> None:
        card = smart_card(channels=[{"type": "web"}, {"type": "mobile"}])
        assert fields(card) == ["channels.0.url"]


AUTOMATIC_NO_RULES = {"mode": "automatic", "rules": [], "otherwise": "reject"}
AGENCY_MODE = {"mode": "agency", "rules": [], "otherwise": "agency"}
REPEATED_IDS = {
    "mode": "automatic",
    "otherwise": "reject",
    "rules": [
        {"id": "same", "when": "true", "outcome": "approve", "reason": {"fa": "دلیل"}},
        {"id": "same", "when": "false", "outcome": "approve", "reason": {"fa": "دلیل"}},
    ],
}


def one_rule(when: str) -> dict[str, Any]:
    rule = {"id": "r0", "when": when, "outcome": "approve", "reason": {"fa": "دلیل"}}
    return {"mode": "automatic", "otherwise": "reject", "rules": [rule]}


class TestProblemCodes:
    """Every problem has a stable code for front ends and a message in Persian and English."""

    @pytest.mark.parametrize(
        ("changes", "field", "code"),
        [
            ({"form_schema": {"$schema": "http://json-schema.org/draft-04/schema#"}},
             "form_schema.$schema", "form_schema_draft"),
            ({"form_schema": {"type": "object", "minProperties": "one"}},
             "form_schema.minProperties", "form_schema_invalid"),
            ({"form_schema": {"type": "string"}}, "form_schema.type", "form_schema_not_object"),
            ({"decision": AUTOMATIC_NO_RULES}, "decision.rules", "decision_rule_required"),
            ({"decision": REPEATED_IDS}, "decision.rules.1.id", "decision_rule_id_repeated"),
            ({"decision": one_rule("inputs.age >")}, "decision.rules.0.when",
             "decision_rule_not_cel"),
            ({"decision": one_rule("user.age > 18")}, "decision.rules.0.when",
             "decision_rule_unknown_variable"),
            ({"decision": one_rule('inquiries["tax.clearance"].has_debt')},
             "decision.rules.0.when", "decision_rule_undeclared_inquiry"),
            ({"channels": [{"type": "web"}, {"type": "mobile"}]}, "channels.0.url",
             "web_channel_url_required"),
            ({"in_person_visits": 1}, "in_person_visits", "maturity_needs_no_visit"),
            ({"channels": [{"type": "phone"}]}, "channels", "maturity_needs_online_channel"),
            ({"electronic_stages": {"information": True}}, "electronic_stages",
             "maturity_needs_electronic_stages"),
            ({"decision": AGENCY_MODE}, "decision.mode", "smart_needs_automatic_decision"),
            ({"documents_required": [{"name": {"fa": "کارت ملی"}}]}, "documents_required",
             "smart_needs_no_document"),
        ],
    )  # fmt: skip
    def test_each_problem_is_coded_and_bilingual(
        self, changes: dict[str, Any], field: str, code: str
    ) -> None:
        problems = [p for p in check_card(smart_card(**changes)) if p.field == field]
        assert [p.code for p in problems] == [code]
        (problem,) = problems
        assert problem.message["fa"]
        assert problem.message["en"]
        assert problem.message["fa"] != problem.message["en"]

    def test_a_problem_renders_in_the_language_asked_for(self) -> None:
        (problem,) = check_card(smart_card(channels=[{"type": "web"}, {"type": "mobile"}]))
        assert problem.render("en") == {
            "field": "channels.0.url",
            "code": "web_channel_url_required",
            "message": "a web channel needs its exact URL",
        }
        assert problem.render("fa")["message"] == "کانال وب نشانی دقیق خود را لازم دارد"


class TestSchemaValidators:
    """Rules the card's own schema checks raise localised field problems with stable codes."""

    @pytest.mark.parametrize(
        ("changes", "field", "code", "english"),
        [
            ({"processing_time": "3 days"}, "processing_time", "iso_duration", "ISO-8601"),
            ({"audience": ["citizen", "citizen"]}, "audience", "duplicate_value", "repeat"),
            ({"life_events": ["birth", "birth"]}, "life_events", "duplicate_value", "repeat"),
        ],
    )
    def test_a_broken_value_is_named_with_its_code(
        self, changes: dict[str, Any], field: str, code: str, english: str
    ) -> None:
        with pytest.raises(ValidationError) as caught:
            smart_card(**changes)
        (error,) = [translate(item) for item in caught.value.errors()]
        assert (error.field, error.code) == (field, code)
        assert english in error.message["en"]
        assert error.message["fa"] != error.message["en"]


def test_synthetic_cards_for_benchmarks_are_valid_and_varied() -> None:
    generated = list(synthetic_cards(300))
    assert [c.code for c in generated if check_card(c)] == []
    assert len({c.code for c in generated}) == 300
    assert {int(c.maturity) for c in generated} == {0, 1, 2, 3, 4, 5}


def test_facet_bit_order_is_pinned() -> None:
    """The listing stores these as bit positions: values may only ever be appended."""
    assert FacetBits.LIFE_EVENT.values == (
        "birth", "education", "health", "taxes", "business", "social-security",
        "property-registration", "utilities", "insurance", "marriage", "retirement",
        "documents-and-certificates", "death", "other",
    )  # fmt: skip
    assert FacetBits.CHANNEL.values == (
        "web", "mobile", "sms", "phone", "kiosk", "counter", "agency-office", "in-person", "other",
    )  # fmt: skip
    assert FacetBits.AUDIENCE.values == ("citizen", "business", "government")
    assert FacetBits.CHANNEL.mask(["web", "counter", "web"]) == 0b100001
