"""Person rows to facts, and the rows the service would refuse.

The facts are those request.to_case makes of a request (the person table is pb.Person flattened,
schema.py): the same names, the same unstated facts. A row the service would refuse is found by a
cheap column test that may flag too many, never too few; each distinct flagged row then goes
through the service's own code (persons.to_request, request.to_case), so the refusal's
wording is the service's.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ...api import eligibility_pb2 as pb
from ...policy.policyset import PolicySet
from ...request import MAX_DISABILITY_GRADE, MAX_REPEATED, to_case, today
from .persons import error_text, to_request
from .schema import PERSON_SCHEMA

BENEFITS = "other_benefits"
GRADE, CATEGORY = "disability_grade", "disability_category"
LEVEL, ASSESSED = "capacity_level", "capacity_assessed_on"
INCOMES = ("household_income_per_head_fen", "own_income_fen")
DATED = frozenset({"age_years"})  # the row facts that depend on the evaluation date
BORN_YEAR, BORN_DAY = "__born_year", "__born_day"  # see `born`
ENUM_CODE = "__enum."  # see `enum_codes`
ALWAYS_STATED = frozenset({"has_disability_certificate"})  # to_case sets it for every request


def _short_names(enum: Any) -> list[str]:
    prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper() + "_"
    return [str(v.name).removeprefix(prefix).lower() for v in enum.values if v.number != 0]


def enum_values() -> dict[str, list[str]]:
    """The short names each enum column may hold (what persons.to_request can carry)."""
    fields = pb.Person.DESCRIPTOR.fields_by_name
    out = {name: _short_names(f.enum_type) for name, f in fields.items() if f.enum_type is not None}
    out[CATEGORY] = _short_names(pb.Disability.DESCRIPTOR.fields_by_name["category"].enum_type)
    out[LEVEL] = _short_names(pb.CapacityAssessment.DESCRIPTOR.fields_by_name["level"].enum_type)
    out[BENEFITS] = out.pop(BENEFITS, _short_names(pb.Benefit.DESCRIPTOR))
    return out


ENUMS = enum_values()


def days(date: pl.Expr) -> pl.Expr:
    """A date column as days since 1970-01-01 (compile.py compares dates as days)."""
    return date.to_physical().cast(pl.Int64)


def is_one_of(column: pl.Expr, values: list[Any]) -> pl.Expr:
    """`is_in` for a short list, as `==` tests (several times faster on strings); null stays null."""
    if not values or len(values) > 8:
        return column.is_in(values)
    found: pl.Expr = functools.reduce(operator.or_, [column == v for v in values])
    return found


BORN_SPAN = 1 << 18  # days (about 700 years): `born` reads the parts from tables this long at most


def born(births: pl.Series) -> list[pl.Expr]:
    """The birth date's year and month * 100 + day (columns BORN_YEAR, BORN_DAY), once per run:
    the age on any date is then two integer operations (`age_on`). Read from a table of the
    days between the earliest and the latest birth (numpy takes the dates apart, once per day):
    measured eight times faster than polars taking every row's date apart."""
    birth = pl.col("birth_date")
    days = births.to_physical().drop_nulls()
    first, last = (int(days.min()), int(days.max())) if days.len() else (0, BORN_SPAN)  # type: ignore[arg-type]
    if last - first >= BORN_SPAN:
        return [
            birth.dt.year().cast(pl.Int32).alias(BORN_YEAR),
            (birth.dt.month().cast(pl.Int32) * 100 + birth.dt.day().cast(pl.Int32)).alias(BORN_DAY),
        ]
    dates = np.arange(first, last + 1).astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    years = months.astype("datetime64[Y]").astype(np.int32) + 1970
    month_day = (months.astype(np.int32) % 12 + 1) * 100 + (dates - months).astype(np.int32) + 1
    index = birth.to_physical() - first
    return [
        pl.lit(pl.Series(years, dtype=pl.Int32)).gather(index).alias(BORN_YEAR),
        pl.lit(pl.Series(month_day, dtype=pl.Int32)).gather(index).alias(BORN_DAY),
    ]


def age_on(on: dt.date) -> pl.Expr:
    """Completed years on the date, as request.age_on computes them (a 29 February birthday is
    reached on 1 March in common years), from the columns `born` makes."""
    return pl.lit(on.year, pl.Int64) - pl.col(BORN_YEAR) - (pl.col(BORN_DAY) > on.month * 100 + on.day).cast(pl.Int64)


def row_facts(policy: PolicySet, on: dt.date) -> dict[str, pl.Expr]:
    """Each fact a row states, as to_case states it (null: not stated). Facts fixed by region and
    date are not here (tables.Key); a fact no request carries is never stated."""
    grade = pl.col(GRADE).cast(pl.Int64)
    certificate = _certificate()
    facts: dict[str, pl.Expr] = {
        "age_years": age_on(on),
        "has_disability_certificate": certificate,
        GRADE: pl.when(certificate).then(grade),
        CATEGORY: pl.when(certificate).then(pl.col(CATEGORY)),
        ASSESSED: days(pl.col(ASSESSED)),
    }
    for name in INCOMES:
        facts[name.removesuffix("_fen")] = pl.col(name).cast(pl.Int64)
    for benefit in ENUMS[BENEFITS]:
        facts[benefit] = pl.when(pl.col(BENEFITS).list.contains(benefit)).then(pl.lit(True))
    for name in PERSON_SCHEMA:
        if name not in facts and name not in (GRADE, "birth_date", "region_code", BENEFITS, *INCOMES):
            facts[name] = pl.col(name)
    return {name: expr for name, expr in facts.items() if name in policy.facts}


