from __future__ import annotations

from panjereh.inquiry_broker.policy import CardView, GrantView, Reason, decide

CARD = CardView(
    service_code="S-100",
    agency="tax",
    inquiry_types=("tax.clearance", "civil-registry.person"),
    legal_basis="قانون مالیات‌های مستقیم",
    retired=False,
)
IDENTITY_GRANT = GrantView("service:identity", "mobile-registry.ownership", "شاهکار")
ACTING = frozenset({"service:requests"})


def ask(roles: list[str], inquiry_type: str = "tax.clearance", **overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "roles": roles,
        "inquiry_type": inquiry_type,
        "service_code": "S-100",
        "tracking_code": "1234567",
        "card": CARD,
        "grants": [IDENTITY_GRANT],
        "card_acting_services": ACTING,
        **overrides,
    }
    return decide(**arguments)  # type: ignore[arg-type]


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

    def test_citizens_and_staff_are_never_callers(self) -> None:
        decision = ask(["citizen", "platform-admin"])
        assert (decision.allowed, decision.reason) == (False, Reason.NOT_A_CLIENT)


class TestGrants:
    def test_a_grant_allows_without_a_card(self) -> None:
        decision = ask(
            ["service:identity"], "mobile-registry.ownership", card=None, service_code=None
        )
        assert decision.allowed
        assert (decision.reason, decision.legal_basis) == (Reason.GRANT, "شاهکار")

    def test_a_grant_covers_only_its_type(self) -> None:
        decision = ask(["service:identity"], "tax.clearance", card=None, service_code=None)
        assert not decision.allowed
