"""Requests from plain dicts, as the policy cases (policies/tests/*.yaml) and the tests write them:
short enum names (`dibao_edge`), dates as dates, and an ID number made to match the birth date."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from service.api import eligibility_pb2 as pb
from service.idnumber import synthetic

if TYPE_CHECKING:
    from typing import TypeAlias

    from google._upb import _message as upb

    # The stubs type a message's DESCRIPTOR as either protobuf backend's (pure Python or upb);
    # both have every attribute used here.
    AnyDescriptor: TypeAlias = Descriptor | upb.Descriptor
    AnyEnumDescriptor: TypeAlias = EnumDescriptor | upb.EnumDescriptor


make_id = synthetic


def _enum_name(enum_type: AnyEnumDescriptor, short: str) -> str:
    prefix = "".join("_" + c if c.isupper() else c for c in enum_type.name).lstrip("_").upper() + "_"
    return prefix + str(short).upper()


def _expand(descriptor: AnyDescriptor, data: dict[str, Any]) -> dict[str, Any]:
    """Short enum names (dibao_edge) to proto names (HOUSEHOLD_STATUS_DIBAO_EDGE), recursively."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = descriptor.fields_by_name[key]
        if field.enum_type is not None:
            enum_type = field.enum_type
            out[key] = (
                [_enum_name(enum_type, v) for v in value] if isinstance(value, list) else _enum_name(enum_type, value)
            )
        elif field.message_type is not None and isinstance(value, dict):
            out[key] = _expand(field.message_type, value)
        else:
            out[key] = value
    return out


def person(**data: Any) -> pb.Person:
    data = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in data.items()}
    if "birth_date" in data and "id_number" not in data:
        data["id_number"] = make_id(data["birth_date"])
    if isinstance(data.get("capacity_assessment", {}).get("assessed_on"), dt.date):
        data["capacity_assessment"]["assessed_on"] = data["capacity_assessment"]["assessed_on"].isoformat()
    return json_format.ParseDict(_expand(pb.Person.DESCRIPTOR, data), pb.Person())


def request(as_of: str | dt.date, programs: list[str] | None = None, **person_data: Any) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(person=person(**person_data), as_of=str(as_of), programs=programs or [])
