"""Reason texts filled with the actual numbers, in Chinese and English."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..policy.expressions import OPS, AddMonths, Cmp, Fact, Lit, Mul, Operand, Param, evaluate_operand, operand_refs
from ..policy.policyset import PolicySet

UNKNOWN = {"zh": "未提供", "en": "not stated"}
MARK = {True: "✓", False: "✗", None: "?"}
BOOL = {"zh": {True: "是", False: "否"}, "en": {True: "yes", False: "no"}}


def yuan(fen: Decimal | int) -> str:
    value = Decimal(fen) / 100
    text = f"{value:,.2f}"
    return text[:-3] if text.endswith(".00") else text


def _date(value: int) -> str:
    return f"{value // 10000:04d}-{value // 100 % 100:02d}-{value % 100:02d}"


class Renderer:
    def __init__(self, policy: PolicySet):
        self.policy = policy

    def _is_money(self, op: Operand) -> bool:
        for ref in operand_refs(op):
            if isinstance(ref, Param) and self.policy.parameters[ref.name].file.unit == "yuan_per_month":
                return True
            if isinstance(ref, Fact) and self.policy.facts[ref.name].type == "money":
                return True
        return False

    def _fmt(self, value: Any, kind: str, lang: str, enum: dict[Any, Any] | None = None) -> str:
        if value is None:
            return UNKNOWN[lang]
        if enum and value in enum:
            return str(getattr(enum[value], lang))
        if isinstance(value, bool):
            return BOOL[lang][value]
        if kind == "money":
            return yuan(value)
        if kind == "date":
            return _date(int(value))
        if isinstance(value, Decimal):
            return f"{value.normalize():f}"
        return str(value)

    def _kind(self, op: Operand) -> str:
        if isinstance(op, Fact):
            return self.policy.facts[op.name].type
        if isinstance(op, AddMonths):
            return "date"
        return "money" if self._is_money(op) else "number"

    def operand(self, op: Operand, values: Mapping[str, Any], params: Mapping[str, Any], lang: str) -> str:
        if isinstance(op, Lit):
            return self._fmt(op.value, "number", lang)
        value = evaluate_operand(op, values, params)
        shown = self._fmt(value, self._kind(op), lang)
        if isinstance(op, Fact):
            return f"{getattr(self.policy.facts[op.name].label, lang)} {shown}"
        if isinstance(op, Param):
            return f"{op.name} {shown}"
        if isinstance(op, Mul):
            return " × ".join(self.operand(a, values, params, lang) for a in op.args) + f" = {shown}"
        word = {"zh": "个月后", "en": "months after"}[lang]
        months = self.operand(op.months, values, params, lang)
        return f"({months} {word} {self.operand(op.date, values, params, lang)}) = {shown}"

    def leaf(
        self, leaf: Cmp, result: bool | None, values: Mapping[str, Any], params: Mapping[str, Any], lang: str
    ) -> str:
        fact = self.policy.facts[leaf.fact]
        lhs = f"{getattr(fact.label, lang)} {self._fmt(values.get(leaf.fact), fact.type, lang, fact.values)}"
        if isinstance(leaf.rhs, tuple):
            rhs = "{" + ", ".join(self._fmt(v, fact.type, lang, fact.values) for v in leaf.rhs) + "}"
        elif isinstance(leaf.rhs, Lit):
            rhs = self._fmt(leaf.rhs.value, fact.type, lang, fact.values)
        else:
            rhs = self.operand(leaf.rhs, values, params, lang)
        return f"{MARK[result]} {lhs} {OPS[leaf.op][0]} {rhs}"
