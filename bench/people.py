"""A deterministic mix of people for the benchmarks (valid requests across all programs)."""

from __future__ import annotations

import random
from typing import cast  # the generated stubs type enum fields by their class; the values are ints

from service.api import eligibility_pb2 as pb
from service.idnumber import check_char

REGIONS = ["330102", "330106", "330122", "330112", "330203", "330302", "331102", "330185"]


def make_id(birth: str, region: str, seq: int) -> str:
    first = f"{region}{birth.replace('-', '')}{seq % 1000:03d}"
    return first + check_char(first)


def people(n: int, seed: int = 7) -> list[pb.EvaluateRequest]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        year = rng.randint(1930, 2015)
        birth = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        region = rng.choice(REGIONS)
        person = pb.Person(
            id_number=make_id(birth, "330102", i),
            birth_date=birth,
            region_code=region,
            household_status=cast(pb.HouseholdStatus, rng.randint(1, 4)),
        )
        if rng.random() < 0.6:
            person.disability.grade = rng.randint(1, 4)
            person.disability.category = cast(pb.DisabilityCategory, rng.randint(1, 7))
            person.long_term_care_need = rng.random() < 0.7
            person.self_care = cast(pb.SelfCare, rng.randint(1, 3))
        if rng.random() < 0.5:
            person.household_income_per_head_fen = rng.randint(0, 400_000)
            person.own_income_fen = rng.randint(0, 400_000)
        if year < 1962:
            person.capacity_assessment.level = cast(pb.CapacityLevel, rng.randint(1, 4))
            person.capacity_assessment.assessed_on = f"2020-0{rng.randint(1, 7)}-15"
        if year > 2002:
            person.child_status = cast(pb.ChildStatus, rng.randint(1, 4))
            person.serious_illness = rng.random() < 0.2
        out.append(pb.EvaluateRequest(person=person, as_of="2020-08-01"))
    return out
