"""Generated people for telling equivalent mutants apart: a mutant whose decisions equal the
original's for every one of them changes nothing observable (as far as this sample can see).

The people are drawn from the request's own shape (every field of pb.Person, so new fields are
sampled too) and from the policy's own numbers: every date in the policy files and the day either
side, every region code they name, and for each region and date, incomes one fen either side of
each money value and each money value times each ratio (1.5 x the dibao standard), ages one year
either side of each age parameter and birthdays on the day, assessments dated that many months back.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from dateutil.relativedelta import relativedelta
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from policycheck.requests import make_id
from service.api import eligibility_pb2 as pb
from service.decisions import DecisionService
from service.errors import to_status

if TYPE_CHECKING:
    from policycheck.requests import AnyDescriptor

OUTSIDE_ZHEJIANG = "110105"
AGES = (0, 3, 10, 15, 17, 18, 19, 22, 30, 45, 58, 59, 60, 61, 75, 90)
SMALL_INTS = (1, 2, 3, 4)  # disability grades and the like (0 is "none": the message left out)
# Reply fields that explain or label a decision but do not decide it: texts (which restate the
# numbers compared, kept in the parameter values), citations, names, the version and the request's
# hash. A mutant that changes only these changes no decision.
NOT_DECIDING = re.compile(r"text|citation|name|label|note|policy_version|request_hash|effective_from|source|confidence")


def _scalars(root: Path) -> tuple[set[dt.date], set[str]]:
    """Every date and every region code written in the policy files (tests excluded)."""
    dates: set[dt.date] = set()
    codes: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, dt.date):
            dates.add(x)
        elif isinstance(x, str) and re.fullmatch(r"\d{6}", x):
            codes.add(x)

    for path in sorted(root.rglob("*.yaml")):
        if "tests" not in path.relative_to(root).parts:
            walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return dates, codes


def canonical(service: DecisionService, request: pb.EvaluateRequest) -> Any:
    """The deciding part of a reply (or the refusal's status code) in a comparable form. Lists are
    compared as multisets: the order a reply lists programs, reasons or an interaction's programs in
    is presentation (the tie order of take-the-higher, which the listing order also sets, is tested
    on a real tie in tests/test_policy_cases.py)."""
    try:
        reply = service.evaluate(request)
    except Exception as exc:  # a refusal is an outcome too: compared by its status code
        return ("error", to_status(exc)[0].name)
    return _canon(reply)


def _canon(message: Message) -> tuple:
    clear = _not_deciding(message.DESCRIPTOR)
    out = []
    for field, value in message.ListFields():
        if field.name in clear:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = tuple(sorted(_canon(v) for v in value)) if field.is_repeated else _canon(value)
        else:
            item = tuple(sorted(value)) if field.is_repeated else value
        out.append((field.name, item))
    return tuple(out)


@functools.cache
def _not_deciding(descriptor: Descriptor) -> frozenset[str]:
    return frozenset(f.name for f in descriptor.fields if NOT_DECIDING.search(f.name))


class People:
    """A fixed, seeded sample of requests over the policy's dates, regions and boundaries."""

    def __init__(self, policies: Path, service: DecisionService, size: int, seed: int = 20161226):
        self.rng = random.Random(seed)
        self.service = service
        dates, codes = _scalars(policies)
        every = sorted({d + dt.timedelta(days=k) for d in dates for k in (-1, 0, 1)})
        # Mostly dates the policy decides; a few it refuses (so a moved period boundary shows).
        self.decided = [d for d in every if self._decides(d)]
        self.refused = [d for d in every if d not in self.decided]
        self.codes = sorted(codes | {OUTSIDE_ZHEJIANG})
        self._numbers: dict[tuple[str, dt.date], tuple[list[int], list[int], list[int]]] = {}
        # Every date once first (a moved period boundary shows on its own day), then drawn at random.
        every_date = self.decided + self.refused
        self.requests = [self._one(every_date[i] if i < len(every_date) else None) for i in range(size)]

    def _decides(self, on: dt.date) -> bool:
        probe = pb.EvaluateRequest(
            person=pb.Person(id_number=make_id("1980-01-01"), birth_date="1980-01-01", region_code=OUTSIDE_ZHEJIANG),
            as_of=on.isoformat(),
        )
        try:
            self.service.evaluate(probe)
        except Exception:
            return False
        return True

    def _boundaries(self, code: str, on: dt.date) -> tuple[list[int], list[int], list[int]]:
        """Incomes in fen, ages and month counts around the parameter values in force there then."""
        key = (code, on)
        if key not in self._numbers:
            probe = pb.EvaluateRequest(
                person=pb.Person(id_number=make_id("1980-01-01"), birth_date="1980-01-01", region_code=code),
                as_of=on.isoformat(),
            )
            try:
                params = list(self.service.evaluate(probe).parameters)
            except Exception:  # a date or region the policy refuses: the sample still asks it
                params = []
            money = [Decimal(p.value) * 100 for p in params if "yuan" in p.unit]
            ratios = [Decimal(p.value) for p in params if p.unit == "ratio"]
            points = set(money) | {m * r for m in money for r in ratios}
            incomes = sorted({int(p) + k for p in points for k in (-1, 0, 1) if int(p) + k >= 0} | {0})
            ages = sorted({int(Decimal(p.value)) + k for p in params if p.unit == "years" for k in (-1, 0, 1)})
            months = sorted({int(Decimal(p.value)) + k for p in params if p.unit == "months" for k in (-1, 0, 1)})
            self._numbers[key] = (incomes, ages, months)
        return self._numbers[key]

    def _one(self, on: dt.date | None) -> pb.EvaluateRequest:
        rng = self.rng
        if on is None:
            on = rng.choice(self.refused if self.refused and rng.random() < 0.05 else self.decided)
        code = rng.choice(self.codes)
        incomes, ages, months = self._boundaries(code, on)
        age = rng.choice(ages + list(AGES)) if ages else rng.choice(AGES)
        born = on - relativedelta(years=age) + dt.timedelta(days=rng.choice((0, 0, 1, -1)))
        born = min(born, on)
        person = pb.Person(id_number=make_id(born.isoformat()), birth_date=born.isoformat(), region_code=code)
        self._fill(person, pb.Person.DESCRIPTOR, on, incomes, months, top=True)
        return pb.EvaluateRequest(person=person, as_of=on.isoformat())

    def _fill(
        self, message: Any, descriptor: AnyDescriptor, on: dt.date, incomes: list[int], months: list[int], top: bool
    ) -> None:
        rng = self.rng
        for field in descriptor.fields:
            if top and field.name in ("id_number", "birth_date", "region_code"):
                continue
            repeated = field.is_repeated
            if field.enum_type is not None:  # the field is an enum
                values = [v.number for v in field.enum_type.values]
                if repeated:
                    getattr(message, field.name).extend(v for v in values[1:] if rng.random() < 0.25)
                else:  # inside a sub-message, "unspecified" only makes the request invalid
                    setattr(message, field.name, rng.choice(values if top else values[1:]))
            elif repeated:
                continue  # no repeated field other than enums is a fact today
            elif field.message_type is not None:  # the field is a message
                if rng.random() < 0.6:
                    self._fill(getattr(message, field.name), field.message_type, on, incomes, months, top=False)
            elif field.type == FieldDescriptor.TYPE_BOOL:
                if rng.random() < 0.8:
                    setattr(message, field.name, rng.random() < 0.5)
            elif field.name.endswith("_fen"):
                if rng.random() < 0.8:
                    setattr(message, field.name, rng.choice(incomes))
            elif field.cpp_type in (
                FieldDescriptor.CPPTYPE_INT32,
                FieldDescriptor.CPPTYPE_INT64,
                FieldDescriptor.CPPTYPE_UINT32,
                FieldDescriptor.CPPTYPE_UINT64,
            ):
                setattr(message, field.name, rng.choice(SMALL_INTS))
            elif field.type == FieldDescriptor.TYPE_STRING and re.search(r"(_on|_date)$", field.name):
                back = relativedelta(months=rng.choice(months or [0])) if rng.random() < 0.8 else relativedelta()
                day = on - back + dt.timedelta(days=rng.choice((0, 0, 1, -1)))
                setattr(message, field.name, day.isoformat())

    def __iter__(self) -> Iterator[pb.EvaluateRequest]:
        return iter(self.requests)
