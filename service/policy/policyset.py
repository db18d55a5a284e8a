"""A loaded, checked policy set: programs as rules over facts and parameters, regions, version."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .expressions import Cond, Operand
from .model import Alias, DatedValue, Fact, Manifest, ParameterFile, Period, Region, Text

MONEY_UNITS = {"yuan_per_month": Decimal(100)}  # money is held in fen


class RegionError(LookupError):
    """The region code is unknown."""


class ParameterNotInForce(LookupError):
    """No value of a parameter is in force for a region on a date."""


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str  # condition, exclusion, route, adjustment, referral
    program: str | None
    text: Text
    citation: str
    when: Cond
    amount: Operand | None = None
    multiply: Operand | None = None
    citation_zh: str = ""
    confidence: str = ""


@dataclass(frozen=True)
class Program:
    id: str
    name: Text
    citation: str
    rounding: str
    conditions: tuple[Rule, ...]
    exclusions: tuple[Rule, ...]
    routes: tuple[Rule, ...]
    adjustments: tuple[Rule, ...]
    period: Period | None = None  # None: the policy's period

    @functools.cached_property
    def rules(self) -> tuple[Rule, ...]:
        return self.conditions + self.exclusions + self.routes + self.adjustments


@dataclass(frozen=True)
class ResolvedRegion:
    code: str
    chain: tuple[str, ...]  # the code itself, then its city, then the province
    level: str
    name: Region
    in_zhejiang: bool


@dataclass(frozen=True)
class ParamValue:
    parameter: str
    value: Decimal  # in fen for money, as written otherwise
    written: Decimal  # the value as written in the policy file
    unit: str
    region: str
    effective_from: dt.date
    source: str


@dataclass(frozen=True)
class Division:
    """A county-level division and the days its code is in use (None: beyond the list's ends)."""

    code: str
    name: Region
    valid_from: dt.date | None
    valid_until: dt.date | None
    before: str | None  # the code the area had before valid_from (set when valid_from is)


@dataclass
class Regions:
    province_code: str
    province: Region
    cities: dict[str, Region]
    divisions: dict[str, Division]
    aliases: dict[str, Alias]
    other_provinces: dict[str, Region] = field(default_factory=dict)

    def all_codes(self) -> list[str]:
        return [self.province_code, *self.cities, *self.divisions]

    def name_of(self, code: str) -> Region:
        if code == self.province_code:
            return self.province
        return self.cities.get(code) or self.divisions[code].name

    def resolve(self, code: str, on: dt.date) -> ResolvedRegion:
        """The region a registration code stands for on a date: a replaced code resolves to its
        successor from the change on, a new code before it to the code the area then had."""
        if code[:2] != self.province_code[:2]:
            other = self.other_provinces.get(code[:2])
            if other is None:
                raise RegionError(f"unknown region code {code}: {code[:2]} is not a province of China (GB/T 2260)")
            name = Region(zh=f"{other.zh}（浙江省外）", en=f"{other.en} (outside Zhejiang)")
            return ResolvedRegion(code, (), "outside", name, False)
        if code == self.province_code:
            return ResolvedRegion(code, (code,), "province", self.province, True)
        city = code[:4] + "00"
        if city not in self.cities:
            raise RegionError(f"unknown region code {code}: no such city in {self.province.en}")
        chain_tail = (city, self.province_code)
        if code == city:
            return ResolvedRegion(code, chain_tail, "city", self.cities[city], True)
        division = self.divisions.get(code)
        if division is None:
            raise RegionError(
                f"unknown region code {code}: not a county-level division of {self.cities[city].en} ({city})"
            )
        division = self._in_use(division, on)
        city = division.code[:4] + "00"
        return ResolvedRegion(division.code, (division.code, city, self.province_code), "county", division.name, True)

    def _in_use(self, division: Division, on: dt.date) -> Division:
        for _ in range(len(self.divisions)):  # bounded: the loader refuses changes that form a cycle
            if division.valid_until is not None and on > division.valid_until:
                division = self.divisions[self.aliases[division.code].to]
            elif division.valid_from is not None and on < division.valid_from and division.before:
                division = self.divisions[division.before]
            else:
                return division
        raise RegionError(f"region code {division.code}: the code changes form a cycle")


@dataclass
class Parameter:
    id: str
    file: ParameterFile

    def resolve(self, region: ResolvedRegion, on: dt.date) -> ParamValue:
        for code in region.chain:
            rows = self.file.values.get(code)
            if not rows:
                continue
            in_force = [r for r in rows if r.from_ <= on]
            if in_force:
                row = in_force[-1]
                scale = MONEY_UNITS.get(self.file.unit, Decimal(1))
                return ParamValue(self.id, row.value * scale, row.value, self.file.unit, code, row.from_, row.source)
        raise ParameterNotInForce(f"parameter {self.id} has no value in force for region {region.code} on {on}")

    def row(self, value: ParamValue) -> DatedValue:
        """The dated value as written in the file that a resolved value was read from."""
        return next(r for r in self.file.values[value.region] if r.from_ == value.effective_from)


@dataclass
class PolicySet:
    version: str
    manifest: Manifest
    facts: dict[str, Fact]
    regions: Regions
    parameters: dict[str, Parameter]
    programs: dict[str, Program]
    referrals: tuple[Rule, ...]
    exclusions: tuple[Any, ...]  # model.ExclusionInteraction
    combinations: tuple[Any, ...]  # model.Combination
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[Rule, ...]:
        out: tuple[Rule, ...] = ()
        for program in self.programs.values():
            out += program.rules
        return out + self.referrals

    def resolve_parameters(self, region: ResolvedRegion, on: dt.date) -> dict[str, ParamValue]:
        """Every parameter in force for the region on the date (none outside Zhejiang)."""
        if not region.in_zhejiang:
            return {}
        return {pid: p.resolve(region, on) for pid, p in self.parameters.items()}
