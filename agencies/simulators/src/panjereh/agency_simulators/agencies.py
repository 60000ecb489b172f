"""The simulated agencies: which inquiry types each answers, built on the agency SDK."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from panjereh.agency_sdk import Agency, Inquiry, KafkaSettings
from panjereh.agency_simulators import registries

Answer = Callable[[Inquiry], Mapping[str, Any]]

_NO_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False}

#: ``{agency code: {inquiry type: (input schema of params, answer)}}``.
AGENCIES: dict[str, dict[str, tuple[dict[str, Any], Answer]]] = {
    "civil-registry": {
        "civil-registry.person": (_NO_PARAMS, lambda q: registries.person(q.subject)),
    },
    "mobile-registry": {
        "mobile-registry.ownership": (
            {
                "type": "object",
                "properties": {"mobile": {"type": "string", "pattern": "^09[0-9]{9}$"}},
                "required": ["mobile"],
                "additionalProperties": False,
            },
            lambda q: registries.mobile_ownership(q.subject, str(q.params["mobile"])),
        ),
    },
    "tax": {"tax.clearance": (_NO_PARAMS, lambda q: registries.tax_clearance(q.subject))},
    "police": {
        "police.clean-record": (_NO_PARAMS, lambda q: registries.clean_record(q.subject)),
    },
    "social-security": {
        "social-security.insurance-record": (
            _NO_PARAMS,
            lambda q: registries.insurance_record(q.subject),
        ),
    },
    "vehicle-registry": {
        "vehicle-registry.ownership": (_NO_PARAMS, lambda q: registries.vehicles(q.subject)),
    },
    "education": {"education.degree": (_NO_PARAMS, lambda q: registries.degree(q.subject))},
}


@dataclass(frozen=True)
class Faults:
    """Simulated trouble: a fixed latency plus jitter, and a share of failed answers."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    seed: int | None = None


class SimulatedFailure(RuntimeError):
    pass


def input_schemas() -> dict[str, dict[str, Any]]:
    """``{type: input schema}`` of every simulated type (the registry's seed holds the same)."""
    return {name: schema for types in AGENCIES.values() for name, (schema, _) in types.items()}


def build(code: str, *, kafka: KafkaSettings, faults: Faults = Faults()) -> Agency:
    """The simulated agency ``code`` as an SDK :class:`Agency`, ready to ``run()``."""
    types = AGENCIES[code]
    agency = Agency(
        code, kafka=kafka, input_schemas={name: schema for name, (schema, _) in types.items()}
    )
    chance = random.Random(faults.seed)  # noqa: S311 - fault injection, not security
    for name, (_, answer) in types.items():
        agency.handler(name)(_with_faults(answer, faults, chance))
    return agency


def _with_faults(answer: Answer, faults: Faults, chance: random.Random) -> Callable[[Inquiry], Any]:
    async def handle(inquiry: Inquiry) -> Mapping[str, Any]:
        delay = faults.latency_ms + chance.uniform(0, faults.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.failure_rate and chance.random() < faults.failure_rate:
            msg = "simulated failure"
            raise SimulatedFailure(msg)
        return answer(inquiry)

    return handle
