"""The gRPC server: a thin layer over DecisionService, with health checking and reflection.

Hardening lives here: message size limits, a bounded number of concurrent RPCs (RESOURCE_EXHAUSTED
beyond it rather than an unbounded queue), a maximum batch stream length, the caller's deadline
checked before any work and between batch items, malformed protobuf answered INVALID_ARGUMENT,
TLS / mutual TLS with an allow-list (security.py) and an audit line per decision (audit.py).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable, Iterator

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import audit, errors, metrics, security, wire
from .api import eligibility_pb2 as pb
from .api import eligibility_pb2_grpc as pb_grpc
from .decisions import DecisionService, Reply
from .request import InvalidRequest

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EligibilityService"].full_name
_BATCH = pb.EvaluateBatchResponse.DESCRIPTOR.fields_by_name
_BATCH_REF, _BATCH_INDEX, _BATCH_RESPONSE = (_BATCH[n].number for n in ("ref", "index", "response"))


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    threads: int = 8
    max_message_bytes: int = 256 * 1024          # largest request message accepted
    max_send_bytes: int = 4 * 1024 * 1024        # largest reply (ListPrograms, a full receipt)
    max_batch: int = 100_000
    max_concurrent_rpcs: int = 100               # beyond it: RESOURCE_EXHAUSTED, no unbounded queue
    max_streams_per_connection: int = 100
    reuse_port: bool = False
    canary_interval: float = 10.0
    canary_timeout: float = 5.0
    tls: security.TlsConfig = field(default_factory=security.TlsConfig)
    audit: bool = True


def observe(method: str, code: grpc.StatusCode, seconds: float | None, caller: str) -> None:
    """Count one finished call (subsidy_grpc_requests_total{method,code,caller}) and its latency."""
    metrics.observe_request(method, code.name, seconds, caller)


class Malformed:
    """A request whose bytes are not a valid protobuf message of the method's type."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def safe_deserializer(message_type) -> Callable[[bytes], object]:
    """grpc answers INTERNAL when a deserializer raises; bad bytes are the caller's error, not ours."""
    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError, RuntimeError, TypeError):
            return Malformed(message_type.DESCRIPTOR.full_name)
    return deserialize


def _malformed_error(request: Malformed) -> InvalidRequest:
    return InvalidRequest([("request", f"is not a valid {request.type_name} message")])


class DeadlineExceeded(Exception):
    pass


