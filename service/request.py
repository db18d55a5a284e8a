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
_REGION = re.compile(r"[0-9]{6}")  # ASCII only: \d also matches full-width digits
MAX_DISABILITY_GRADE = 4
# Bounded work for any request: repeated fields are counted before anything else is looked at,
# and an error lists at most MAX_FIELD_ERRORS fields within MAX_ERROR_BYTES (then a count of the
# rest), so that its details (base64 in the trailers) stay well under gRPC's 8 KiB of metadata.
MAX_REPEATED = 64
MAX_FIELD_ERRORS = 20
MAX_ERROR_BYTES = 3072
MAX_FIELD_NAME = 80
MAX_DESCRIPTION = 200


class InvalidRequest(ValueError):
    """The request has bad fields; `violations` lists (field, description) for the first ones, and
    a last ("request", ...) entry counting the rest; `count` is how many there were in all."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.count = len(violations)
        shown: list[tuple[str, str]] = []
        size = 0
        for f, d in violations[:MAX_FIELD_ERRORS]:
            f, d = f[:MAX_FIELD_NAME], d[:MAX_DESCRIPTION]
            size += len(f.encode()) + len(d.encode()) + 8  # and the protobuf tags and lengths
            if size > MAX_ERROR_BYTES:
                break
            shown.append((f, d))
        if len(shown) < self.count:
            shown.append(("request", f"{self.count - len(shown)} more invalid field(s) not listed"))
        super().__init__("; ".join(f"{f}: {d}" for f, d in shown))
        self.violations = shown


def check_repeated(message: Message, fields: tuple[str, ...], prefix: str = "") -> None:
    """Refuses, before any other work, a repeated field with more than MAX_REPEATED entries."""
    bad = [
        (prefix + name, f"has {len(getattr(message, name))} entries; at most {MAX_REPEATED}")
        for name in fields
        if len(getattr(message, name)) > MAX_REPEATED
    ]
    if bad:
        raise InvalidRequest(bad)


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


def resolve_region(
    code: str, policy: PolicySet, field: str, bad: list[tuple[str, str]], on: dt.date | None
) -> ResolvedRegion | None:
    """The region on the date; an unknown code is a bad field even when the date is bad too."""
    if not _REGION.fullmatch(code):
        bad.append((field, f"must be a GB/T 2260 region code of six ASCII digits, got {code[:20]!r}"))
        return None
    try:
        # Which code applies depends on the date; that the code exists does not.
        return policy.regions.resolve(code, on or policy.manifest.period.effective_from)
    except RegionError as exc:
        bad.append((field, str(exc)))
        return None


def age_on(born: dt.date, on: dt.date) -> int:
    # Completed years: a 29 February birthday is reached on 1 March in common years.
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def to_case(request: pb.EvaluateRequest, policy: PolicySet, now: dt.date | None = None) -> Case:
    """The case to decide; `now` is today's date where the caller has already read it."""
    check_repeated(request, ("programs",))
    check_repeated(request.person, ("other_benefits",), "person.")
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

    region = resolve_region(person.region_code, policy, "person.region_code", bad, on) if person.region_code else None
    if not person.region_code:
        bad.append(("person.region_code", "is required"))

    facts: dict[str, Any] = {}
    for fact in ("household_status", "self_care", "child_status", "education_level"):
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
