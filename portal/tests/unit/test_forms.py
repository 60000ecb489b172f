"""The request form generated from a card's JSON Schema, and its checks in Persian."""

from __future__ import annotations

from panjereh.portal import forms
from panjereh.portal.api import FieldIssue

TUITION = {
    "type": "object",
    "required": ["student_number", "semester", "amount_rials"],
    "properties": {
        "semester": {"type": "integer", "minimum": 1, "maximum": 20},
        "amount_rials": {"type": "integer", "minimum": 1_000_000, "maximum": 500_000_000},
        "student_number": {
            "type": "string",
            "minLength": 5,
            "maxLength": 20,
            "title": {"fa": "شماره دانشجویی", "en": "Student number"},
            "description": {"fa": "همان شماره کارت دانشجویی", "en": "As on the card"},
        },
        "province": {"type": "string", "enum": ["tehran", "fars"]},
        "agree": {"type": "boolean"},
    },
}


def test_fields_follow_the_required_order_then_the_name_and_read_titles() -> None:
    fields = forms.fields_of(TUITION, "fa")
    assert [f.name for f in fields] == [
        "student_number",
        "semester",
        "amount_rials",
        "agree",
        "province",
    ]
    assert fields[0].label == "شماره دانشجویی"
    assert fields[0].help == "همان شماره کارت دانشجویی"
    assert forms.fields_of(TUITION, "en")[0].label == "Student number"
    assert [f.kind for f in fields] == ["text", "integer", "integer", "boolean", "select"]
    assert fields[1].inputmode == "numeric"


def test_values_are_checked_in_persian_and_persian_digits_are_read() -> None:
    fields = forms.fields_of(TUITION, "fa")
    inputs, valid = forms.read(
        fields,
        {"student_number": "99", "semester": "۳۰", "amount_rials": "۱۰۰٬۰۰۰٬۰۰۰"},
        "fa",
    )
    assert not valid
    errors = {f.name: f.error for f in fields if f.error}
    assert errors == {
        "student_number": "دست‌کم ۵ نویسه بنویسید.",
        "semester": "باید حداکثر ۲۰ باشد.",
    }
    assert inputs["amount_rials"] == 100_000_000
    assert inputs["agree"] is False


def test_a_correct_form_gives_typed_inputs() -> None:
    fields = forms.fields_of(TUITION, "en")
    inputs, valid = forms.read(
        fields,
        {
            "student_number": "9912345",
            "semester": "3",
            "amount_rials": "1000000",
            "province": "fars",
            "agree": "on",
        },
        "en",
    )
    assert valid
    assert inputs == {
        "student_number": "9912345",
        "semester": 3,
        "amount_rials": 1_000_000,
        "province": "fars",
        "agree": True,
    }


def test_missing_required_values_and_unknown_choices_are_named() -> None:
    fields = forms.fields_of(TUITION, "en")
    _, valid = forms.read(fields, {"province": "gilan"}, "en")
    assert not valid
    errors = {f.name: f.error for f in fields if f.error}
    assert errors["semester"] == "Fill in this field."
    assert errors["province"] == "Choose one of the options."


def test_the_apis_field_errors_land_next_to_their_fields() -> None:
    fields = forms.fields_of(TUITION, "fa")
    left = forms.attach_api_errors(
        fields,
        [
            FieldIssue("inputs.semester", "maximum", "حداکثر ۲۰"),
            FieldIssue("service_code", "invalid", "خدمت نامعتبر"),
        ],
    )
    assert next(f for f in fields if f.name == "semester").error == "حداکثر ۲۰"
    assert left == ["خدمت نامعتبر"]


def test_the_seeded_shape_persian_string_titles_in_x_order() -> None:
    """What the catalog stores (JSON Schema allows a string title only): Persian strings, and
    ``x-order`` since the stored schema does not keep the order of its properties."""
    schema = {
        "type": "object",
        "required": ["amount_rials", "student_number"],
        "x-order": ["student_number", "semester", "amount_rials"],
        "properties": {
            "amount_rials": {"type": "integer", "title": "مبلغ درخواستی وام (ریال)"},
            "semester": {
                "type": "integer",
                "title": "نیمسال تحصیلی",
                "description": "شماره نیمسالی که در آن تحصیل می‌کنید",
            },
            "student_number": {"type": "string", "title": "شماره دانشجویی"},
        },
    }
    fields = forms.fields_of(schema, "en")
    assert [f.name for f in fields] == ["student_number", "semester", "amount_rials"]
    assert [f.label for f in fields] == [
        "شماره دانشجویی",
        "نیمسال تحصیلی",
        "مبلغ درخواستی وام (ریال)",
    ]
    assert fields[1].help == "شماره نیمسالی که در آن تحصیل می‌کنید"
    assert [f.required for f in fields] == [True, False, True]
