"""A loaded, checked policy set: programs as rules over facts and parameters, regions, version."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .expressions import Cond, Operand
from .model import Alias, Fact, Manifest, ParameterFile, Region, Text

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


@dataclass
class Regions:
    province_code: str
    province: Region
    cities: dict[str, Region]
    counties: dict[str, Region]
    aliases: dict[str, Alias]

    def all_codes(self) -> list[str]:
        return [self.province_code, *self.cities, *self.counties]

    def resolve(self, code: str) -> ResolvedRegion:
        alias = self.aliases.get(code)
        if alias is not None:
            code = alias.to
        province_prefix = self.province_code[:2]
        if code[:2] != province_prefix:
            return ResolvedRegion(code, (), "outside", Region(zh="浙江省外", en="outside Zhejiang"), False)
        if code == self.province_code:
            return ResolvedRegion(code, (code,), "province", self.province, True)
        city = code[:4] + "00"
        if city not in self.cities:
            raise RegionError(f"unknown region code {code}: no such city in {self.province.en}")
        chain_tail = (city, self.province_code)
        if code == city:
            return ResolvedRegion(code, chain_tail, "city", self.cities[city], True)
        if code in self.counties:
            return ResolvedRegion(code, (code, *chain_tail), "county", self.counties[code], True)
        # A county not listed has no values of its own: it is decided at its city's values.
        return ResolvedRegion(code, (code, *chain_tail), "county", self.cities[city], True)


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
