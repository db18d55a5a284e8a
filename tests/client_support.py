"""Helpers for the caseworker client tests: the client run as a caseworker runs it (a subprocess),
people with valid ID numbers, and the display width of what it printed."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from rich.cells import cell_len
from support import ROOT

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
NURSING, LIVING = "disability_nursing_subsidy", "disability_living_allowance"
ELDERLY, CHILD = "elderly_care_subsidy", "child_basic_living_allowance"


def with_check(body: str) -> str:
    """The 17 digits plus their GB 11643 check character."""
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def id_number(region: str, born: dt.date, sequence: int) -> str:
    return with_check(f"{region}{born:%Y%m%d}{sequence:03d}")


def bad_check(number: str) -> str:
    return number[:-1] + ("1" if number[-1] != "1" else "2")


# A Hangzhou resident on dibao, grade 1 physical disability, fully dependent: as of 2020-08-01
# (Hangzhou dibao standard 1,080) nursing 50% = 540 yuan, living allowance 30% = 324 yuan.
BORN = dt.date(1970, 5, 5)
PERSON = {
    "id_number": id_number("330102", BORN, 1),
    "birth_date": BORN.isoformat(),
    "region_code": "330102",
    "household_status": "dibao",
    "disability_grade": "1",
    "disability_category": "physical",
    "long_term_care_need": "yes",
    "self_care": "fully_dependent",
    "as_of": "2020-08-01",
}
PERSON_FLAGS = [
    "--id-number",
    PERSON["id_number"],
    "--birth-date",
    PERSON["birth_date"],
    "--region",
    "330102",
    "--household",
    "dibao",
    "--disability-grade",
    "1",
    "--disability-category",
    "physical",
    "--long-term-care-need",
    "--self-care",
    "fully_dependent",
    "--as-of",
    "2020-08-01",
]


def run(*args: str, columns: int = 200, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`subsidy-caseworker ARGS` in a terminal `columns` wide (wide by default, so that long English
    programme names are not wrapped inside table cells)."""
    # Without SUBSIDY_ADDRESS or GRPC_VERBOSITY from outside: the client must quiet gRPC by itself.
    inherited = {k: v for k, v in os.environ.items() if k not in ("SUBSIDY_ADDRESS", "GRPC_VERBOSITY")}
    full_env = {**inherited, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "clients.caseworker", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def widest_line(text: str) -> int:
    """The widest line in terminal cells: a CJK character takes two."""
    return max((cell_len(line) for line in text.splitlines()), default=0)


def no_library_noise(stderr: str) -> bool:
    """No traceback and no line logged by the gRPC core (they start like `E0000 00:00:...` or `I0000`)."""
    import re

    return "Traceback" not in stderr and not re.search(r"^[EWID]\d{4} ", stderr, re.MULTILINE)
