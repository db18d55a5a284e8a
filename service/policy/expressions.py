"""The backend-neutral form of conditions and amounts: small expression trees.

Conditions compare a person fact with a literal or an operand; operands are facts, parameters,
literals, products and date shifts. The durable-rules backend and the explanation evaluator here
both work from these trees. Evaluation is three-valued: a missing fact gives None (unknown),
`all` is false if any part is false, `any` true if any part is true (Kleene logic).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

OPS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "eq": ("=", lambda a, b: a == b),
    "ne": ("≠", lambda a, b: a != b),
    "lt": ("<", lambda a, b: a < b),
    "le": ("≤", lambda a, b: a <= b),
    "gt": (">", lambda a, b: a > b),
    "ge": ("≥", lambda a, b: a >= b),
    "in": ("∈", lambda a, b: a in b),
}


class ExpressionError(ValueError):
    """A condition or amount in a policy file is malformed; `loc` points into the file."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()):
        super().__init__(message)
        self.loc = loc


# Operands ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    name: str


@dataclass(frozen=True)
class Param:
    name: str


@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Mul:
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class AddMonths:
    date: Operand
    months: Operand


Operand = Fact | Param | Lit | Mul | AddMonths

# Conditions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cmp:
    fact: str
    op: str
    rhs: Operand | tuple[Any, ...]


@dataclass(frozen=True)
class All:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Cond, ...]


Cond = Cmp | All | AnyOf


def parse_operand(raw: Any, loc: tuple[str | int, ...]) -> Operand:
    if not isinstance(raw, dict):
        if isinstance(raw, (bool, int, str, Decimal)):
            return Lit(raw)
        raise ExpressionError(f"not an operand: {raw!r}", loc)
    if len(raw) != 1:
        raise ExpressionError(f"an operand has exactly one key, got {sorted(raw)}", loc)
    ((key, value),) = raw.items()
    if key == "fact":
        return Fact(str(value))
    if key == "param":
        return Param(str(value))
    if key == "mul":
        if not isinstance(value, list) or len(value) < 2:
            raise ExpressionError("mul takes a list of two or more operands", loc + (key,))
        return Mul(tuple(parse_operand(v, loc + (key, i)) for i, v in enumerate(value)))
    if key == "add_months":
        if not isinstance(value, list) or len(value) != 2:
            raise ExpressionError("add_months takes [date, months]", loc + (key,))
        return AddMonths(parse_operand(value[0], loc + (key, 0)), parse_operand(value[1], loc + (key, 1)))
    raise ExpressionError(f"unknown operand {key!r} (fact, param, mul, add_months)", loc)


def parse_condition(
    raw: Any, loc: tuple[str | int, ...] = (), groups: Mapping[str, Mapping[str, list[str]]] | None = None
) -> Cond:
    """A condition tree; `groups` holds each fact's named value lists, for `in: {group: NAME}`."""
    if not isinstance(raw, dict) or not raw:
        raise ExpressionError("a condition is a mapping", loc)
    if set(raw) == {"all"} or set(raw) == {"any"}:
        ((key, items),) = raw.items()
        if not isinstance(items, list) or not items:
            raise ExpressionError(f"{key} takes a non-empty list", loc + (key,))
        parsed = tuple(parse_condition(item, loc + (key, i), groups) for i, item in enumerate(items))
        return All(parsed) if key == "all" else AnyOf(parsed)
    if "fact" not in raw or len(raw) != 2:
        raise ExpressionError("a comparison is {fact: NAME, OP: VALUE} with OP one of " + ", ".join(OPS), loc)
    op = next(k for k in raw if k != "fact")
    if op not in OPS:
        raise ExpressionError(f"unknown comparison {op!r} (one of {', '.join(OPS)})", loc + (op,))
    if op == "in":
        if isinstance(raw[op], dict) and set(raw[op]) == {"group"}:
            fact_groups = (groups or {}).get(str(raw["fact"]), {})
            if raw[op]["group"] not in fact_groups:
                raise ExpressionError(f"fact {raw['fact']} has no group {raw[op]['group']!r} (facts.yaml)", loc + (op,))
            return Cmp(str(raw["fact"]), op, tuple(fact_groups[raw[op]["group"]]))
        if not isinstance(raw[op], list) or not raw[op]:
            raise ExpressionError("in takes a non-empty list of values", loc + (op,))
        return Cmp(str(raw["fact"]), op, tuple(raw[op]))
    return Cmp(str(raw["fact"]), op, parse_operand(raw[op], loc + (op,)))


