"""A caller's ``params`` against the type's input schema: one coded field error per problem."""

from __future__ import annotations

from typing import Any

from panjereh.inquiry_broker.validation import breaks, params_errors

MOBILE = {
    "type": "object",
    "properties": {"mobile": {"type": "string", "pattern": "^09[0-9]{9}$"}},
    "required": ["mobile"],
    "additionalProperties": False,
}


def rendered(params: dict[str, Any], language: str = "en") -> list[dict[str, str]]:
    return [error.render(language) for error in params_errors(MOBILE, params)]


class TestParamsErrors:
    def test_conforming_params_have_none(self) -> None:
        assert params_errors(MOBILE, {"mobile": "09121234567"}) == []

    def test_each_problem_names_its_field_and_the_keyword_that_failed(self) -> None:
        assert rendered({"mobile": "12"}) == [
            {"field": "params.mobile", "code": "pattern", "message": "The format is not valid"}
        ]
        assert rendered({"mobile": 12}) == [
            {"field": "params.mobile", "code": "type", "message": "Must be of type text"}
        ]

    def test_missing_and_unexpected_fields_are_named(self) -> None:
        errors = sorted(rendered({"imei": "x"}), key=lambda error: error["code"])
        assert errors == [
            {"field": "params", "code": "additionalProperties", "message": "Not expected: imei"},
            {"field": "params", "code": "required", "message": "Required: mobile"},
        ]

    def test_messages_are_in_persian_too(self) -> None:
        (error,) = rendered({}, "fa")
        assert (error["field"], error["code"]) == ("params", "required")
        assert error["message"] == "این فیلدها لازم‌اند: mobile"

    def test_one_entry_for_several_missing_fields(self) -> None:
        schema = {"type": "object", "required": ["a", "b"]}
        errors = [e.render("en") for e in params_errors(schema, {})]
        assert errors == [{"field": "params", "code": "required", "message": "Required: a, b"}]

    def test_a_keyword_without_wording_keeps_the_validators_message(self) -> None:
        schema = {"type": "object", "properties": {"n": {"multipleOf": 5}}}
        (error,) = params_errors(schema, {"n": 7})
        assert (error.field, error.code) == ("params.n", "multipleOf")
        assert "multiple of 5" in error.message["en"]


def test_a_result_that_breaks_the_output_schema_is_noticed() -> None:
    schema = {"type": "object", "required": ["owned"]}
    assert breaks(schema, {})
    assert not breaks(schema, {"owned": True})
