"""The backend-neutral form of conditions and amounts: small expression trees.

Conditions compare a person fact with a literal or an operand; operands are facts, parameters,
literals, products and date shifts. The durable-rules backend and the explanation evaluator here
both work from these trees. Evaluation is three-valued: a missing fact gives None (unknown),
`all` is false if any part is false, `any` true if any part is true (Kleene logic).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta

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


def parse_condition(raw: Any, loc: tuple[str | int, ...] = ()) -> Cond:
    if not isinstance(raw, dict) or not raw:
        raise ExpressionError("a condition is a mapping", loc)
    if set(raw) == {"all"} or set(raw) == {"any"}:
        ((key, items),) = raw.items()
        if not isinstance(items, list) or not items:
            raise ExpressionError(f"{key} takes a non-empty list", loc + (key,))
        parsed = tuple(parse_condition(item, loc + (key, i)) for i, item in enumerate(items))
        return All(parsed) if key == "all" else AnyOf(parsed)
    if "fact" not in raw or len(raw) != 2:
        raise ExpressionError("a comparison is {fact: NAME, OP: VALUE} with OP one of " + ", ".join(OPS), loc)
    op = next(k for k in raw if k != "fact")
    if op not in OPS:
        raise ExpressionError(f"unknown comparison {op!r} (one of {', '.join(OPS)})", loc + (op,))
    if op == "in":
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
    return date_to_yyyymmdd(yyyymmdd_to_date(date) + relativedelta(months=int(months)))


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
