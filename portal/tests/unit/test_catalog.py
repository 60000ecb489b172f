"""Catalog pages' logic: the form over a draft, where the catalog's 422 errors are shown, the
diff the authority reads."""

from __future__ import annotations

import json

from panjereh.portal import catalog
from panjereh.portal.api import FieldIssue

DRAFT = {
    "code": "11010000001",
    "agency": "civil-registry",
    "state": "editing",
    "title": {"fa": "صدور المثنی شناسنامه", "en": "Copy of birth certificate"},
    "description": {"fa": "شرح"},
    "category": "identity-documents",
    "audience": ["citizen"],
    "channels": [{"type": "web", "url": "https://my.gov.ir/x", "description": None}],
    "locations": [{"name": {"fa": "دفتر پیشخوان"}}],
    "sla_days": 0,
    "in_person_visits": 0,
    "maturity": 5,
    "form_schema": {"type": "object"},
    "decision": {"mode": "agency", "rules": [], "otherwise": "agency"},
    "inquiries": [],
}


def test_the_form_edits_its_fields_and_keeps_the_rest_of_the_draft() -> None:
    values = catalog._form_values(DRAFT)
    values["title_fa"] = "عنوان تازه"
    values["sla_days"] = "۳"
    values["channels"] = ["web", "mobile"]
    content, errors = catalog._content(values, DRAFT, "fa")
    assert errors == {}
    assert content["title"] == {"fa": "عنوان تازه", "en": "Copy of birth certificate"}
    assert content["sla_days"] == 3
    assert content["locations"] == DRAFT["locations"]  # not on the form: kept as it was
    assert content["channels"] == [
        {"type": "web", "url": "https://my.gov.ir/x", "description": None},
        {"type": "mobile"},
    ]
    assert "state" not in content
    assert "code" not in content


def test_json_that_does_not_parse_is_named_with_its_line() -> None:
    values = catalog._form_values(DRAFT)
    values["decision"] = '{\n  "mode": "automatic",\n  "rules": [\n}'
    _, errors = catalog._content(values, DRAFT, "en")
    assert errors["decision"].startswith("This is not valid JSON (line 4)")


def test_the_catalogs_errors_are_shown_next_to_the_editor_of_the_broken_rule() -> None:
    placed, left = catalog._place(
        [
            FieldIssue("decision.rules.1.when", "decision_rule_not_cel", "not CEL"),
            FieldIssue("title.fa", "required", "required"),
            FieldIssue("fees.0.amount_rials", "too_small", "too small"),
        ]
    )
    assert placed == {
        "decision": ["decision.rules.1.when: not CEL"],
        "title_fa": ["required"],
    }
    assert left == ["fees.0.amount_rials: too small"]


def test_the_authority_sees_what_the_draft_changes() -> None:
    published = {**DRAFT, "version": 1, "status": "published"}
    draft = {**DRAFT, "sla_days": 2, "state": "submitted"}
    rows = catalog._diff(published, draft)
    assert rows == [{"field": "sla_days", "before": "0", "after": "2"}]
    new = catalog._diff(None, draft)
    assert {row["field"] for row in new} >= {"title", "decision", "sla_days"}
    assert all(row["before"] == "" for row in new)
    assert json.loads(next(r["after"] for r in new if r["field"] == "title"))["fa"]
