"""The schema of every policy file, as pydantic models (validated at load, errors name file and line)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RegionCode = str  # six digits, checked by the loader
SOURCES = ("plan", "national", "zj", "reference")
Source = Literal["plan", "national", "zj", "reference"]
# How sure the project is of a figure or a rule: a primary document (plan, national), a secondary
# source (zj), a reading inferred from one, or this project's reference choice.
Confidence = Literal["confirmed", "secondary", "inferred", "reference"]
CONFIDENCE_BY_SOURCE: dict[Source, Confidence] = {
    "plan": "confirmed",
    "national": "confirmed",
    "zj": "secondary",
    "reference": "reference",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Period(_Strict):
    effective_from: dt.date
    effective_until: dt.date


class PolicyPeriod(Period):
    # From this date every parameter is in force for every region (checked at load); before it a
    # program decides only where the parameters it reads have a value. Default: effective_from.
    complete_from: dt.date | None = None


class Manifest(_Strict):
    name: str
    jurisdiction: RegionCode
    period: PolicyPeriod
    timezone: str
    sources: dict[Source, str]
    # The confidence of a value or rule whose file does not state one, from its source.
    confidence_by_source: dict[Source, Confidence] = CONFIDENCE_BY_SOURCE


class Fact(_Strict):
    type: Literal["integer", "boolean", "enum", "money", "date"]
    label: Text
    unit: str | None = None
    # For an enum: each value with its labels, as shown in reasons.
    values: dict[str, Text] | None = None
    # What an unstated fact is taken to be. A decision that rests on it lists it as an assumption.
    default: Any = None
    # Named lists of enum values that rules test with `in: {group: NAME}` (one place for a list
    # that several rules share).
    groups: dict[str, list[str]] = {}
    # The fact is not asked of the caller: it is the value of a `switch` parameter for the region
    # and date (true when the value is not 0).
    from_parameter: str | None = None


class FactsFile(_Strict):
    facts: dict[str, Fact]


class Region(_Strict):
    zh: str
    en: str


class ProvinceRegion(Region):
    code: RegionCode


DateConfidence = Literal["confirmed", "secondary", "inferred"]


class County(Region):
    # A division created from part of another: its first day, and the division the area belonged
    # to before (a code used earlier resolves there).
    from_: dt.date | None = Field(default=None, alias="from")
    part_of_before: RegionCode | None = None
    confidence: DateConfidence | None = None
    basis: str | None = None


class Alias(_Strict):
    to: RegionCode
    since: dt.date
    kind: Literal["renamed", "merged"]
    confidence: DateConfidence
    basis: str


class Coverage(_Strict):
    from_: dt.date = Field(alias="from")
    until: dt.date


class RegionsFile(_Strict):
    province: ProvinceRegion
    covers: Coverage
    other_provinces: dict[str, Region]
    cities: dict[RegionCode, Region]
    counties: dict[RegionCode, County]
    aliases: dict[RegionCode, Alias] = {}


class DatedValue(_Strict):
    from_: dt.date = Field(alias="from")
    value: Decimal
    source: Source
    # Absent: derived from the source (policy.yaml `confidence_by_source`).
    confidence: Confidence | None = None
    # The last date a source states this value for; used on a later date it is carried forward,
    # and the reply says so (a caveat). Absent: the value holds until the next one.
    stated_until: dt.date | None = None
    # What a reader of the receipt must know about the value (e.g. a plan's provincial average).
    note: Text | None = None


class ParameterFile(_Strict):
    description: Text
    unit: Literal["yuan_per_month", "ratio", "years", "months", "switch"]
    values: dict[RegionCode, list[DatedValue]]

    @field_validator("values")
    @classmethod
    def _dated_in_order(cls, values: dict[str, list[DatedValue]]) -> dict[str, list[DatedValue]]:
        for region, rows in values.items():
            dates = [r.from_ for r in rows]
            if not rows or dates != sorted(set(dates)):
                raise ValueError(f"region {region}: dated values must be non-empty, in order, without repeats")
        return values

    # Who sets the value: `county` (each county its own, e.g. the dibao standard), so a value read
    # from the city or the province for a county stands in for an unknown one and the reply says
    # so (a region_fallback caveat); `province` (one value for all, the default).
    set_by: Literal["province", "county"] = "province"


class Cited(_Strict):
    """A rule's authority: the citation in English and Chinese, and how sure the project is of it."""

    confidence: Confidence
    citation_zh: str = Field(min_length=3)
    citation: str = Field(min_length=3)


class Rule(Cited):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")
    text: Text
    when: dict[str, Any]


class Route(Rule):
    amount: dict[str, Any]


class Adjustment(Rule):
    multiply: dict[str, Any]


class ProgramFile(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: Text
    citation: str
    # The dates its sources support; absent: the policy's period. Outside it the program is not
    # decided (asked for by name: OUT_OF_RANGE).
    period: Period | None = None
    rounding: Literal["yuan_half_up"]
    conditions: list[Rule] = Field(min_length=1)
    exclusions: list[Rule] = []
    routes: list[Route] = Field(min_length=1)
    adjustments: list[Adjustment] = []


class ExclusionInteraction(Cited):
    id: str
    text: Text
    program: str
    routes: list[str]
    excludes: str


class Combination(Cited):
    id: str
    text: Text
    programs: list[str] = Field(min_length=2, max_length=2)
    mode: Literal["take_higher", "both"]


class InteractionsFile(_Strict):
    exclusions: list[ExclusionInteraction] = []
    combinations: list[Combination] = []
    referrals: list[Rule] = []
