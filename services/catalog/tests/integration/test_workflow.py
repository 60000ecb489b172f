"""The approval workflow and who may do what (service layer, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.errors import (
    CardInvalid,
    FourEyesRequired,
    InvalidTransition,
    NotYourAgency,
    RoleRequired,
    ServiceCodeTaken,
    ServiceNotFound,
)
from panjereh.catalog.schemas import CardCreate, CardUpdate, SearchFilters
from panjereh.catalog.seed_data import cards
from panjereh.catalog.service import reads, search, workflow
from panjereh.common.auth import Principal
from panjereh.common.errors import AppError
from panjereh.common.fields import FieldError
from panjereh.common.pagination import Paging

pytestmark = pytest.mark.integration


TAX_ADMIN = Principal("staff-tax", frozenset({"agency-admin:tax"}))
POLICE_ADMIN = Principal("staff-police", frozenset({"agency-admin:police"}))
AUTHORITY = Principal("staff-authority", frozenset({"catalog-authority"}))
CITIZEN = Principal("citizen-1", frozenset({"citizen"}))
OFFICER = Principal("officer-tax", frozenset({"officer:tax"}))
ORG = "test-authority"


def new_card(code: str = "77000000001", agency: str = "tax", **changes: Any) -> CardCreate:
    base = next(c for c in cards() if c.code == "11050000001")  # tax clearance, smart
    return CardCreate.model_validate(
        base.model_dump(mode="json") | {"code": code, "agency": agency} | changes
    )


def edited(card: CardCreate, **changes: Any) -> CardUpdate:
    data = card.model_dump(mode="json", exclude={"code", "agency"}) | changes
    return CardUpdate.model_validate(data)


async def published_card(session: AsyncSession, code: str = "77000000001") -> CardCreate:
    card = new_card(code)
    await workflow.create_card(session, actor=TAX_ADMIN, card=card)
    await workflow.submit_draft(session, actor=TAX_ADMIN, code=code)
    await workflow.approve_draft(session, actor=AUTHORITY, code=code, approving_organisation=ORG)
    return card


class TestFourEyes:
    """The approver of a version is neither its author nor its submitter (issue: M2)."""

    async def test_one_person_holding_both_roles_cannot_approve_their_own_draft(
        self, session: AsyncSession
    ) -> None:
        both = Principal("staff-both", frozenset({"agency-admin:tax", "catalog-authority"}))
        await workflow.create_card(session, actor=both, card=new_card("77000000091"))
        await workflow.submit_draft(session, actor=both, code="77000000091")
        with pytest.raises(FourEyesRequired):
            await workflow.approve_draft(
                session, actor=both, code="77000000091", approving_organisation=ORG
            )
        approved = await workflow.approve_draft(
            session, actor=AUTHORITY, code="77000000091", approving_organisation=ORG
        )
        assert approved.approved_by == AUTHORITY.subject

    async def test_an_editor_of_the_draft_cannot_approve_it(self, session: AsyncSession) -> None:
        card = await published_card(session, "77000000092")
        editor = Principal("staff-editor", frozenset({"agency-admin:tax", "catalog-authority"}))
        await workflow.update_draft(
            session, actor=editor, code="77000000092", content=edited(card, sla_days=9)
        )
        await workflow.submit_draft(session, actor=TAX_ADMIN, code="77000000092")
        with pytest.raises(FourEyesRequired):
            await workflow.approve_draft(
                session, actor=editor, code="77000000092", approving_organisation=ORG
            )

    async def test_hands_of_an_earlier_version_do_not_block_the_next(
        self, session: AsyncSession
    ) -> None:
        """Only who worked on this draft counts: the first version's author may approve v2."""
        card = await published_card(session, "77000000093")  # TAX_ADMIN drafted, AUTHORITY approved
        both = Principal("staff-tax", frozenset({"agency-admin:tax", "catalog-authority"}))
        other = Principal("staff-other", frozenset({"agency-admin:tax"}))
        await workflow.update_draft(
            session, actor=other, code="77000000093", content=edited(card, sla_days=8)
        )
        await workflow.submit_draft(session, actor=other, code="77000000093")
        approved = await workflow.approve_draft(
            session, actor=both, code="77000000093", approving_organisation=ORG
        )
        assert approved.version == 2


