"""Resident ID numbers (GB 11643-1999): check character and embedded birth date."""

from __future__ import annotations

import datetime as dt
import operator
import re

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
# ASCII digits only: \d would also take other scripts' digits, which int() reads as the same numbers.
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
_OLD_SHAPE = re.compile(r"^[0-9]{15}$")


def check_char(first17: str) -> str:
    return CHECK_CHARS[sum(map(operator.mul, map(int, first17), WEIGHTS)) % 11]


def problems(id_number: str) -> list[str]:
    """What is wrong with an ID number (empty when it is valid)."""
    value = id_number.strip().upper()
    if not _SHAPE.match(value):
        if _OLD_SHAPE.match(value):
            return ["the old 15-digit ID number is not accepted; give the 18-character number"]
        return ["must be 18 characters: 17 digits and a check digit or X"]
    if check_char(value[:17]) != value[17]:
        return ["check character does not match (GB 11643-1999)"]
    try:
        birth_date(value)
    except ValueError:
        return ["the embedded birth date is not a real date"]
    return []


def birth_date(id_number: str) -> dt.date:
    digits = id_number[6:14]
    return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def synthetic(birth: str, region: str = "330102", seq: int = 1) -> str:
    """A valid ID number for a birth date (YYYY-MM-DD): for tests and for deciding a person known
    only by a reference, whose decision never depends on the ID number beyond its birth date."""
    first = f"{region}{birth.replace('-', '')}{seq % 1000:03d}"
    return first + check_char(first)
