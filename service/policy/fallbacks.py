"""Region fallbacks: a value that each county sets (`set_by: county`), read for a person from the
city or the province because the county's own is not known, is a stand-in, and the reply says so."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .model import Text
from .policyset import ParamValue, PolicySet, ResolvedRegion

REGION_FALLBACK = "region_fallback"
_UNITS = {"yuan_per_month": ("元/月", " yuan a month")}  # (zh, en) after the amount


@dataclass(frozen=True)
class Caveat:
    kind: str
    subject: str  # the parameter (or rule) it is about
    text: Text


def region_fallbacks(
    policy: PolicySet, region: ResolvedRegion, on: dt.date, values: dict[str, ParamValue]
) -> list[Caveat]:
    """A caveat for each county-set parameter whose value came from above the person's county."""
    found = []
    for pid, value in values.items():
        if policy.parameters[pid].file.set_by != "county":
            continue
        if region.level == "county" and value.region == region.code:
            continue
        found.append(Caveat(REGION_FALLBACK, pid, _text(policy, region, on, value)))
    return found


def _text(policy: PolicySet, region: ResolvedRegion, on: dt.date, value: ParamValue) -> Text:
    regions = policy.regions
    what = policy.parameters[value.parameter].file.description
    used = regions.name_of(value.region)
    unit_zh, unit_en = _UNITS.get(value.unit, ("", ""))
    amount = f"{value.written.normalize():f}"
    name = regions.name_of(region.code)
    if region.level == "county":
        lacking = region.chain[: region.chain.index(value.region)]
        names = [(regions.name_of(c), c) for c in lacking]
        why_en = f"No {what.en.lower()} is known for " + " or ".join(f"{n.en} ({c})" for n, c in names) + f" on {on}"
        why_zh = (
            "、".join(f"{n.zh}（{c}）" for n, c in names) + f"在{on}{'均' if len(names) > 1 else ''}无已知的{what.zh}"
        )
    else:
        why_en = f"{name.en} ({region.code}) is not a county, and each county sets its own {what.en.lower()}"
        why_zh = f"{name.zh}（{region.code}）不是县级区划，{what.zh}由各县（市、区）确定"
    return Text(
        en=f"{why_en}; the value for {used.en} ({value.region}) is used instead: {amount}{unit_en}.",
        zh=f"{why_zh}；改用{used.zh}（{value.region}）的数值：{amount}{unit_zh}。",
    )
