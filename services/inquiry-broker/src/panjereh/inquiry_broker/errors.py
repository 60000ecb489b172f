"""The inquiry broker's expected failures, each with a stable code (rendered as RFC 9457)."""

from __future__ import annotations

from collections.abc import Sequence

from panjereh.common.db import KeepChanges
from panjereh.common.errors import AppError, Forbidden, NotFound, Text
from panjereh.common.fields import FieldError


class InquiryTypeUnknown(AppError):
    status = 422
    code = "inquiry_type_unknown"
    title = Text("نوع استعلام در فهرست استعلام‌ها نیست", "No such inquiry type in the registry")


class InvalidSubject(AppError):
    """``errors`` names the identifier's problem (``national_code_checksum`` ...)."""

    status = 422
    code = "invalid_subject"
    title = Text("کد ملی موضوع استعلام معتبر نیست", "The subject's national code is not valid")


class InvalidParams(AppError):
    status = 422
    code = "validation_failed"
    title = Text("پارامترهای استعلام معتبر نیستند", "The inquiry parameters are not valid")

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__(errors=errors)


class InquiryNotPermitted(Forbidden, KeepChanges):
    """Refused by the access policy.

    The refusal is a fact the audit log must keep: as a :class:`KeepChanges` error it makes the
    unit of work commit the denial's entry before the caller gets the 403.
    """

    code = "inquiry_not_permitted"
    title = Text(
        "این استعلام برای این هدف به شما مجاز نیست",
        "This inquiry is not permitted to you for this purpose",
    )

    def __init__(self, reason: str) -> None:
        super().__init__(extra={"reason": reason})
        self.reason = reason


class InquiryNotFound(NotFound):
    code = "inquiry_not_found"
    title = Text("استعلام یافت نشد", "Inquiry not found")


class DeliveryUnsupported(AppError):
    status = 501
    code = "delivery_unsupported"
    title = Text(
        "روش تحویل این نوع استعلام هنوز پشتیبانی نمی‌شود",
        "This inquiry type's delivery is not supported yet",
    )


class CheckpointInvalid(AppError):
    """A checkpoint given to ``/audit/verify`` that the broker's keys did not sign as one."""

    status = 422
    code = "checkpoint_invalid"
    title = Text(
        "نقطه‌ی وارسی با کلیدهای کارگزار امضا نشده است",
        "The checkpoint is not one the broker's keys signed",
    )


class NoCheckpointYet(NotFound):
    code = "checkpoint_not_found"
    title = Text("هنوز نقطه‌ی وارسی صادر نشده است", "No checkpoint has been issued yet")
