"""What a decision reads from its region and date, resolved in Python once per distinct pair.

A population has few distinct (region, date) pairs (about a hundred regions, a few dates), so the
parameters, the facts that are functions of region and date (`evaluation_date`, `in_zhejiang`, the
switch facts read from a parameter) and the refusal a pair causes (a parameter not in force) are
computed here with the online engine's own code, and every row picks them up by its key's index.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...policy.expressions import date_to_yyyymmdd
from ...policy.loader import rule_parameters
from ...policy.model import Period
from ...policy.policyset import ParameterNotInForce, PolicySet, ResolvedRegion
from ..decide import OutsidePolicyPeriod
from .persons import error_text


def in_force(policy: PolicySet, on: dt.date) -> list[str]:
    """The programs whose period covers the date (decide.Engine.in_force), in the policy's order."""

    def period(pid: str) -> Period:
        return policy.programs[pid].period or policy.manifest.period

    return [pid for pid in policy.programs if period(pid).effective_from <= on <= period(pid).effective_until]


def outside_period(policy: PolicySet, on: dt.date) -> str | None:
    """The OUT_OF_RANGE refusal of a date outside the policy period, as the service words it."""
    period = policy.manifest.period
    if period.effective_from <= on <= period.effective_until:
        return None
    return error_text(
        OutsidePolicyPeriod(f"{on} is outside the policy period {period.effective_from} to {period.effective_until}")
    )


@dataclass(frozen=True)
class Key:
    """One region on one date: the parameters in force, the facts they fix, and any refusal."""

    region: ResolvedRegion
    on: dt.date
    params: dict[str, Decimal]
    facts: dict[str, Any]  # evaluation_date, in_zhejiang, facts read from switch parameters
    error: str | None  # FAILED_PRECONDITION when a program decided lacks a parameter


class KeyTable:
    """The distinct (resolved region, date) pairs of a run, each with an index rows refer to."""

    def __init__(self, policy: PolicySet):
        self.policy = policy
        self.keys: list[Key] = []
        self._index: dict[tuple[str, dt.date], int] = {}
        self._program_params = {pid: sorted(rule_parameters(p.rules, policy)) for pid, p in policy.programs.items()}
        self._from_parameters = {n: str(f.from_parameter) for n, f in policy.facts.items() if f.from_parameter}

    def index(self, region: ResolvedRegion, on: dt.date) -> int:
        key = (region.code, on)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.keys)
            self.keys.append(self._key(region, on))
        return found

    def _key(self, region: ResolvedRegion, on: dt.date) -> Key:
        params: dict[str, Decimal] = {}
        if region.in_zhejiang:  # decide.Engine.parameters_in_force
            for pid, param in self.policy.parameters.items():
                try:
                    params[pid] = param.resolve(region, on).value
                except ParameterNotInForce:
                    continue
        facts: dict[str, Any] = {"evaluation_date": date_to_yyyymmdd(on), "in_zhejiang": region.in_zhejiang}
        for fact, switch in self._from_parameters.items():
            if switch in params:
                facts[fact] = params[switch] != 0
        error = None
        if region.in_zhejiang:  # decide.Engine._require over every program in force (all are decided)
            for pid in in_force(self.policy, on):
                missing = [name for name in self._program_params[pid] if name not in params]
                if missing:
                    error = error_text(
                        ParameterNotInForce(
                            f"parameter {missing[0]} has no value in force for region {region.code} on {on}"
                        )
                    )
                    break
        return Key(region, on, params, facts, error)
