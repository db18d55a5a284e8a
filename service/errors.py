"""Domain errors to gRPC statuses with google.rpc details; INTERNAL never carries a trace."""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .engine.decide import OutsidePolicyPeriod
from .policy.policyset import ParameterNotInForce
from .request import InvalidRequest

log = logging.getLogger(__name__)


def _bad_request(violations: list[tuple[str, str]]) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
            ]
        )
    )
    return detail


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """The status code, message and field violations for an exception."""
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, f"{exc.count} invalid field(s)", exc.violations
    if isinstance(exc, OutsidePolicyPeriod):
        return grpc.StatusCode.OUT_OF_RANGE, str(exc), [("as_of", str(exc))]
    if isinstance(exc, ParameterNotInForce):
        # Before every region has every value (policy.yaml complete_from), a date can fall where a
        # region has none: the date is the field to change.
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc), [("as_of", str(exc))]
    ref = uuid.uuid4().hex[:12]
    log.error("internal error", exc_info=exc, extra={"error_ref": ref})
    return grpc.StatusCode.INTERNAL, f"internal error (reference {ref})", []


def rpc_error_status(exc: Exception) -> tuple[grpc.StatusCode, grpc.Status]:
    code, message, violations = to_status(exc)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=[_bad_request(violations)] if violations else []
    )
    return code, rpc_status.to_status(status)
