"""The catalog's expected failures, each with a stable ``code`` and Persian + English titles."""

from __future__ import annotations

from panjereh.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Text,
    ValidationFailed,
)


class ServiceNotFound(NotFound):
    code = "service_not_found"
    title = Text("خدمت یافت نشد", "Service not found")


class VersionNotFound(NotFound):
    code = "version_not_found"
    title = Text("این نسخه از شناسنامه خدمت یافت نشد", "Service card version not found")


class AgencyNotFound(NotFound):
    code = "agency_not_found"
    title = Text("دستگاه یافت نشد", "Agency not found")


class CardInvalid(ValidationFailed):
    """The card breaks a rule checked at save (form schema, decision rules, maturity)."""

    title = Text("شناسنامه خدمت معتبر نیست", "The service card is not valid")


class ServiceCodeTaken(Conflict):
    code = "service_code_taken"
    title = Text("این شناسه خدمت قبلاً ثبت شده است", "This service code is already in use")


class AgencyCodeTaken(Conflict):
    code = "agency_code_taken"
    title = Text("این شناسه دستگاه قبلاً ثبت شده است", "This agency code is already in use")


class InvalidTransition(Conflict):
    """A workflow step that the card's current state does not allow."""

    code = "invalid_transition"
    title = Text(
        "این اقدام در وضعیت فعلی شناسنامه ممکن نیست",
        "This step is not possible in the card's current state",
    )


class NotYourAgency(Forbidden):
    code = "not_your_agency"
    title = Text(
        "این شناسنامه متعلق به دستگاه شما نیست", "This service card belongs to another agency"
    )


class RoleRequired(Forbidden):
    code = "forbidden"
    title = Text("اجازه این کار را ندارید", "Forbidden")


class FourEyesRequired(Forbidden):
    """Whoever wrote or submitted a draft cannot also approve it: a second person must."""

    code = "four_eyes_required"
    title = Text(
        "تأییدکننده نمی‌تواند نویسنده یا ارسال‌کننده همین پیش‌نویس باشد",
        "The approver cannot be an author or the submitter of this draft",
    )
