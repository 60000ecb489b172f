"""Inquiry broker: purpose-bound data exchange between agencies, with audit."""
