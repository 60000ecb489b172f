"""What a card's rules say about a request: the variables they see, and how a verdict reads.

Pure functions, shared by the live decision (the orchestration) and its replay (receipts), so
that a replay of the same evidence under the same card version can only differ when the
evidence did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from panjereh.contracts.catalog import CardDecision
from panjereh.requests.rules import Rule, Verdict

#: the inquiry whose answer also describes the citizen (``citizen.*`` in rules)
CIVIL_REGISTRY = "civil-registry.person"
#: the fields of the civil registry's answer that rules may read as ``citizen.<field>``
CITIZEN_FIELDS = ("first_name", "last_name", "birth_date", "alive", "gender")

NO_RULE_MATCHED = {
    "fa": "هیچ‌یک از قواعد تصمیم‌گیری این خدمت با درخواست منطبق نشد",
    "en": "No decision rule of this service matched the request",
}
NO_RULE_MATCHED_TO_AGENCY = {
    "fa": "قواعد خودکار درباره این درخواست تصمیمی نگرفتند؛ کارشناس دستگاه تصمیم می‌گیرد",
    "en": "No decision rule matched the request; an officer of the agency will decide",
}
NOT_EVALUATED = {
    "fa": "قواعد تصمیم‌گیری این خدمت ارزیابی نشد؛ کارشناس دستگاه تصمیم می‌گیرد",
    "en": "The service's decision rules could not be evaluated; an officer will decide",
}

RulingOutcome = Literal["approve", "reject", "agency"]


@dataclass(frozen=True)
class Ruling:
    """The rules' answer: decide (``approve``/``reject``) or hand over to the agency."""

    outcome: RulingOutcome
    rule_id: str | None
    reason: dict[str, str] | None
    #: why the rules could not answer (then ``outcome`` is ``agency``): no personal data
    error: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation needs: the card's rules and what they read."""

    decision: CardDecision
    variables: dict[str, Any] = field(repr=False)  # inputs and answers: personal data

    @property
    def rules(self) -> list[Rule]:
        return [Rule(rule.id, rule.when) for rule in self.decision.rules]


def variables(
    *, inputs: Mapping[str, Any], results: Mapping[str, Any], national_code: str
) -> dict[str, Any]:
    """``inputs``, ``inquiries`` (type → answer) and ``citizen``; the worker adds ``now``."""
    citizen: dict[str, Any] = {"national_code": national_code}
    person = results.get(CIVIL_REGISTRY)
    if isinstance(person, Mapping):
        citizen.update({name: person[name] for name in CITIZEN_FIELDS if name in person})
    return {
        "inputs": dict(inputs),
        "inquiries": {name: result for name, result in results.items() if result is not None},
        "citizen": citizen,
    }


def ruling_of(decision: CardDecision, verdict: Verdict) -> Ruling:
    """Read a verdict under the card's decision: first match decides, else ``otherwise``.

    An evaluation error never decides: it goes to the agency, whatever ``otherwise`` says.
    """
    if verdict.error is not None:
        return Ruling("agency", None, NOT_EVALUATED, error=safe_error(verdict.error))
    if verdict.match is not None and 0 <= verdict.match < len(decision.rules):
        rule = decision.rules[verdict.match]
        return Ruling(rule.outcome, rule.id, rule.reason.model_dump(exclude_none=True))
    if decision.otherwise == "reject":
        return Ruling("reject", None, NO_RULE_MATCHED)
    return Ruling("agency", None, NO_RULE_MATCHED_TO_AGENCY)


def not_evaluated(error: str) -> Ruling:
    return Ruling("agency", None, NOT_EVALUATED, error=error)


def safe_error(error: str) -> str:
    """The rule id and the kind of failure, without the evaluator's message.

    A CEL error message may quote the value it choked on (an input, an answer): it is cut off
    here so the error can be logged.
    """
    return ":".join(error.split(":")[:2]).strip()[:200]
