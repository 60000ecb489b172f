"""National codes with documented, special answers (all with valid checksums).

Every other valid national code is an ordinary living adult with a clean record, no debt and
insurance. Use these to exercise both sides of a smart rule; the table is in the README.
"""

from __future__ import annotations

#: Not in any registry: every agency answers ``not_found`` (mobile ownership still ``owned``).
NOT_FOUND = "9900000013"
#: Registered as deceased: ``civil-registry.person`` answers ``alive: false``.
DECEASED = "9900000021"
#: ``police.clean-record`` answers ``has_record: true``.
CRIMINAL_RECORD = "9900000031"
#: ``tax.clearance`` answers ``has_debt: true`` with ``TAX_DEBT_AMOUNT`` rials.
TAX_DEBT = "9900000048"
#: ``social-security.insurance-record`` answers ``insured: false, months: 0``.
NO_INSURANCE = "9900000056"
#: Born 2015-03-21: a minor for age rules; not insured.
MINOR = "9900000064"
#: ``education.degree`` answers ``degree: "none"``; ``vehicle-registry.ownership`` no vehicles.
NO_DEGREE_NO_VEHICLE = "9900000072"
#: A living adult the tax administration has no file on: ``tax.clearance`` answers
#: ``not_found`` (so a smart tax card fails with a reason instead of deciding).
NO_TAX_FILE = "9900000080"

TAX_DEBT_AMOUNT = 125_000_000
MINOR_BIRTH_DATE = "2015-03-21"

SPECIAL_CODES: dict[str, str] = {
    NOT_FOUND: "not found in any registry",
    DECEASED: "deceased",
    CRIMINAL_RECORD: "criminal record",
    TAX_DEBT: "tax debt",
    NO_INSURANCE: "no insurance",
    MINOR: "minor (born 2015-03-21)",
    NO_DEGREE_NO_VEHICLE: "no degree, no vehicle",
    NO_TAX_FILE: "no tax file",
}
