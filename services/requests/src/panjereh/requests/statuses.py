"""The request status machine (docs/api.md, "Requests"): which move is allowed, and who makes it.

::

    submitted ──► awaiting_inquiries ──► deciding ──► approved | rejected
        │               │    │              │
        │               │    └► failed      └► in_review (otherwise: agency; rule error)
        │               └► in_review ──────────► approved | rejected   (officer / agency system)
        ├► deciding (no inquiries)      └► in_review (agency mode)
        └► cancelled   (by the citizen, from any status not yet decided)

Every transition is a row in ``request_transition``; a move not in :data:`TRANSITIONS` is a
programming error (:class:`IllegalTransition`), never a silent update.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Status(StrEnum):
    SUBMITTED = "submitted"
    AWAITING_INQUIRIES = "awaiting_inquiries"
    DECIDING = "deciding"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Actor(StrEnum):
    """Who made a transition."""

    CITIZEN = "citizen"
    RULES = "rules"
    OFFICER = "officer"
    AGENCY_SYSTEM = "agency-system"
    SYSTEM = "system"


FINAL: Final = frozenset({Status.APPROVED, Status.REJECTED, Status.CANCELLED, Status.FAILED})
#: not decided yet: the citizen may still cancel
OPEN: Final = frozenset(Status) - FINAL
DECIDERS: Final = frozenset({Actor.OFFICER, Actor.AGENCY_SYSTEM})

#: (from, to) → the actors that may make that move
TRANSITIONS: Final[dict[tuple[Status | None, Status], frozenset[Actor]]] = {
    (None, Status.SUBMITTED): frozenset({Actor.CITIZEN}),
    (Status.SUBMITTED, Status.AWAITING_INQUIRIES): frozenset({Actor.SYSTEM}),
    (Status.SUBMITTED, Status.DECIDING): frozenset({Actor.SYSTEM}),
    (Status.SUBMITTED, Status.IN_REVIEW): frozenset({Actor.SYSTEM}),
    (Status.AWAITING_INQUIRIES, Status.DECIDING): frozenset({Actor.SYSTEM}),
    (Status.AWAITING_INQUIRIES, Status.IN_REVIEW): frozenset({Actor.SYSTEM}),
    (Status.AWAITING_INQUIRIES, Status.FAILED): frozenset({Actor.SYSTEM}),
    (Status.DECIDING, Status.APPROVED): frozenset({Actor.RULES}),
    (Status.DECIDING, Status.REJECTED): frozenset({Actor.RULES}),
    (Status.DECIDING, Status.IN_REVIEW): frozenset({Actor.RULES, Actor.SYSTEM}),
    (Status.IN_REVIEW, Status.APPROVED): DECIDERS,
    (Status.IN_REVIEW, Status.REJECTED): DECIDERS,
    **{(status, Status.CANCELLED): frozenset({Actor.CITIZEN}) for status in OPEN},
}


class IllegalTransition(RuntimeError):
    """A move the machine does not allow (a bug in the caller, not a user error)."""


def check(current: Status | None, target: Status, actor: Actor) -> None:
    """Raise :class:`IllegalTransition` unless ``actor`` may move ``current`` → ``target``."""
    allowed = TRANSITIONS.get((current, target))
    if allowed is None or actor not in allowed:
        msg = f"{current} → {target} by {actor} is not a transition of the request machine"
        raise IllegalTransition(msg)


def is_final(status: Status | str) -> bool:
    return Status(status) in FINAL
