"""Condition trees (service/policy/expressions.py) to Polars expressions over a person table.

A comparison becomes a three-valued Boolean column (null: unknown, as `evaluate_leaf` gives None)
and `all`/`any` become Kleene `&`/`|`, which is exactly `evaluate`. Operands that read no person
fact (parameters, literals, the evaluation date, `in_zhejiang`, switch facts) are computed in
Python per (region, date) key with the online evaluator itself and picked up by the row's key
index; money and other numbers compared with an integer fact become integer bounds (x < 1.5 x
1,017 yuan is x < ceil(152,550)), so no amount is ever a float. A date shifted by months and
compared with the evaluation date becomes a threshold date per key. Any other shape is evaluated
row by row in Python with `evaluate_leaf` (exact, slower), so a new policy never needs Python here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import operator
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import polars as pl

from ...policy.expressions import AddMonths, All, AnyOf, Cmp, Cond, Fact, evaluate_leaf, evaluate_operand, operand_refs
from ...policy.policyset import PolicySet
from .rows import DATED, is_one_of
from .tables import Key

KEY = "__key"  # the row's index into the run's (region, date) keys; null for a refused row
VALUES, UNSTATED = "values", "unstated"  # facts with their defaults / unstated facts unknown
NUMERIC = ("integer", "money", "date")
FLIP = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
COMPARE: dict[str, Callable[[pl.Expr, Any], pl.Expr]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
DTYPES: dict[str, pl.DataType] = {
    "integer": pl.Int64(),
    "money": pl.Int64(),
    "date": pl.Int64(),  # days since 1970-01-01 (the online engine's yyyymmdd numbers order the same)
    "boolean": pl.Boolean(),
    "enum": pl.String(),
}


def leaf_facts(leaf: Cmp) -> list[str]:
    """The facts a comparison reads, in the order `_explain` and `open_facts` list them."""
    names = [leaf.fact]
    if not isinstance(leaf.rhs, tuple):
        names += [r.name for r in operand_refs(leaf.rhs) if isinstance(r, Fact)]
    return list(dict.fromkeys(names))


def month_thresholds(x: int, months: int) -> tuple[int, int]:
    """For add_months(a, months) compared with the date x (all yyyymmdd): the first date a with
    add_months(a, months) >= x, and the first with add_months(a, months) > x. add_months never
    decreases as a grows, so each comparison is one comparison of a with one of these."""
    xy, xm, xd = x // 10000, x // 100 % 100, x % 100
    month = xy * 12 + xm - 1 - months  # the month of a that lands on x's month

    def day(index: int, d: int) -> int:
        y, m0 = divmod(index, 12)
        return y * 10000 + (m0 + 1) * 100 + d

    def days(index: int) -> int:
        y, m0 = divmod(index, 12)
        return calendar.monthrange(2000 + y % 400, m0 + 1)[1]  # the calendar repeats every 400 years

    lo = day(month, xd) if xd <= days(month) else day(month + 1, 1)
    last_of_x = days(xy * 12 + xm - 1)
    hi = day(month, xd + 1) if xd < last_of_x and xd + 1 <= days(month) else day(month + 1, 1)
    return lo, hi


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, for any year (H. Hinnant's algorithm):
    a threshold may lie past 9999-12-31, where datetime stops."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _last_day(y: int, m: int) -> int:
    return calendar.monthrange(2000 + y % 400, m)[1]


def ceil_days(yyyymmdd: int) -> int:
    """The days of the first real date on or after a yyyymmdd number (a >= c is days(a) >= this)."""
    y, m, d = yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100
    if m > 12 or (m >= 1 and d > _last_day(y, m)):
        y, m, d = (y + 1, 1, 1) if m >= 12 else (y, m + 1, 1)
    elif m < 1:
        m, d = 1, 1
    return days_from_civil(y, m, max(d, 1))


def floor_days(yyyymmdd: int) -> int:
    """The days of the last real date on or before a yyyymmdd number (a <= c is days(a) <= this)."""
    y, m, d = yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100
    if m > 12:
        m, d = 12, 31
    elif m < 1:
        y, m, d = y - 1, 12, 31
    elif d < 1:
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        d = _last_day(y, m)
    return days_from_civil(y, m, min(d, _last_day(y, m)))


def to_yyyymmdd(days: int) -> int:
    date = EPOCH + dt.timedelta(days=days)
    return date.year * 10000 + date.month * 100 + date.day


EPOCH = dt.date(1970, 1, 1)


def key_facts(policy: PolicySet) -> set[str]:
    """The facts fixed by the region and the date (decide.Engine.evaluate sets them), not by a row."""
    return {"evaluation_date", "in_zhejiang"} | {n for n, f in policy.facts.items() if f.from_parameter}


class Compiler:
    """Expressions for one run: the row facts, the keys (region, date) and the policy's facts."""

    def __init__(self, policy: PolicySet, keys: Sequence[Key], row_facts: dict[str, pl.Expr]):
        self.policy = policy
        self.keys = keys
        self.row_facts = row_facts
        self.defaults = {n: f.default for n, f in policy.facts.items() if f.default is not None}
        self.key_facts = key_facts(policy)
        # While set, per-key constants become columns computed once (`shared`) and named here.
        self.sharing = False
        self.shared: dict[tuple[tuple[Any, ...], str], tuple[str, pl.Expr]] = {}
        # What the expressions over the combinations read of each key, one entry per thing read
        # (a value per key): two keys alike in all of them decide alike (`classes`).
        self.key_reads: list[Sequence[Any]] = []

    # Per-key constants -------------------------------------------------------------------------

    def const(self, values: list[Any], dtype: pl.DataType) -> pl.Expr:
        """Each row's key's value: a literal when every key has the same one."""
        if not values or all(v == values[0] and type(v) is type(values[0]) for v in values):
            return pl.lit(values[0] if values else None, dtype)
        gathered = pl.lit(pl.Series(values, dtype=dtype)).gather(pl.col(KEY))
        if not self.sharing:
            self.key_reads.append(values)
            return gathered
        memo = (tuple((type(v), v) for v in values), str(dtype))
        if memo not in self.shared:
            self.shared[memo] = (f"__const{len(self.shared)}", gathered)
        return pl.col(self.shared[memo][0])

    def fixed(self, leaf: Cmp) -> bool:
        """Whether a comparison reads neither the key (parameters, its facts) nor the date."""
        refs = [Fact(leaf.fact)] + ([] if isinstance(leaf.rhs, tuple) else list(operand_refs(leaf.rhs)))
        return all(isinstance(r, Fact) and r.name not in self.key_facts and r.name not in DATED for r in refs)

    def key_only(self, leaf: Cmp) -> bool:
        """Whether a comparison reads nothing but the key's facts and parameters."""
        rhs = () if isinstance(leaf.rhs, tuple) else operand_refs(leaf.rhs)
        return leaf.fact in self.key_facts and all(r.name in self.key_facts for r in rhs if isinstance(r, Fact))

    def dtype(self, fact: str) -> pl.DataType:
        return DTYPES[self.policy.facts[fact].type]

    # Facts ------------------------------------------------------------------------------------

    def stated(self, fact: str) -> pl.Expr:
        """The fact as the row (or its key) states it; null when unstated."""
        if fact in self.key_facts:
            values = [k.facts.get(fact) for k in self.keys]
            if self.policy.facts[fact].type == "date":  # dates are compared as days
                values = [None if v is None else ceil_days(int(v)) for v in values]
            return self.const(values, self.dtype(fact))
        found = self.row_facts.get(fact)
        return pl.lit(None, self.dtype(fact)) if found is None else pl.col(fact_column(fact))

    def key_unstated(self, fact: str) -> pl.Expr:
        """Whether the row's key leaves a fact of keys unstated (what is read of it: not its value)."""
        return self.const([k.facts.get(fact) is None for k in self.keys], pl.Boolean())

    def fact(self, fact: str, mode: str) -> pl.Expr:
        if mode == VALUES and fact in self.defaults and fact not in self.key_facts:
            return pl.coalesce(self.stated(fact), pl.lit(self.defaults[fact], self.dtype(fact)))
        return self.stated(fact)

    def defaultable(self, facts: Sequence[str]) -> bool:
        return any(f in self.defaults and f not in self.key_facts for f in facts)

    # Comparisons ------------------------------------------------------------------------------

    def leaf(self, leaf: Cmp, mode: str) -> pl.Expr:
        def lhs() -> pl.Expr:  # made only where read: a key fact's values would count as read (`key_reads`)
            return self.fact(leaf.fact, mode)

        if isinstance(leaf.rhs, tuple):
            listed = list(leaf.rhs)
            if self.policy.facts[leaf.fact].type == "date":  # the real dates listed, as days
                listed = [ceil_days(v) for v in listed if floor_days(v) == ceil_days(v)]
            return is_one_of(lhs(), listed)
        rhs = leaf.rhs
        row_refs = [r.name for r in operand_refs(rhs) if isinstance(r, Fact) and r.name not in self.key_facts]
        lhs_by_key = leaf.fact in self.key_facts
        if not row_refs:
            if lhs_by_key:  # the whole comparison is a function of the key
                return self.const([evaluate_leaf(leaf, k.facts, k.params) for k in self.keys], pl.Boolean())
            if not list(operand_refs(rhs)):  # a literal: the same for every key (and with no key)
                return self.compare(leaf.fact, lhs(), leaf.op, [evaluate_operand(rhs, {}, {})])
            values = [evaluate_operand(rhs, k.facts, k.params) for k in self.keys]
            return self.compare(leaf.fact, lhs(), leaf.op, values)
        if isinstance(rhs, Fact):
            if lhs_by_key:
                values = [k.facts.get(leaf.fact) for k in self.keys]
                return self.compare(rhs.name, self.fact(rhs.name, mode), FLIP[leaf.op], values)
            return COMPARE[leaf.op](lhs(), self.fact(rhs.name, mode))
        if (
            isinstance(rhs, AddMonths)
            and lhs_by_key
            and self.policy.facts[leaf.fact].type == "date"
            and isinstance(rhs.date, Fact)
            and rhs.date.name not in self.key_facts
            and not any(isinstance(r, Fact) and r.name not in self.key_facts for r in operand_refs(rhs.months))
        ):
            return self.shifted(leaf, rhs, mode)
        return self.by_row(leaf, mode)

    def compare(self, fact: str, column: pl.Expr, op: str, values: list[Any]) -> pl.Expr:
        """A fact column against a per-key value; exact integer bounds for a number."""
        numbers = all(v is None or (isinstance(v, (int, Decimal)) and not isinstance(v, bool)) for v in values)
        if self.policy.facts[fact].type in NUMERIC and numbers:
            date = self.policy.facts[fact].type == "date"

            def bound(rounding: str) -> pl.Expr:
                ints = [None if v is None else int(Decimal(v).to_integral_value(rounding)) for v in values]
                if date:  # yyyymmdd to days: the first real date on or after, the last on or before
                    to_days = ceil_days if rounding == ROUND_CEILING else floor_days
                    ints = [None if v is None else to_days(v) for v in ints]
                return self.const(ints, pl.Int64())

            lo, hi = bound(ROUND_CEILING), bound(ROUND_FLOOR)  # x < c is x < ceil(c); x <= c is x <= floor(c)
            return {
                "lt": lambda: column < lo,
                "le": lambda: column <= hi,
                "gt": lambda: column > hi,
                "ge": lambda: column >= lo,
                "eq": lambda: (column >= lo) & (column <= hi),
                "ne": lambda: (column < lo) | (column > hi),
            }[op]()
        return COMPARE[op](column, self.const(values, self.dtype(fact)))

    def shifted(self, leaf: Cmp, rhs: AddMonths, mode: str) -> pl.Expr:
        """key-date OP add_months(row-date, key-months), as row-date against threshold dates."""
        assert isinstance(rhs.date, Fact)
        lows: list[int | None] = []
        highs: list[int | None] = []
        for k in self.keys:
            x = k.facts.get(leaf.fact)
            months = evaluate_operand(rhs.months, k.facts, k.params)
            lo, hi = (None, None) if x is None or months is None else month_thresholds(int(x), int(months))
            lows.append(None if lo is None else ceil_days(lo))  # compared as a >= lo, a < lo: days
            highs.append(None if hi is None else ceil_days(hi))
        a, lo_e, hi_e = self.fact(rhs.date.name, mode), self.const(lows, pl.Int64()), self.const(highs, pl.Int64())
        op = FLIP[leaf.op]  # add_months(a) OP' x
        return {
            "ge": lambda: a >= lo_e,
            "gt": lambda: a >= hi_e,
            "lt": lambda: a < lo_e,
            "le": lambda: a < hi_e,
            "eq": lambda: (a >= lo_e) & (a < hi_e),
            "ne": lambda: (a < lo_e) | (a >= hi_e),
        }[op]()

    def by_row(self, leaf: Cmp, mode: str) -> pl.Expr:
        """Any other comparison: `evaluate_leaf` itself, once per distinct key and facts read."""
        names = [n for n in leaf_facts(leaf) if n not in self.key_facts]
        dates = {n for n in names if self.policy.facts[n].type == "date"}  # held as days, read as yyyymmdd
        keys = self.keys

        def run(batch: pl.Series) -> pl.Series:
            seen: dict[tuple[Any, ...], bool | None] = {}
            out: list[bool | None] = []
            for row in batch.to_list():
                k = row.pop(KEY)
                memo = (k, *row.values())
                if memo not in seen:  # a refused row has no key: its result is never read
                    stated = {n: to_yyyymmdd(v) if n in dates else v for n, v in row.items() if v is not None}
                    key = keys[k] if k is not None else None
                    values = {**(key.facts if key else {}), **stated}
                    seen[memo] = evaluate_leaf(leaf, values, key.params if key else {})
                out.append(seen[memo])
            return pl.Series(out, dtype=pl.Boolean())

        if not self.sharing:  # it reads all of a key
            self.key_reads.append([(sorted(k.facts.items()), sorted(k.params.items())) for k in keys])
        inputs = [self.fact(n, mode).alias(n) for n in names] + [pl.col(KEY)]
        return pl.struct(inputs).map_batches(run, return_dtype=pl.Boolean())

    def classes(self) -> list[int]:
        """Each key's class: the first key that the expressions over the combinations read alike
        (`key_reads`). Most keys of a month end read what the same region's key of the month
        before reads (only the date differs, and the passes over the rows read that)."""
        first: dict[tuple[Any, ...], int] = {}
        return [first.setdefault(tuple(repr(read[k]) for read in self.key_reads), k) for k in range(len(self.keys))]

    # Conditions -------------------------------------------------------------------------------

    def condition(self, cond: Cond, leaf_column: Callable[[Cmp], pl.Expr]) -> pl.Expr:
        """Kleene `&`/`|` over the comparisons' columns: `evaluate` exactly."""
        if isinstance(cond, Cmp):
            return leaf_column(cond)
        parts = [self.condition(item, leaf_column) for item in cond.items]
        return functools.reduce(operator.and_ if isinstance(cond, All) else operator.or_, parts)

    def open_bits(
        self, cond: Cond, leaf_column: Callable[[Cmp], pl.Expr], bits: dict[str, int], unknown: dict[str, pl.Expr]
    ) -> pl.Expr:
        """`open_facts` as a bit mask over `bits`: the unstated facts of the unknown parts of an
        unknown condition (`unknown`: whether each fact is unstated)."""
        result = self.condition(cond, leaf_column)
        if isinstance(cond, Cmp):
            found = [pl.when(unknown[n]).then(pl.lit(bits[n], pl.Int64)) for n in leaf_facts(cond)]
            inner = pl.sum_horizontal(found)  # distinct names: the sum is their union
        else:
            assert isinstance(cond, (All, AnyOf))
            inner = functools.reduce(operator.or_, [self.open_bits(c, leaf_column, bits, unknown) for c in cond.items])
        return pl.when(result.is_null()).then(inner).otherwise(pl.lit(0, pl.Int64))


def fact_column(fact: str) -> str:
    return f"__fact.{fact}"
