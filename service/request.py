"""Requests in, facts out: validation of everything a caller sends, with every bad field at once.

The fact names and enum value names are the policy vocabulary (policies/facts.yaml); enum values
map by name (HOUSEHOLD_STATUS_DIBAO_EDGE -> dibao_edge) so that nothing here restates policy.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from . import idnumber
from .api import eligibility_pb2 as pb
from .policy.policyset import PolicySet, RegionError, ResolvedRegion

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REGION = re.compile(r"^\d{6}$")
MAX_DISABILITY_GRADE = 4


class InvalidRequest(ValueError):
    """The request has bad fields; `violations` lists (field, description) for each."""

    def __init__(self, violations: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations


@dataclass(frozen=True)
class Case:
    facts: dict[str, Any]
    region: ResolvedRegion
    on: dt.date
    programs: tuple[str, ...]


def enum_value(message: Message, field: str) -> str | None:
    """An enum field as its policy name, None when unspecified; raises on an unknown number."""
    number = getattr(message, field)
    names = _field_names(message.DESCRIPTOR, field)
    if number not in names:
        raise ValueError(f"unknown value {number}")
    return names[number]


@functools.cache
def _field_names(message_type: Descriptor, field: str) -> dict[int, str | None]:
    """An enum field's numbers to policy names (HOUSEHOLD_STATUS_DIBAO_EDGE -> dibao_edge), 0 to None."""
    enum = message_type.fields_by_name[field].enum_type
    if enum is None:
        raise TypeError(f"{message_type.full_name}.{field} is not an enum field")
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return {v.number: v.name.removeprefix(prefix).lower() if v.number else None for v in enum.values}


def today(policy: PolicySet) -> dt.date:
    return dt.datetime.now(ZoneInfo(policy.manifest.timezone)).date()


def parse_date(text: str, field: str, bad: list[tuple[str, str]]) -> dt.date | None:
    if not _DATE.match(text):
        bad.append((field, "must be a date YYYY-MM-DD"))
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        bad.append((field, "is not a real date"))
        return None


def parse_evaluation_date(text: str, policy: PolicySet, field: str, bad: list[tuple[str, str]]) -> dt.date | None:
    return today(policy) if not text else parse_date(text, field, bad)


def resolve_region(code: str, policy: PolicySet, field: str, bad: list[tuple[str, str]]) -> ResolvedRegion | None:
    if not _REGION.match(code):
        bad.append((field, f"must be a six-digit GB/T 2260 region code, got {code[:20]!r}"))
        return None
    try:
        return policy.regions.resolve(code)
    except RegionError as exc:
        bad.append((field, str(exc)))
        return None


def age_on(born: dt.date, on: dt.date) -> int:
    # Completed years: a 29 February birthday is reached on 1 March in common years.
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def to_case(request: pb.EvaluateRequest, policy: PolicySet, now: dt.date | None = None) -> Case:
    """The case to decide; `now` is today's date where the caller has already read it."""
    bad: list[tuple[str, str]] = []
    person = request.person
    now = now or today(policy)
    on = parse_date(request.as_of, "as_of", bad) if request.as_of else now

    programs = tuple(request.programs)
    for i, pid in enumerate(programs):
        if pid not in policy.programs:
            bad.append((f"programs[{i}]", f"unknown program {pid[:40]!r}; known: {', '.join(policy.programs)}"))
        elif programs.index(pid) != i:
            bad.append((f"programs[{i}]", f"program {pid} is listed twice"))

    if not request.HasField("person"):
        bad.append(("person", "is required"))
    id_problems = idnumber.problems(person.id_number) if person.id_number else ["is required"]
    bad += [("person.id_number", p) for p in id_problems]
    born = parse_date(person.birth_date, "person.birth_date", bad) if person.birth_date else None
    if not person.birth_date:
        bad.append(("person.birth_date", "is required"))
    if born and not id_problems and idnumber.birth_date(person.id_number.strip().upper()) != born:
        bad.append(("person.birth_date", "does not agree with the birth date in the ID number"))
    if born and born > now:
        bad.append(("person.birth_date", "is in the future"))
    if born and on and born > on:
        bad.append(("person.birth_date", "is after the evaluation date"))

    region = resolve_region(person.region_code, policy, "person.region_code", bad) if person.region_code else None
    if not person.region_code:
        bad.append(("person.region_code", "is required"))

    facts: dict[str, Any] = {}
    for fact in ("household_status", "self_care", "child_status"):
        try:
            facts[fact] = enum_value(person, fact)
        except ValueError as exc:
            bad.append((f"person.{fact}", str(exc)))
    for name in ("household_income_per_head_fen", "own_income_fen"):
        if person.HasField(name):
            value = getattr(person, name)
            if value < 0:
                bad.append((f"person.{name}", "must not be negative"))
            facts[name.removesuffix("_fen")] = value
    for name in (
        "long_term_care_need",
        "in_institutional_care",
        "in_full_time_education",
        "serious_illness",
        "depends_on_family_support",
    ):
        if person.HasField(name):
            facts[name] = getattr(person, name)

    if person.HasField("disability") and person.disability.grade != 0:
        grade = person.disability.grade
        if not 1 <= grade <= MAX_DISABILITY_GRADE:
            bad.append(("person.disability.grade", f"must be 1 to {MAX_DISABILITY_GRADE}, or 0 for no certificate"))
        facts.update(has_disability_certificate=True, disability_grade=grade)
        try:
            facts["disability_category"] = enum_value(person.disability, "category")
        except ValueError as exc:
            bad.append(("person.disability.category", str(exc)))
    else:
        facts["has_disability_certificate"] = False
        if person.disability.category:
            bad.append(("person.disability.grade", "a disability category needs a grade 1 to 4"))

    if person.HasField("capacity_assessment"):
        assessment = person.capacity_assessment
        try:
            facts["capacity_level"] = enum_value(assessment, "level")
        except ValueError as exc:
            bad.append(("person.capacity_assessment.level", str(exc)))
        if not assessment.level:
            bad.append(("person.capacity_assessment.level", "is required with an assessment"))
        if assessment.assessed_on:
            assessed = parse_date(assessment.assessed_on, "person.capacity_assessment.assessed_on", bad)
            if assessed:
                facts["capacity_assessed_on"] = assessed.year * 10000 + assessed.month * 100 + assessed.day
        else:
            bad.append(("person.capacity_assessment.assessed_on", "is required with an assessment"))

    for i, benefit in enumerate(person.other_benefits):
        benefit_name = pb.Benefit.Name(benefit) if benefit in pb.Benefit.values() else None
        if not benefit_name or benefit == pb.BENEFIT_UNSPECIFIED:
            bad.append((f"person.other_benefits[{i}]", f"unknown benefit {benefit}"))
        else:
            facts[benefit_name.removeprefix("BENEFIT_").lower()] = True

    if bad:
        raise InvalidRequest(bad)
    assert on is not None and region is not None and born is not None
    facts["age_years"] = age_on(born, on)
    return Case(facts, region, on, programs)
