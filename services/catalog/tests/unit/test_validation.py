from __future__ import annotations

from typing import Any

import pytest

from panjereh.catalog.repository import FacetBits
from panjereh.catalog.schemas import CardContent
from panjereh.catalog.seed import synthetic_cards
from panjereh.catalog.seed_data import cards
from panjereh.catalog.validation import check_card


def smart_card(**changes: Any) -> CardContent:
    """The seed's criminal-record certificate (a consistent smart card), with ``changes``."""
    base = next(c for c in cards() if c.code == "11030000001")
    data = base.model_dump(mode="json") | changes
    return CardContent.model_validate(
        {k: v for k, v in data.items() if k not in {"code", "agency"}}
    )


def fields(card: CardContent) -> list[str]:
    return [problem["field"] for problem in check_card(card)]


def test_every_seed_card_passes() -> None:
    assert {c.code: check_card(c) for c in cards() if check_card(c)} == {}


class TestFormSchema:
    def test_an_invalid_json_schema_names_the_broken_keyword(self) -> None:
        card = smart_card(form_schema={"type": "object", "properties": {"age": {"type": "nmber"}}})
        problems = check_card(card)
        assert [p["field"] for p in problems] == ["form_schema.properties.age.type"]
        assert "not a valid JSON Schema" in problems[0]["message"]

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
        assert [p["field"] for p in problems] == ["decision.rules.1.when"]
        assert "'r1' does not compile as CEL" in problems[0]["message"]

    def test_a_rule_reading_an_unknown_variable_is_named(self) -> None:
        problems = check_card(smart_card(decision=self.rules("user.age > 18")))
        assert [p["field"] for p in problems] == ["decision.rules.0.when"]
        assert "unknown variables user" in problems[0]["message"]

    def test_comprehension_variables_are_not_unknown(self) -> None:
        rule = 'inquiries["police.clean-record"].has_record == false && [1, 2].all(x, x > 0)'
        assert fields(smart_card(decision=self.rules(rule))) == []

    def test_a_rule_reading_an_undeclared_inquiry_is_named(self) -> None:
        problems = check_card(
            smart_card(decision=self.rules('inquiries["tax.clearance"].has_debt'))
        )
        assert "tax.clearance" in problems[0]["message"]

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