def _check_deadline(context: grpc.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded()


class EligibilityServicer(pb_grpc.EligibilityServiceServicer):
    def __init__(self, decisions: DecisionService, max_batch: int, callers: security.Callers | None = None,
                 audit_log: bool = True):
        self.decisions = decisions
        self.max_batch = max_batch
        self.callers = callers or security.Callers(security.TlsConfig())
        self.audit_log = audit_log

    def _unary(self, method: str, fn: Callable, request, context: grpc.ServicerContext):
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        try:
            _check_deadline(context)  # waited in the queue past the caller's deadline: do no work
            if isinstance(request, Malformed):
                raise _malformed_error(request)
            reply = fn(request)
            if isinstance(reply, Reply):
                if self.audit_log:
                    audit.record(method, caller, reply.policy_version, reply.request_hash, reply.audit)
                return reply.data
            return reply
        except DeadlineExceeded:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            context.abort(code, "the caller's deadline passed before the request was decided")
        except Exception as exc:
            code, status = errors.rpc_error_status(exc)
            context.abort_with_status(status)
        finally:
            seconds = time.perf_counter() - started
            observe(method, code, seconds, caller)
            if log.isEnabledFor(logging.DEBUG):  # the hot path builds no log record it would drop
                log.debug("request", extra={"method": method, "code": code.name, "caller": caller,
                                            "ms": round(seconds * 1000, 3)})

    def Evaluate(self, request, context):
        return self._unary("Evaluate", self.decisions.decide, request, context)

    def ListPrograms(self, request, context):
        return self._unary("ListPrograms", self.decisions.list_programs, request, context)

    def EvaluateBatch(self, request_iterator: Iterator[pb.EvaluateBatchRequest], context):
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        try:
            for index, item in enumerate(request_iterator):
                if index >= self.max_batch:
                    code = grpc.StatusCode.RESOURCE_EXHAUSTED
                    context.abort(code, f"a batch stream takes at most {self.max_batch} requests")
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:  # the caller's deadline stops the work
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    context.abort(code, f"the caller's deadline passed after {index} requests")
                if not context.is_active():
                    code = grpc.StatusCode.CANCELLED
                    return
                ref = "" if isinstance(item, Malformed) else item.ref
                try:
                    if isinstance(item, Malformed):
                        raise _malformed_error(item)
                    reply = self.decisions.decide(item.request)
                    if self.audit_log:
                        audit.record("EvaluateBatch", caller, reply.policy_version, reply.request_hash, reply.audit,
                                     batch_index=index)
                    # Serialized by hand: the reply is already bytes (see wire.py).
                    yield (wire.embedded(_BATCH_REF, ref.encode()) if ref else b"") + \
                        wire.integer(_BATCH_INDEX, index) + wire.embedded(_BATCH_RESPONSE, reply.data)
                except Exception as exc:
                    item_code, message, violations = errors.to_status(exc)
                    yield pb.EvaluateBatchResponse(ref=ref, index=index, error=pb.BatchError(
                        code=item_code.name, message=message,
                        field_errors=[pb.FieldError(field=f, description=d) for f, d in violations]))
        finally:
            observe("EvaluateBatch", code, time.perf_counter() - started, caller)


def _serialize(message_type) -> Callable[[object], bytes]:
    """Replies built as bytes pass as they are; messages are serialized."""
    serialize = message_type.SerializeToString

    def serializer(reply) -> bytes:
        return reply if isinstance(reply, bytes) else serialize(reply)
    return serializer


def add_servicer(servicer: EligibilityServicer, server: grpc.Server) -> None:
    """As the generated add_EligibilityServiceServicer_to_server, with deserializers that never raise."""
    handlers = {
        "Evaluate": grpc.unary_unary_rpc_method_handler(
            servicer.Evaluate, request_deserializer=safe_deserializer(pb.EvaluateRequest),
            response_serializer=_serialize(pb.EvaluateResponse)),
        "EvaluateBatch": grpc.stream_stream_rpc_method_handler(
            servicer.EvaluateBatch, request_deserializer=safe_deserializer(pb.EvaluateBatchRequest),
            response_serializer=_serialize(pb.EvaluateBatchResponse)),
        "ListPrograms": grpc.unary_unary_rpc_method_handler(
            servicer.ListPrograms, request_deserializer=safe_deserializer(pb.ListProgramsRequest),
            response_serializer=pb.ListProgramsResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class Canary:
    """Evaluates an empty case now and then; a frozen engine turns health to NOT_SERVING."""

    def __init__(self, decisions: DecisionService, health_servicer: health.HealthServicer, cfg: ServerConfig):
        self.decisions, self.health, self.cfg = decisions, health_servicer, cfg
        self._stop = threading.Event()
        self.draining = False

    def check(self) -> bool:
        done = threading.Event()

        def probe():
            try:
                self.decisions.list_programs(pb.ListProgramsRequest())
                engine = self.decisions.holder.engine
                engine.matcher.match({})
                done.set()
            except Exception:
                log.exception("canary evaluation failed")

        threading.Thread(target=probe, daemon=True, name="canary").start()
        return done.wait(self.cfg.canary_timeout)

    def run(self) -> None:
        while not self._stop.wait(self.cfg.canary_interval):
            if self.draining:
                return
            ok = self.check()
            if self.draining:  # never turn a draining server back to SERVING
                return
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                self.health.set(name, status)

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True, name="canary-loop").start()

    def stop(self) -> None:
        self._stop.set()


def build_server(decisions: DecisionService, cfg: ServerConfig) -> tuple[grpc.Server, health.HealthServicer, int]:
    options = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_send_bytes),
        ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
        ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
    ]
    callers = security.Callers(cfg.tls)

    def refused(method: str, caller: str, code: grpc.StatusCode) -> None:
        observe(method.rsplit("/", 1)[-1], code, None, caller)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.threads), options=options,
                         interceptors=[security.AuthInterceptor(callers, refused)],
                         maximum_concurrent_rpcs=cfg.max_concurrent_rpcs or None)
    add_servicer(EligibilityServicer(decisions, cfg.max_batch, callers, cfg.audit), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    address = f"{cfg.host}:{cfg.port}"
    if cfg.tls.enabled:
        port = server.add_secure_port(address, security.server_credentials(cfg.tls))
    else:
        port = server.add_insecure_port(address)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
