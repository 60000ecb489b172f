"""Submitting a request: the card version, the form, a tracking code, the due time, events.

Everything a submission writes (the request, its first history row, its evidence rows, the
``submitted`` and ``status-changed`` events, the idempotency record) commits in one
transaction; the orchestration then takes it from the database.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import AfterCommit, after_commit
from panjereh.common.fields import FieldError, field_error
from panjereh.common.idempotency import IdempotencyStore, Outcome, once
from panjereh.common.messaging import outbox
from panjereh.contracts.catalog import PublishedCard
from panjereh.contracts.requests import RequestSubmitted
from panjereh.requests import sla
from panjereh.requests.errors import (
    InvalidInputs,
    ServiceNotElectronic,
    ServiceNotFound,
    ServiceRetired,
)
from panjereh.requests.models import Request, RequestInquiry, idempotency
from panjereh.requests.repository import CardRepository, RequestRepository
from panjereh.requests.schemas import RequestCreate, RequestCreated
from panjereh.requests.service import transitions
from panjereh.requests.statuses import Actor, Status
from panjereh.requests.tracking import new_tracking_code

OPERATION = "requests.submit"
#: maturity 3 (transactional) and up take requests online
MIN_MATURITY = 3
_IDEMPOTENCY = IdempotencyStore(idempotency)


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    """Compiled once per distinct form schema (cards change rarely; requests are many)."""
    return Draft202012Validator(json.loads(schema_json))


def form_errors(schema: dict[str, Any], inputs: dict[str, Any]) -> list[FieldError]:
    """What is wrong with ``inputs`` for the card's form, as field errors under ``inputs.``."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
    errors = []
    for problem in problems:
        path = [str(part) for part in problem.absolute_path]
        if problem.validator == "required" and isinstance(problem.instance, dict):
            missing = next(
                (name for name in problem.validator_value if name not in problem.instance), None
            )
            path.append(str(missing))
        errors.append(
            field_error(
                ".".join(["inputs", *path]),
                f"form_{problem.validator}",
                fa=_PERSIAN.get(str(problem.validator), "این مقدار با فرم خدمت نمی‌خواند"),
                en=problem.message,
            )
        )
    return errors


_PERSIAN = {
    "required": "این فیلد لازم است",
    "type": "نوع این مقدار درست نیست",
    "minimum": "این مقدار کمتر از حد مجاز است",
    "maximum": "این مقدار بیشتر از حد مجاز است",
    "exclusiveMinimum": "این مقدار کمتر از حد مجاز است",
    "exclusiveMaximum": "این مقدار بیشتر از حد مجاز است",
    "minLength": "این متن کوتاه‌تر از حد مجاز است",
    "maxLength": "این متن بلندتر از حد مجاز است",
    "pattern": "قالب این مقدار درست نیست",
    "enum": "این مقدار از گزینه‌های مجاز نیست",
    "const": "این مقدار مجاز نیست",
    "format": "قالب این مقدار درست نیست",
    "additionalProperties": "این فیلد در فرم خدمت نیست",
    "minItems": "تعداد موارد کمتر از حد مجاز است",
    "maxItems": "تعداد موارد بیشتر از حد مجاز است",
}


async def submit(
    session: AsyncSession,
    *,
    citizen_id: str,
    national_code: str,
    request: RequestCreate,
    idempotency_key: str | None,
    now: datetime,
    wake: AfterCommit | None = None,
) -> Outcome:
    """Take a citizen's request; the same ``idempotency_key`` and body answer the first result.

    ``wake`` runs once the request is committed (the orchestration and the outbox relay take
    it at once instead of at their next poll).
    """

    async def create() -> Outcome:
        created = await _create(
            session, citizen_id=citizen_id, national_code=national_code, body=request, now=now
        )
        if wake is not None:
            after_commit(session, wake)
        return Outcome(201, created.model_dump(mode="json"))

    return await once(
        session,
        _IDEMPOTENCY,
        actor=citizen_id,
        key=idempotency_key,
        operation=OPERATION,
        request=request,
        create=create,
    )


async def _create(
    session: AsyncSession,
    *,
    citizen_id: str,
    national_code: str,
    body: RequestCreate,
    now: datetime,
) -> RequestCreated:
    version = await CardRepository(session).latest(body.service_code)
    if version is None:
        raise ServiceNotFound
    if version.retired_at is not None:
        raise ServiceRetired
    card = PublishedCard.model_validate(version.card)
    if card.maturity < MIN_MATURITY:
        raise ServiceNotElectronic
    problems = form_errors(card.form_schema, body.inputs)
    if problems:
        raise InvalidInputs(errors=problems)

    request = Request(
        id=uuid.uuid4(),
        tracking_code=await _unused_tracking_code(session),
        service_code=card.code,
        service_version=card.version,
        agency=card.agency,
        citizen_id=citizen_id,
        national_code=national_code,
        inputs=body.inputs,
        status="",  # not in the machine yet: the move below makes it "submitted"
        decision_mode=card.decision.mode,
        submitted_at=now,
        due_at=sla.due_at(now, sla_days=card.sla_days, processing_time=card.processing_time),
        next_step_at=now,
        documents_asked=len(card.documents_required),
        inquiries_made=len(card.inquiries),
    )
    session.add(request)
    for inquiry in card.inquiries:
        session.add(
            RequestInquiry(
                request_id=request.id,
                inquiry_type=inquiry.type,
                provider_agency=inquiry.provider_agency,
                status="pending",
            )
        )
    await transitions.move(
        session, request, Status.SUBMITTED, actor=Actor.CITIZEN, actor_subject=citizen_id, at=now
    )
    await outbox.add(
        session,
        RequestSubmitted(
            tracking_code=request.tracking_code,
            service_code=request.service_code,
            service_version=request.service_version,
            subject=national_code,
            at=now,
        ),
        key=request.tracking_code,
    )
    await session.flush()
    return RequestCreated(
        tracking_code=request.tracking_code,
        status=Status.SUBMITTED,
        service_code=request.service_code,
        service_version=request.service_version,
        submitted_at=request.submitted_at,
        due_at=request.due_at,
    )


async def _unused_tracking_code(session: AsyncSession) -> str:
    requests = RequestRepository(session)
    for _ in range(5):
        code = new_tracking_code()
        if not await requests.tracking_code_taken(code):
            return code
    # five collisions in a 10^12 space means the generator is broken, not unlucky
    msg = "could not draw an unused tracking code"
    raise RuntimeError(msg)