class TestCreateCard:
    async def test_an_agency_admin_starts_a_draft_of_their_agency(
        self, session: AsyncSession
    ) -> None:
        draft = await workflow.create_card(session, actor=TAX_ADMIN, card=new_card())
        assert (draft.state, draft.card_status, draft.latest_version) == (
            "editing",
            "unpublished",
            0,
        )
        assert draft.updated_by == "staff-tax"
        # a draft is not public
        with pytest.raises(ServiceNotFound):
            await reads.get_published(session, code="77000000001")

    async def test_an_admin_of_another_agency_cannot(self, session: AsyncSession) -> None:
        with pytest.raises(NotYourAgency):
            await workflow.create_card(session, actor=POLICE_ADMIN, card=new_card())

    @pytest.mark.parametrize("actor", [CITIZEN, OFFICER, AUTHORITY])
    async def test_only_agency_admins_create(self, session: AsyncSession, actor: Principal) -> None:
        with pytest.raises(RoleRequired):
            await workflow.create_card(session, actor=actor, card=new_card())

    async def test_an_existing_code_is_refused(self, session: AsyncSession) -> None:
        with pytest.raises(ServiceCodeTaken):
            await workflow.create_card(session, actor=TAX_ADMIN, card=new_card("11050000001"))

    async def test_an_unknown_agency_is_named(self, session: AsyncSession) -> None:
        actor = Principal("x", frozenset({"agency-admin:nowhere"}))
        with pytest.raises(CardInvalid) as caught:
            await workflow.create_card(session, actor=actor, card=new_card(agency="nowhere"))
        (error,) = caught.value.errors
        assert isinstance(error, FieldError)
        assert (error.field, error.code) == ("agency", "unknown_agency")

    async def test_an_inconsistent_card_changes_nothing(self, session: AsyncSession) -> None:
        with pytest.raises(CardInvalid) as caught:
            await workflow.create_card(session, actor=TAX_ADMIN, card=new_card(in_person_visits=2))
        assert [(e.field, e.code) for e in caught.value.errors if isinstance(e, FieldError)] == [
            ("in_person_visits", "maturity_needs_no_visit")
        ]
        assert len(caught.value.errors) == 1
        with pytest.raises(ServiceNotFound):
            await reads.get_draft(session, actor=TAX_ADMIN, code="77000000001")


Step = Callable[[AsyncSession, Principal], Awaitable[object]]


async def edit(session: AsyncSession, actor: Principal) -> object:
    return await workflow.update_draft(
        session, actor=actor, code="77000000001", content=edited(new_card(), sla_days=2)
    )


async def submit(session: AsyncSession, actor: Principal) -> object:
    return await workflow.submit_draft(session, actor=actor, code="77000000001")


async def approve(session: AsyncSession, actor: Principal) -> object:
    return await workflow.approve_draft(
        session, actor=actor, code="77000000001", approving_organisation=ORG
    )


async def reject(session: AsyncSession, actor: Principal) -> object:
    return await workflow.reject_draft(session, actor=actor, code="77000000001", reason="ناقص است")


async def retire(session: AsyncSession, actor: Principal) -> object:
    return await workflow.retire_card(session, actor=actor, code="77000000001")


async def read_draft(session: AsyncSession, actor: Principal) -> object:
    return await reads.get_draft(session, actor=actor, code="77000000001")


#: (step, state the card is brought to first, who, expected error or None)
AUTHORIZATION_TABLE: list[tuple[str, str, Principal, type[AppError] | None]] = [
    ("edit", "editing", TAX_ADMIN, None),
    ("edit", "editing", POLICE_ADMIN, NotYourAgency),
    ("edit", "editing", AUTHORITY, RoleRequired),
    ("edit", "editing", CITIZEN, RoleRequired),
    ("edit", "editing", OFFICER, RoleRequired),
    ("submit", "editing", TAX_ADMIN, None),
    ("submit", "editing", POLICE_ADMIN, NotYourAgency),
    ("submit", "editing", AUTHORITY, RoleRequired),
    ("approve", "submitted", AUTHORITY, None),
    ("approve", "submitted", TAX_ADMIN, RoleRequired),
    ("approve", "submitted", POLICE_ADMIN, RoleRequired),
    ("approve", "submitted", CITIZEN, RoleRequired),
    ("reject", "submitted", AUTHORITY, None),
    ("reject", "submitted", TAX_ADMIN, RoleRequired),
    ("retire", "published", TAX_ADMIN, None),
    ("retire", "published", AUTHORITY, None),
    ("retire", "published", POLICE_ADMIN, NotYourAgency),
    ("retire", "published", CITIZEN, RoleRequired),
    ("read_draft", "editing", TAX_ADMIN, None),
    ("read_draft", "editing", AUTHORITY, None),
    ("read_draft", "editing", POLICE_ADMIN, NotYourAgency),
    ("read_draft", "editing", CITIZEN, RoleRequired),
    # the state machine, whoever asks
    ("edit", "submitted", TAX_ADMIN, InvalidTransition),
    ("approve", "editing", AUTHORITY, InvalidTransition),
    ("reject", "editing", AUTHORITY, InvalidTransition),
    ("submit", "submitted", TAX_ADMIN, InvalidTransition),
    ("retire", "editing", TAX_ADMIN, InvalidTransition),
    ("approve", "published", AUTHORITY, InvalidTransition),
]
STEPS: dict[str, Step] = {
    "edit": edit,
    "submit": submit,
    "approve": approve,
    "reject": reject,
    "retire": retire,
    "read_draft": read_draft,
}


