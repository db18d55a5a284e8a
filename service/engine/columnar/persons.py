"""Person rows (service/engine/columnar/schema.py) to and from EvaluateRequests.

The online reference decides a row by building the request a caller would send for that person;
the differential tests turn generated requests into rows. The two directions are inverses for every
request whose ID number is the synthetic one for its birth date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from google.protobuf.descriptor import EnumDescriptor

from ... import idnumber
from ...api import eligibility_pb2 as pb
from ...errors import to_status
from .schema import PERSON_SCHEMA

# Fields of pb.Person held as plain values in a row (the others are nested or repeated below).
_SCALARS = (
    "household_income_per_head_fen",
    "own_income_fen",
    "long_term_care_need",
    "in_institutional_care",
    "in_full_time_education",
    "serious_illness",
    "depends_on_family_support",
)
_ENUMS = ("household_status", "self_care", "child_status", "education_level")
_BENEFIT = "BENEFIT_"


class UnrepresentableRow(ValueError):
    """A row value that no request can carry (an enum value the service does not know)."""


def error_text(exc: Exception) -> str:
    """A refusal as the decision table's `error` column holds it, the same from both backends: the
    status code the service would send, then each field's problem (or the message, if none)."""
    if isinstance(exc, UnrepresentableRow):
        return f"INVALID_ARGUMENT: {exc}"
    code, message, violations = to_status(exc)
    detail = "; ".join(f"{field}: {problem}" for field, problem in violations) if violations else message
    return f"{code.name}: {detail}"


def invalid_value(field: str, value: object) -> str:
    """The refusal of a row value no request can carry (both backends word it the same)."""
    return f"person.{field}: unknown value {value!r}"


def _prefix(enum: Any) -> str:
    return "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper() + "_"


def _short(enum: EnumDescriptor | Any, number: int) -> str | None:
    if number == 0:
        return None
    return str(enum.values_by_number[number].name).removeprefix(_prefix(enum)).lower()


def _number(enum: EnumDescriptor | Any, short: str, field: str) -> int:
    name = _prefix(enum) + str(short).upper()
    if name not in enum.values_by_name or enum.values_by_name[name].number == 0:
        raise UnrepresentableRow(invalid_value(field, short))
    return int(enum.values_by_name[name].number)


def from_request(request: pb.EvaluateRequest) -> dict[str, Any]:
    """The person row of a request (its ID number and as_of are not part of it)."""
    person = request.person
    fields = pb.Person.DESCRIPTOR.fields_by_name
    row: dict[str, Any] = dict.fromkeys(PERSON_SCHEMA)
    row["birth_date"] = dt.date.fromisoformat(person.birth_date) if person.birth_date else None
    row["region_code"] = person.region_code or None
    for name in _ENUMS:
        row[name] = _short(fields[name].enum_type, getattr(person, name))
    for name in _SCALARS:
        row[name] = getattr(person, name) if person.HasField(name) else None
    if person.HasField("disability"):
        row["disability_grade"] = person.disability.grade or None
        row["disability_category"] = _short(
            pb.Disability.DESCRIPTOR.fields_by_name["category"].enum_type, person.disability.category
        )
    if person.HasField("capacity_assessment"):
        assessment = person.capacity_assessment
        row["capacity_level"] = _short(
            pb.CapacityAssessment.DESCRIPTOR.fields_by_name["level"].enum_type, assessment.level
        )
        row["capacity_assessed_on"] = dt.date.fromisoformat(assessment.assessed_on) if assessment.assessed_on else None
    row["other_benefits"] = [pb.Benefit.Name(b).removeprefix(_BENEFIT).lower() for b in person.other_benefits] or None
    return row


def to_request(row: dict[str, Any], on: dt.date, programs: list[str] | None = None) -> pb.EvaluateRequest:
    """The request a caller would send for the row's person on a date. Raises ValueError for a
    value no request can carry (UnrepresentableRow)."""
    person = pb.Person()
    born = row.get("birth_date")
    if born is not None:
        person.birth_date = born.isoformat()
        person.id_number = idnumber.synthetic(born.isoformat())
    if row.get("region_code"):
        person.region_code = str(row["region_code"])
    fields = pb.Person.DESCRIPTOR.fields_by_name
    for name in _ENUMS:
        if row.get(name) is not None:
            setattr(person, name, _number(fields[name].enum_type, row[name], name))
    for name in _SCALARS:
        if row.get(name) is not None:
            setattr(person, name, row[name])
    if row.get("disability_grade") or row.get("disability_category") is not None:
        person.disability.grade = int(row.get("disability_grade") or 0)
        if row.get("disability_category") is not None:
            enum = pb.Disability.DESCRIPTOR.fields_by_name["category"].enum_type
            person.disability.category = cast(Any, _number(enum, row["disability_category"], "disability_category"))
    if row.get("capacity_level") is not None or row.get("capacity_assessed_on") is not None:
        assessment = person.capacity_assessment
        if row.get("capacity_level") is not None:
            enum = pb.CapacityAssessment.DESCRIPTOR.fields_by_name["level"].enum_type
            assessment.level = cast(Any, _number(enum, row["capacity_level"], "capacity_level"))
        if row.get("capacity_assessed_on") is not None:
            assessment.assessed_on = row["capacity_assessed_on"].isoformat()
    for benefit in row.get("other_benefits") or ():
        person.other_benefits.append(cast(Any, _number(pb.Benefit.DESCRIPTOR, benefit, "other_benefits")))
    return pb.EvaluateRequest(person=person, as_of=on.isoformat(), programs=programs or [])
