"""What an agency's handler raises to answer something other than a result."""

from __future__ import annotations


class InquiryNotFound(Exception):
    """The subject is not in this agency's registry: replied as ``not_found``."""


class InvalidInquiry(Exception):
    """The inquiry breaks the registry's input schema or names a type this agency lacks."""
