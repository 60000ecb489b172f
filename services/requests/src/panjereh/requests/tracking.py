"""Tracking codes: 12 random digits and a Luhn check digit (13 in all).

Random, not sequential: a code says nothing about how many requests came before it and
cannot be guessed from a neighbour's. The check digit catches every single-digit typo and
most adjacent swaps when a citizen reads a code over the phone. Uniqueness is the database's
job (a unique index); a collision (1 in 10^12 per pair) is retried by the caller.
"""

from __future__ import annotations

import secrets

BODY_DIGITS = 12
LENGTH = BODY_DIGITS + 1


def luhn_check_digit(body: str) -> int:
    """The digit that makes ``body`` + digit pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:  # doubled: the rightmost body digit sits left of the check digit
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def new_tracking_code() -> str:
    # the first digit is never 0, so the code keeps its length in spreadsheets and SMS
    body = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(BODY_DIGITS - 1)
    )
    return body + str(luhn_check_digit(body))


def is_valid_tracking_code(code: str) -> bool:
    return (
        len(code) == LENGTH
        and code.isascii()
        and code.isdigit()
        and luhn_check_digit(code[:-1]) == int(code[-1])
    )
