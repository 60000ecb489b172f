from __future__ import annotations

import uuid
from datetime import date

import pytest

from panjereh.agency_sdk import Inquiry, InquiryNotFound, KafkaSettings, ReplyStatus
from panjereh.agency_sdk import national_code as codes
from panjereh.agency_simulators import registries, special
from panjereh.agency_simulators.agencies import AGENCIES, Faults, build

ORDINARY = "0499370899"


class TestSpecialCodes:
    @pytest.mark.parametrize("code", sorted(special.SPECIAL_CODES))
    def test_every_special_code_has_a_valid_checksum(self, code: str) -> None:
        assert codes.is_valid(code)

    def test_special_codes_are_distinct(self) -> None:
        assert len(set(special.SPECIAL_CODES)) == len(special.SPECIAL_CODES)


class TestCivilRegistry:
    def test_an_ordinary_code_is_a_living_adult_with_a_persian_name(self) -> None:
        person = registries.person(ORDINARY)
        assert person["alive"] is True
        assert person["gender"] in {"male", "female"}
        assert date.fromisoformat(person["birth_date"]) <= date(2004, 12, 31)
        assert all("\u0600" <= ch <= "\u06ff" for ch in person["last_name"])

    def test_the_same_code_always_yields_the_same_person(self) -> None:
        assert registries.person(ORDINARY) == registries.person(ORDINARY)
        assert registries.person(ORDINARY) != registries.person("0790419904")

    def test_the_deceased_code_is_not_alive(self) -> None:
        assert registries.person(special.DECEASED)["alive"] is False

    def test_the_minor_code_is_born_in_2015(self) -> None:
        assert registries.person(special.MINOR)["birth_date"] == "2015-03-21"

    def test_the_not_found_code_is_not_found_anywhere(self) -> None:
        for answer in (
            registries.person,
            registries.tax_clearance,
            registries.clean_record,
            registries.insurance_record,
            registries.vehicles,
            registries.degree,
        ):
            with pytest.raises(InquiryNotFound):
                answer(special.NOT_FOUND)


class TestOtherRegistries:
    def test_mobile_ending_0000_belongs_to_nobody(self) -> None:
        assert registries.mobile_ownership(ORDINARY, "09121234567") == {"owned": True}
        assert registries.mobile_ownership(ORDINARY, "09121230000") == {"owned": False}
        assert registries.mobile_ownership(special.NOT_FOUND, "09121234567") == {"owned": True}

    def test_special_codes_flip_each_smart_rule(self) -> None:
        assert registries.clean_record(ORDINARY) == {"has_record": False}
        assert registries.clean_record(special.CRIMINAL_RECORD) == {"has_record": True}
        assert registries.tax_clearance(ORDINARY) == {"has_debt": False, "debt_amount": 0}
        assert registries.tax_clearance(special.TAX_DEBT) == {
            "has_debt": True,
            "debt_amount": special.TAX_DEBT_AMOUNT,
        }
        assert registries.insurance_record(ORDINARY)["insured"] is True
        assert registries.insurance_record(special.NO_INSURANCE) == {"insured": False, "months": 0}
        assert registries.degree(special.NO_DEGREE_NO_VEHICLE)["degree"] == "none"
        assert registries.vehicles(special.NO_DEGREE_NO_VEHICLE) == {"vehicles": []}

    def test_a_living_adult_without_a_tax_file(self) -> None:
        with pytest.raises(InquiryNotFound):
            registries.tax_clearance(special.NO_TAX_FILE)
        assert registries.person(special.NO_TAX_FILE)["alive"] is True
        assert registries.clean_record(special.NO_TAX_FILE) == {"has_record": False}


class TestSimulatedAgency:
    async def test_answers_through_the_sdk_and_validates_input(self) -> None:
        agency = build("mobile-registry", kafka=KafkaSettings())
        asked = Inquiry(
            inquiry_id=uuid.uuid4(),
            type="mobile-registry.ownership",
            subject=ORDINARY,
            params={"mobile": "09121234567"},
        )
        reply = await agency.answer(asked)
        assert reply.status is ReplyStatus.OK
        assert reply.result == {"owned": True}
        bad = await agency.answer(asked.model_copy(update={"params": {"mobile": "12"}}))
        assert bad.status is ReplyStatus.ERROR
        assert bad.error == "invalid_input: mobile"

    async def test_not_found_and_unsupported_types_are_replied(self) -> None:
        agency = build("civil-registry", kafka=KafkaSettings())
        inquiry = Inquiry(
            inquiry_id=uuid.uuid4(), type="civil-registry.person", subject=special.NOT_FOUND
        )
        assert (await agency.answer(inquiry)).status is ReplyStatus.NOT_FOUND
        other = inquiry.model_copy(update={"type": "tax.clearance", "subject": ORDINARY})
        reply = await agency.answer(other)
        assert (reply.status, reply.error) == (ReplyStatus.ERROR, "unsupported_type")

    async def test_failure_rate_one_fails_every_answer(self) -> None:
        agency = build("police", kafka=KafkaSettings(), faults=Faults(failure_rate=1.0, seed=1))
        inquiry = Inquiry(inquiry_id=uuid.uuid4(), type="police.clean-record", subject=ORDINARY)
        reply = await agency.answer(inquiry)
        assert (reply.status, reply.error) == (ReplyStatus.ERROR, "handler_failed")

    def test_every_agency_serves_types_named_after_it(self) -> None:
        for code, types in AGENCIES.items():
            assert all(name.startswith(code + ".") for name in types)
