"""Panjereh's shared kernel: domain-free plumbing used by every service.

Nothing in this package knows about service cards, citizens or inquiries; it knows about
settings, databases, errors, events, tokens and telemetry.
"""