@pytest.mark.parametrize(
    ("step", "state", "actor", "expected"),
    AUTHORIZATION_TABLE,
    ids=[f"{s}-{st}-{a.subject}" for s, st, a, _ in AUTHORIZATION_TABLE],
)
async def test_authorization_table(
    session: AsyncSession, step: str, state: str, actor: Principal, expected: type[AppError] | None
) -> None:
    await workflow.create_card(session, actor=TAX_ADMIN, card=new_card())
    if state in {"submitted", "published"}:
        await submit(session, TAX_ADMIN)
    if state == "published":
        await approve(session, AUTHORITY)
    before = await reads.list_transitions(session, actor=AUTHORITY, code="77000000001")
    if expected is None:
        await STEPS[step](session, actor)
        return
    with pytest.raises(expected):
        await STEPS[step](session, actor)
    after = await reads.list_transitions(session, actor=AUTHORITY, code="77000000001")
    assert after == before  # a refused step records nothing


class TestApproval:
    async def test_approve_publishes_version_one_with_the_approver(
        self, session: AsyncSession
    ) -> None:
        await published_card(session)
        card = await reads.get_published(session, code="77000000001")
        assert (card.version, card.status, card.approved_by) == (1, "published", "staff-authority")
        assert card.approving_organisation == ORG

    async def test_a_new_version_leaves_the_old_one_as_it_was(self, session: AsyncSession) -> None:
        original = await published_card(session)
        await workflow.update_draft(
            session, actor=TAX_ADMIN, code="77000000001",
            content=edited(original, sla_days=9, title={"fa": "عنوان تازه", "en": "New title"}),
        )  # fmt: skip
        # edits to the draft do not reach the published card before approval
        assert (
            await reads.get_published(session, code="77000000001")
        ).sla_days == original.sla_days
        await submit(session, TAX_ADMIN)
        await approve(session, AUTHORITY)
        latest = await reads.get_published(session, code="77000000001")
        first = await reads.get_version(session, code="77000000001", version=1)
        assert (latest.version, latest.sla_days, latest.title.fa) == (2, 9, "عنوان تازه")
        assert (first.version, first.sla_days, first.status) == (1, original.sla_days, "superseded")
        history = await reads.list_versions(session, code="77000000001", paging=Paging(1, 20))
        assert [v.version for v in history.items] == [2, 1]
        assert history.total == 2

    async def test_reject_sends_the_draft_back_with_the_reason(self, session: AsyncSession) -> None:
        await workflow.create_card(session, actor=TAX_ADMIN, card=new_card())
        await submit(session, TAX_ADMIN)
        draft = await workflow.reject_draft(
            session, actor=AUTHORITY, code="77000000001", reason="مبنای قانونی ناقص است"
        )
        assert (draft.state, draft.rejection_reason) == ("rejected", "مبنای قانونی ناقص است")
        resubmitted = await submit(session, TAX_ADMIN)
        assert resubmitted.state == "submitted"  # type: ignore[attr-defined]

    async def test_every_transition_is_recorded_with_actor_and_time(
        self, session: AsyncSession
    ) -> None:
        await published_card(session)
        await retire(session, AUTHORITY)
        steps = await reads.list_transitions(session, actor=TAX_ADMIN, code="77000000001")
        assert [(t.action, t.actor, t.version) for t in steps] == [
            ("created", "staff-tax", None),
            ("submitted", "staff-tax", None),
            ("approved", "staff-authority", 1),
            ("retired", "staff-authority", 1),
        ]
        assert all(t.at.tzinfo is not None for t in steps)

    async def test_retire_withdraws_the_card_but_keeps_its_versions(
        self, session: AsyncSession
    ) -> None:
        await published_card(session)
        await retire(session, TAX_ADMIN)
        with pytest.raises(ServiceNotFound):
            await reads.get_published(session, code="77000000001")
        assert (await reads.get_version(session, code="77000000001", version=1)).status == "retired"
        found = await search.search_services(
            session, q="77000000001", filters=SearchFilters(), paging=Paging(1, 10)
        )
        assert "77000000001" not in {item.code for item in found.items}


class TestPublishedVersionsAreImmutable:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE catalog.service_card_version SET approved_by = 'someone else'",
            "DELETE FROM catalog.service_card_version",
            "TRUNCATE catalog.service_card_version CASCADE",
        ],
    )
    async def test_the_database_refuses_to_change_a_version(
        self, session: AsyncSession, statement: str
    ) -> None:
        await published_card(session)
        with pytest.raises(DBAPIError, match="immutable"):
            async with session.begin_nested():
                await session.execute(text(statement))
        first = await reads.get_version(session, code="77000000001", version=1)
        assert first.approved_by == "staff-authority"
