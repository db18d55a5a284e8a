"""Resident ID numbers (GB 11643-1999): check character and embedded birth date."""
from __future__ import annotations

import datetime as dt
import re

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]$")


def check_char(first17: str) -> str:
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, WEIGHTS)) % 11]


def problems(id_number: str) -> list[str]:
    """What is wrong with an ID number (empty when it is valid)."""
    value = id_number.strip().upper()
    if re.fullmatch(r"\d{15}", value):
        return ["the old 15-digit ID number is not accepted; give the 18-character number"]
    if not _SHAPE.match(value):
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
