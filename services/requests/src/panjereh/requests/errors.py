"""What the requests service answers when it cannot do what was asked."""

from __future__ import annotations

from panjereh.common.errors import Conflict, Forbidden, NotFound, Text, ValidationFailed


class ServiceNotFound(NotFound):
    code = "service_not_found"
    title = Text("این خدمت در شناسنامه خدمات یافت نشد", "No published service has this code")


class ServiceRetired(Conflict):
    code = "service_retired"
    title = Text("این خدمت دیگر ارائه نمی‌شود", "This service is no longer offered")


class ServiceNotElectronic(Conflict):
    code = "service_not_electronic"
    title = Text(
        "این خدمت درخواست الکترونیکی نمی‌پذیرد",
        "This service does not take electronic requests",
    )


class InvalidInputs(ValidationFailed):
    code = "invalid_inputs"
    title = Text("اطلاعات فرم درخواست معتبر نیست", "The request's inputs break the service's form")


class RequestNotFound(NotFound):
    """Unknown, or not the caller's: the same answer, so codes cannot be probed (BOLA)."""

    code = "request_not_found"
    title = Text("درخواستی با این کد رهگیری یافت نشد", "No request with this tracking code")


class RequestAlreadyDecided(Conflict):
    code = "request_already_decided"
    title = Text("این درخواست پیش‌تر تعیین تکلیف شده است", "This request is already decided")


class RequestNotInReview(Conflict):
    code = "request_not_in_review"
    title = Text(
        "این درخواست در انتظار تصمیم کارشناس نیست",
        "This request is not waiting for an officer's decision",
    )


class DocumentNotFound(NotFound):
    code = "document_not_found"
    title = Text("سندی با این شناسه یافت نشد", "No document with this id")


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    title = Text("این درخواست هنوز رسید تصمیم ندارد", "This request has no decision receipt yet")


class NotAgencyStaff(Forbidden):
    code = "not_agency_staff"
    title = Text(
        "این کار ویژه کارشناسان و سامانه‌های دستگاه است",
        "Only an agency's officers and back-office systems may do this",
    )
