from __future__ import annotations

from datetime import UTC, datetime

from panjereh.inquiry_broker.policy import (
    CardView,
    GrantView,
    LivePurposeView,
    PlatformPurposeView,
    Reason,
    decide,
)

CARD = CardView(
    service_code="S-100",
    agency="tax",
    inquiry_types=("tax.clearance", "civil-registry.person"),
    legal_basis="قانون مالیات‌های مستقیم",
    retired=False,
)
SUBJECT = "hmac-of-the-subject"
LIVE = LivePurposeView(service_code="S-100", subject_hash=SUBJECT, closed_at=None)
LOGIN = PlatformPurposeView(name="identity.login", owner="service:identity")
REGISTRATION = PlatformPurposeView(name="identity.registration", owner="service:identity")
IDENTITY_GRANT = GrantView(
    "service:identity", "identity.login", "mobile-registry.ownership", "شاهکار"
)
ACTING = frozenset({"service:requests"})
DECIDED_AT = datetime(2026, 12, 1, tzinfo=UTC)


def ask(roles: list[str], inquiry_type: str = "tax.clearance", **overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "roles": roles,
        "inquiry_type": inquiry_type,
        "service_code": "S-100",
        "tracking_code": "1234567",
        "subject_hash": SUBJECT,
        "platform_purpose": None,
        "grants": [],
        "card": CARD,
        "live_purpose": LIVE,
        "card_acting_services": ACTING,
        **overrides,
    }
    return decide(**arguments)  # type: ignore[arg-type]


def ask_platform(  # type: ignore[no-untyped-def]
    roles: list[str], inquiry_type: str, purpose: PlatformPurposeView = LOGIN
):
    return ask(
        roles,
        inquiry_type,
        service_code=purpose.name,
        tracking_code=None,
        platform_purpose=purpose,
        grants=[IDENTITY_GRANT],
        card=None,
        live_purpose=None,
    )


class TestCardDerivedAccess:
    def test_requests_service_may_ask_a_type_the_card_lists(self) -> None:
        decision = ask(["service:requests"])
        assert decision.allowed
        assert decision.reason is Reason.CARD
        assert decision.legal_basis == CARD.legal_basis

    def test_a_client_of_the_cards_agency_may_ask(self) -> None:
        assert ask(["client:tax"]).acting_as == "client:tax"

    def test_a_client_of_another_agency_may_not(self) -> None:
        decision = ask(["client:police"])
        assert not decision.allowed
        assert decision.reason is Reason.CALLER_NOT_ENTITLED

    def test_a_type_the_card_does_not_list_is_denied(self) -> None:
        assert ask(["service:requests"], "police.clean-record").reason is Reason.TYPE_NOT_ON_CARD

    def test_a_retired_card_allows_nothing(self) -> None:
        retired = CardView(**{**CARD.__dict__, "retired": True})
        assert ask(["service:requests"], card=retired).reason is Reason.CARD_RETIRED

    def test_an_unknown_card_allows_nothing(self) -> None:
        assert ask(["service:requests"], card=None).reason is Reason.CARD_NOT_PUBLISHED

    def test_a_purpose_without_tracking_code_is_denied(self) -> None:
        assert ask(["service:requests"], tracking_code=None).reason is Reason.NO_PURPOSE

    def test_a_purpose_without_service_code_is_denied(self) -> None:
        assert ask(["service:requests"], service_code=None).reason is Reason.NO_PURPOSE

    def test_citizens_and_staff_are_never_callers(self) -> None:
        decision = ask(["citizen", "platform-admin"])
        assert (decision.allowed, decision.reason) == (False, Reason.NOT_A_CLIENT)