# Walking ----------------------------------------------------------------------------------------


def leaves(cond: Cond) -> Iterator[Cmp]:
    if isinstance(cond, Cmp):
        yield cond
    else:
        for item in cond.items:
            yield from leaves(item)


def operand_refs(op: Any) -> Iterator[Fact | Param]:
    if isinstance(op, (Fact, Param)):
        yield op
    elif isinstance(op, Mul):
        for a in op.args:
            yield from operand_refs(a)
    elif isinstance(op, AddMonths):
        yield from operand_refs(op.date)
        yield from operand_refs(op.months)


def condition_refs(cond: Cond) -> Iterator[Fact | Param]:
    for leaf in leaves(cond):
        yield Fact(leaf.fact)
        if not isinstance(leaf.rhs, tuple):
            yield from operand_refs(leaf.rhs)


# Evaluation -------------------------------------------------------------------------------------


def yyyymmdd_to_date(value: int) -> dt.date:
    return dt.date(value // 10000, value // 100 % 100, value % 100)


def date_to_yyyymmdd(value: dt.date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


def evaluate_operand(op: Operand, values: Mapping[str, Any], params: Mapping[str, Decimal]) -> Any:
    """The operand's value, or None when a fact or parameter it needs is missing."""
    if isinstance(op, Lit):
        return op.value
    if isinstance(op, Fact):
        return values.get(op.name)
    if isinstance(op, Param):
        return params.get(op.name)
    if isinstance(op, Mul):
        result = Decimal(1)
        for arg in op.args:
            value = evaluate_operand(arg, values, params)
            if value is None:
                return None
            result *= Decimal(value)
        return result
    date = evaluate_operand(op.date, values, params)
    months = evaluate_operand(op.months, values, params)
    if date is None or months is None:
        return None
    return add_months(date, int(months))


def add_months(yyyymmdd: int, months: int) -> int:
    """The date `months` later as yyyymmdd, the day cut to the month's end (31 Jan + 1 = 28/29 Feb),
    as relativedelta does. In integers, not datetime.date: the result may lie past 9999-12-31
    (an assessment dated 9999-12-31 is valid until a year 10000 date), and a comparison with it
    must still come out right; yyyymmdd integers order as dates do for any year."""
    year, month, day = yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100
    year, month0 = divmod(year * 12 + month - 1 + months, 12)
    # The Gregorian calendar repeats every 400 years: month lengths of any year from a year in range.
    last = calendar.monthrange(2000 + year % 400, month0 + 1)[1]
    return year * 10000 + (month0 + 1) * 100 + min(day, last)


def evaluate_leaf(leaf: Cmp, values: Mapping[str, Any], params: Mapping[str, Decimal]) -> bool | None:
    lhs = values.get(leaf.fact)
    rhs = leaf.rhs if isinstance(leaf.rhs, tuple) else evaluate_operand(leaf.rhs, values, params)
    if lhs is None or rhs is None:
        return None
    return OPS[leaf.op][1](lhs, rhs)


def evaluate(
    cond: Cond,
    values: Mapping[str, Any],
    params: Mapping[str, Decimal],
    seen: list[tuple[Cmp, bool | None]] | None = None,
) -> bool | None:
    """Kleene three-valued evaluation; every leaf evaluated is appended to `seen`."""
    if isinstance(cond, Cmp):
        result = evaluate_leaf(cond, values, params)
        if seen is not None:
            seen.append((cond, result))
        return result
    results = [evaluate(item, values, params, seen) for item in cond.items]
    decisive = not isinstance(cond, All)  # False decides an All, True an AnyOf
    if decisive in results:
        return decisive
    if None in results:
        return None
    return not decisive


def open_facts(cond: Cond, values: Mapping[str, Any], params: Mapping[str, Decimal]) -> list[str]:
    """The facts missing from `values` that leave the condition unknown: those of the unknown parts
    of an unknown condition (a part already decided, true in an `any`, false in an `all`, is
    not one of them). Empty when the condition is decided."""
    if evaluate(cond, values, params) is not None:
        return []
    if isinstance(cond, Cmp):
        names = [cond.fact]
        if not isinstance(cond.rhs, tuple):
            names += [r.name for r in operand_refs(cond.rhs) if isinstance(r, Fact)]
        return [n for n in dict.fromkeys(names) if values.get(n) is None]
    found: list[str] = []
    for item in cond.items:
        found += [n for n in open_facts(item, values, params) if n not in found]
    return found
