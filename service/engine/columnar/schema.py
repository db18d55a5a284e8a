"""The person table a population run reads and the decision table it writes.

A person table has one row per person. Its columns are pb.Person's fields flattened (enum values by
their short names, as the policy files write them: `dibao_edge`, `severe_loss`), with no ID number:
a caller keeps its own `reference` (carried through to the decisions) and never sends ID numbers.
A null is an unstated fact, as an unset optional field is in a request.

The decision table has one row per person and evaluation date, with per program `{program}.COLUMN`.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from ...convert import spelled

# The person's fields, in pb.Person's order; `reference` (any type: kept as given) and `weight`
# (how many people the row stands for; absent means 1) are carried through.
PERSON_SCHEMA: dict[str, pl.DataType] = {
    "birth_date": pl.Date(),
    "region_code": pl.String(),
    "household_status": pl.String(),  # ordinary, dibao_edge, dibao, destitute
    "household_income_per_head_fen": pl.Int64(),
    "own_income_fen": pl.Int64(),
    "disability_grade": pl.Int8(),  # 1-4; null or 0: no disability certificate
    "disability_category": pl.String(),
    "long_term_care_need": pl.Boolean(),
    "self_care": pl.String(),
    "in_institutional_care": pl.Boolean(),
    "capacity_level": pl.String(),  # with capacity_assessed_on: both or neither
    "capacity_assessed_on": pl.Date(),
    "child_status": pl.String(),
    "in_full_time_education": pl.Boolean(),
    "serious_illness": pl.Boolean(),
    "depends_on_family_support": pl.Boolean(),
    "other_benefits": pl.List(pl.String()),  # e.g. [work_injury_nursing_allowance]
    "education_level": pl.String(),
}
REQUIRED = ("birth_date", "region_code")
REFERENCE, WEIGHT = "reference", "weight"

# Decision table: the person's reference (and weight), then these, then each program's columns.
AS_OF = "as_of"  # date
POLICY_VERSION = "policy_version"
REGION = "region_code"  # the code the person's region resolved to on the date (aliases followed)
CITY = "city_code"  # its city (null outside Zhejiang)
IN_ZHEJIANG = "in_zhejiang"
# Why the person could not be decided on the date, as the service would refuse the request:
# "INVALID_ARGUMENT: person.region_code: unknown region code ..." or "FAILED_PRECONDITION: ...".
# Null when decided; when set, every program column is null.
ERROR = "error"
REFERRALS = "referrals"  # list of referral rule ids that hold, sorted
# list of "rule_id:fact,fact" (facts sorted): referrals that hold if those unstated facts are confirmed
CONDITIONAL_REFERRALS = "conditional_referrals"

# Per program, `{program}.{column}`. Every column is null when the program is not in force on the
# date (or the row has an error).
OUTCOME = "outcome"  # ELIGIBLE, INELIGIBLE, UNDETERMINED
AMOUNT = "amount_fen"  # monthly amount paid, after interactions (0 unless paid)
AMOUNT_BEFORE = "amount_before_interactions_fen"
KEPT = "kept"  # eligible and paid: false when an interaction took the amount (null: not eligible)
INTERACTIONS = "interactions"  # list of interaction ids applied to the program, sorted
MISSING = "missing"  # list of "rule_id:fact" that leave it undetermined, sorted
ASSUMPTIONS = "assumptions"  # list of "rule_id:fact=value" defaults its outcome rests on, sorted
PROGRAM_COLUMNS: dict[str, pl.DataType] = {
    OUTCOME: pl.String(),
    AMOUNT: pl.Int64(),
    AMOUNT_BEFORE: pl.Int64(),
    KEPT: pl.Boolean(),
    INTERACTIONS: pl.List(pl.String()),
    MISSING: pl.List(pl.String()),
    ASSUMPTIONS: pl.List(pl.String()),
}


def column(program: str, name: str) -> str:
    return f"{program}.{name}"


def decision_schema(programs: Iterable[str]) -> dict[str, pl.DataType]:
    """The decision table's columns after the carried-through ones, in order."""
    schema: dict[str, pl.DataType] = {
        AS_OF: pl.Date(),
        POLICY_VERSION: pl.String(),
        REGION: pl.String(),
        CITY: pl.String(),
        IN_ZHEJIANG: pl.Boolean(),
        ERROR: pl.String(),
    }
    for pid in programs:
        schema.update({column(pid, name): dtype for name, dtype in PROGRAM_COLUMNS.items()})
    schema[REFERRALS] = pl.List(pl.String())
    schema[CONDITIONAL_REFERRALS] = pl.List(pl.String())
    return schema


def assumption_text(rule_id: str, fact: str, value: object) -> str:
    """An assumption as the decision table lists it, the value spelled as the reply spells it."""
    return f"{rule_id}:{fact}={spelled(value)}"