def _certificate() -> pl.Expr:
    grade = pl.col(GRADE).cast(pl.Int64)
    return grade.is_not_null() & (grade != 0)


def value_index(column: pl.Expr, values: Sequence[Any]) -> pl.Expr:
    """The column's value as its index among `values` (0: null, i: the i-th, len + 1: another
    value): a when-then chain, measured faster on text than a lookup or `is_in`."""
    dtype = pl.UInt8 if len(values) < 255 else pl.UInt32
    code: Any = pl.when(column.is_null()).then(pl.lit(0, dtype))
    for i, value in enumerate(values, start=1):
        code = code.when(column == value).then(pl.lit(i, dtype))
    found: pl.Expr = code.otherwise(pl.lit(len(values) + 1, dtype))
    return found


ENUM_COLUMNS = [ENUM_CODE + name for name in ENUMS if name != BENEFITS]  # `enum_codes`'


def enum_codes() -> list[pl.Expr]:
    """Each enum column's value as a small code (ENUM_COLUMNS; `value_index` among ENUMS' values),
    once per run: the text is read once, and both the service's checks (`suspect`) and the
    comparisons of a coded fact (`coded`) read the code."""
    return [
        value_index(pl.col(name), values).alias(ENUM_CODE + name) for name, values in ENUMS.items() if name != BENEFITS
    ]


def coded(fact: str, values: list[Any]) -> pl.Expr | None:
    """The fact as `row_facts` states it, as its index among `values` (0: unstated, len + 1: another
    value), from the run's enum codes (`enum_codes`); None for a fact that is no enum column. A value
    outside ENUMS' is another value here: its row is refused whatever it shows (`suspect`)."""
    if fact not in ENUMS or fact == BENEFITS:
        return None
    other = len(values) + 1
    table = [0, *(values.index(v) + 1 if v in values else other for v in ENUMS[fact]), other]
    code = pl.lit(pl.Series(table, dtype=pl.UInt8)).gather(pl.col(ENUM_CODE + fact))
    if fact == CATEGORY:  # stated only with a certificate (`row_facts`)
        return pl.when(_certificate()).then(code).otherwise(pl.lit(0, pl.UInt8))
    return code


def suspect(now: dt.date) -> pl.Expr:
    """True for every row the service might refuse on any date (and some it would not); the date's
    own test (born after it) and the region's are added per date. Reads the columns of `enum_codes`."""
    born = pl.col("birth_date")
    grade = pl.col(GRADE).cast(pl.Int64)
    tests = [born.is_null(), born > pl.lit(now), pl.col("region_code").is_null()]
    tests += [pl.col(name) < 0 for name in INCOMES]
    for name, values in ENUMS.items():
        if name != BENEFITS:  # a value the request cannot carry (the columns of `enum_codes`)
            tests.append(pl.col(ENUM_CODE + name) == len(values) + 1)
    tests += [
        grade.is_not_null() & (grade != 0) & ((grade < 1) | (grade > MAX_DISABILITY_GRADE)),
        (grade.is_null() | (grade == 0)) & pl.col(CATEGORY).is_not_null(),
        pl.col(LEVEL).is_null() != pl.col(ASSESSED).is_null(),
        pl.col(BENEFITS).list.len() > MAX_REPEATED,
        # an entry no request can carry (a null entry too)
        pl.col(BENEFITS).list.eval(pl.element().is_in(ENUMS[BENEFITS]).fill_null(False).not_()).list.any(),
    ]
    return pl.any_horizontal([t.fill_null(False) for t in tests])


def refusal(row: dict[str, Any], policy: PolicySet, on: dt.date, now: dt.date) -> str | None:
    """The service's refusal of a row's request on a date (None: it takes it), in its words."""
    try:
        to_case(to_request(row, on), policy, now)
    except Exception as exc:  # every refusal, in the words both backends use
        return error_text(exc)
    return None


def texts(rows: list[dict[str, Any]], policy: PolicySet, on: dt.date) -> pl.Series:
    """The refusal of each row (null where the service takes it)."""
    now = today(policy)
    return pl.Series([refusal(row, policy, on, now) for row in rows], dtype=pl.String())


def distinct_rows(flagged: pl.DataFrame) -> tuple[list[dict[str, Any]], pl.Series]:
    """The distinct person rows among the flagged ones, and each flagged row's index among them
    (the same on every date: a run finds them once and asks the service about them per date)."""
    columns = list(PERSON_SCHEMA)
    # The benefits list as text, so that the distinct rows are found by polars (a list column
    # is no join key); \x00 and \x01 are in no benefit's name.
    listed = pl.col(BENEFITS).list.eval(pl.element().fill_null("\x00")).list.join("\x01")
    keyed = flagged.select(*[c for c in columns if c != BENEFITS], listed.alias("__benefits"), pl.col(BENEFITS))
    on_columns = [c for c in keyed.columns if c != BENEFITS]
    keyed = keyed.with_columns(pl.col(BENEFITS).is_null().alias("__no_benefits"))
    on_columns.append("__no_benefits")
    distinct = keyed.unique(subset=on_columns, keep="first", maintain_order=True).with_row_index("__distinct")
    rows = list(distinct.select(columns).iter_rows(named=True))
    table = distinct.select(*on_columns, "__distinct")
    joined = keyed.select(on_columns).join(table, on=on_columns, how="left", maintain_order="left", nulls_equal=True)
    return rows, joined["__distinct"]