class TestLivePurposes:
    def test_a_tracking_code_naming_no_known_request_is_denied(self) -> None:
        for roles in (["client:tax"], ["service:requests"]):
            decision = ask(roles, live_purpose=None)
            assert (decision.allowed, decision.reason) == (False, Reason.PURPOSE_UNKNOWN)

    def test_a_request_about_another_subject_is_not_this_purpose(self) -> None:
        other = LivePurposeView(service_code="S-100", subject_hash="another", closed_at=None)
        assert ask(["client:tax"], live_purpose=other).reason is Reason.PURPOSE_MISMATCH

    def test_a_request_of_another_service_is_not_this_purpose(self) -> None:
        other = LivePurposeView(service_code="S-200", subject_hash=SUBJECT, closed_at=None)
        assert ask(["service:requests"], live_purpose=other).reason is Reason.PURPOSE_MISMATCH

    def test_a_decided_request_allows_nothing_any_more(self) -> None:
        decided = LivePurposeView(service_code="S-100", subject_hash=SUBJECT, closed_at=DECIDED_AT)
        assert ask(["client:tax"], live_purpose=decided).reason is Reason.PURPOSE_CLOSED

    def test_a_request_known_only_as_decided_is_closed(self) -> None:
        # its final status arrived before its submission: there is no subject to compare yet
        decided = LivePurposeView(service_code="S-100", subject_hash=None, closed_at=DECIDED_AT)
        assert ask(["client:tax"], live_purpose=decided).reason is Reason.PURPOSE_CLOSED

    def test_a_decided_request_of_another_subject_says_mismatch_not_closed(self) -> None:
        decided = LivePurposeView(service_code="S-100", subject_hash="other", closed_at=DECIDED_AT)
        assert ask(["client:tax"], live_purpose=decided).reason is Reason.PURPOSE_MISMATCH

    def test_a_caller_not_entitled_to_the_card_learns_nothing_of_its_requests(self) -> None:
        for live in (None, LIVE):
            assert ask(["client:police"], live_purpose=live).reason is Reason.CALLER_NOT_ENTITLED

    def test_card_checks_come_before_the_purpose(self) -> None:
        decision = ask(["service:requests"], "police.clean-record", live_purpose=None)
        assert decision.reason is Reason.TYPE_NOT_ON_CARD


class TestPlatformPurposes:
    def test_the_owner_is_allowed_a_granted_type_under_the_grants_purpose(self) -> None:
        decision = ask_platform(["service:identity"], "mobile-registry.ownership")
        assert decision.allowed
        assert (decision.reason, decision.legal_basis) == (Reason.GRANT, "شاهکار")
        assert decision.acting_as == "service:identity"

    def test_a_grant_covers_only_its_type(self) -> None:
        decision = ask_platform(["service:identity"], "tax.clearance")
        assert (decision.allowed, decision.reason) == (False, Reason.TYPE_NOT_GRANTED)

    def test_a_grant_applies_to_no_other_purpose(self) -> None:
        decision = ask_platform(["service:identity"], "mobile-registry.ownership", REGISTRATION)
        assert (decision.allowed, decision.reason) == (False, Reason.TYPE_NOT_GRANTED)

    def test_a_grant_applies_to_no_card_purpose(self) -> None:
        decision = ask(
            ["service:identity"],
            "civil-registry.person",
            grants=[GrantView("service:identity", "identity.login", "civil-registry.person", "x")],
        )
        assert (decision.allowed, decision.reason) == (False, Reason.CALLER_NOT_ENTITLED)

    def test_no_other_client_may_use_a_platform_purpose(self) -> None:
        for roles in (["client:mobile-registry"], ["service:requests"], ["client:tax"]):
            decision = ask_platform(roles, "mobile-registry.ownership")
            assert (decision.allowed, decision.reason) == (False, Reason.PURPOSE_RESERVED)

    def test_a_grant_held_by_another_principal_does_not_help_the_owner(self) -> None:
        decision = ask(
            ["service:identity"],
            "mobile-registry.ownership",
            service_code=LOGIN.name,
            platform_purpose=LOGIN,
            grants=[GrantView("client:tax", "identity.login", "mobile-registry.ownership", "x")],
            card=None,
            live_purpose=None,
        )
        assert decision.reason is Reason.TYPE_NOT_GRANTED
