"""Caveats: what a reply must say about the figures a decision rests on.

A value whose confidence is not `confirmed`, a value used after the last date a source states it
for (carried forward), and a value with a note (e.g. a plan's provincial average) each give a
bilingual caveat naming the parameter, the value, where and since when it applies. Everything
comes from the parameter files; the texts are generic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from ..policy.policyset import ParamValue, PolicySet
from .memo import Memo

CONFIRMED = "confirmed"
_UNCONFIRMED = {
    "secondary": (
        "仅见于二手资料（{source}），有待核实",
        "is known only from a secondary source ({source}); to be confirmed",
    ),
    "inferred": (
        "系根据资料推定（{source}），原文未直接规定，有待核实",
        "is inferred from the sources ({source}), not stated by them; to be confirmed",
    ),
    "reference": (
        "为本项目参考值，待政策主管部门确认",
        "is this project's reference value, to be confirmed by the policy owner",
    ),
}
CACHE_SIZE = 2_000


@dataclass(frozen=True)
class Caveat:
    kind: str  # unconfirmed_value, carried_forward, value_note
    subject: str  # the parameter
    text_zh: str
    text_en: str


def _number(value: Decimal) -> str:
    return f"{value.normalize():,f}"


class CaveatWriter:
    def __init__(self, policy: PolicySet):
        self.policy = policy
        self._memo = Memo(CACHE_SIZE)  # (region, date, parameters used) -> caveats
        by_source = policy.manifest.confidence_by_source
        self._confidence = {
            (pid, code, row.from_): row.confidence or by_source[row.source]
            for pid, param in policy.parameters.items()
            for code, rows in param.file.values.items()
            for row in rows
        }

    def confidence(self, value: ParamValue) -> str:
        """The value's confidence: as its file states it, or derived from its source."""
        return self._confidence[(value.parameter, value.region, value.effective_from)]

    def for_decision(
        self, region_code: str, on: dt.date, values: Mapping[str, ParamValue], used: Iterable[str]
    ) -> tuple[Caveat, ...]:
        """The caveats of the parameters used, for a region and date (`values`: those in force)."""
        key = (region_code, on, frozenset(used))
        found = self._memo.get(key)
        if found is None:
            # In the order of the parameters in the receipt.
            found = self._memo.put(
                key, tuple(c for pid, v in values.items() if pid in key[2] for c in self._caveats(v, on))
            )
        return found

    def _caveats(self, value: ParamValue, on: dt.date) -> list[Caveat]:
        param = self.policy.parameters[value.parameter]
        row = param.row(value)
        desc = param.file.description
        what_zh = (
            f"{desc.zh}（{value.parameter}）{_number(value.written)}"
            f"（地区 {value.region}，自 {value.effective_from} 起）"
        )
        what_en = (
            f"{value.parameter} ({desc.en}) {_number(value.written)} "
            f"(region {value.region}, from {value.effective_from})"
        )
        out: list[Caveat] = []
        confidence = self.confidence(value)
        if confidence != CONFIRMED:
            zh, en = _UNCONFIRMED[confidence]
            out.append(
                Caveat(
                    "unconfirmed_value",
                    value.parameter,
                    f"{what_zh}{zh.format(source=row.source)}。",
                    f"{what_en} {en.format(source=row.source)}.",
                )
            )
        if row.stated_until is not None and on > row.stated_until:
            since = row.stated_until + dt.timedelta(days=1)
            out.append(
                Caveat(
                    "carried_forward",
                    value.parameter,
                    f"{what_zh}自 {since} 起沿用：资料给出的数值止于 {row.stated_until}，"
                    f"评估日 {on} 仍按此值计算，待核实当期标准。",
                    f"{what_en} is carried forward since {since}: no source states a value after "
                    f"{row.stated_until}, and it is used unchanged on {on}; to be confirmed.",
                )
            )
        if row.note is not None:
            out.append(Caveat("value_note", value.parameter, f"{what_zh}：{row.note.zh}", f"{what_en}: {row.note.en}"))
        return out
