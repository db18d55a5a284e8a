"""The gRPC server: a thin layer over DecisionService, with health checking and reflection.

It is an asyncio server (grpc.aio): one event loop per process runs every call. durable-rules
holds the GIL whatever we do, so threads could never decide two people at once; what the loop
saves is the sync server's hand-off of every call, and of every message of a stream, between a
poller thread and a pool thread (measured in bench/: about twice the calls, and twice the batch
people, per second). Deciding is CPU-bound and runs inline on the loop; only a cache that waits
on the network (Redis) runs in a small thread pool, so a slow Redis never stalls other calls.
Worker processes (--workers) use the other cores.

Hardening lives here: message size limits, a bounded number of concurrent RPCs (RESOURCE_EXHAUSTED
beyond it rather than an unbounded queue), a maximum batch stream length, the caller's deadline
checked before any work and between batch items, malformed protobuf answered INVALID_ARGUMENT,
TLS / mutual TLS with an allow-list (security.py) and an audit line per decision (audit.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import audit, errors, metrics, security, wire
from .api import eligibility_pb2 as pb
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
    threads: int = 8  # for cache I/O that waits on the network
    max_message_bytes: int = 256 * 1024  # largest request message accepted
    max_send_bytes: int = 4 * 1024 * 1024  # largest reply (ListPrograms, a full receipt)
    max_batch: int = 100_000
    max_concurrent_rpcs: int = 100  # beyond it: RESOURCE_EXHAUSTED, no unbounded queue
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


def safe_deserializer(message_type: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """grpc answers INTERNAL when a deserializer raises; bad bytes are the caller's error, not ours."""

    def deserialize(data: bytes) -> Message | Malformed:
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError, RuntimeError, TypeError):
            return Malformed(message_type.DESCRIPTOR.full_name)

    return deserialize


def _malformed_error(request: Malformed) -> InvalidRequest:
    return InvalidRequest([("request", f"is not a valid {request.type_name} message")])


class DeadlineExceeded(Exception):
    pass


def _check_deadline(context: security.Context) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded()


class EligibilityServicer:
    """The three methods, as coroutines on the server's event loop."""

    def __init__(
        self,
        decisions: DecisionService,
        max_batch: int,
        callers: security.Callers | None = None,
        audit_log: bool = True,
        io_pool: futures.Executor | None = None,
    ):
        self.decisions = decisions
        self.max_batch = max_batch
        self.callers = callers or security.Callers(security.TlsConfig())
        self.audit_log = audit_log
        # Only a cache that waits on the network leaves the loop; the engine itself is CPU-bound.
        self.io_pool = io_pool if decisions.cache.blocking else None

    async def _decide(self, request: pb.EvaluateRequest) -> Reply:
        if self.io_pool is not None:
            return await asyncio.get_running_loop().run_in_executor(self.io_pool, self.decisions.decide, request)
        return self.decisions.decide(request)

    async def _unary(
        self, method: str, fn: Callable[[Any], Awaitable[object]], request: object, context: security.Context
    ) -> object:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        try:
            _check_deadline(context)  # waited for the loop past the caller's deadline: do no work
            if isinstance(request, Malformed):
                raise _malformed_error(request)
            reply = await fn(request)
            if isinstance(reply, Reply):
                if self.audit_log:
                    audit.record(method, caller, reply.policy_version, reply.request_hash, reply.audit)
                return reply.data
            return reply
        except DeadlineExceeded:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            await context.abort(code, "the caller's deadline passed before the request was decided")
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):  # raised by context.abort itself
                raise
            code, status = errors.rpc_error_status(exc)
            await context.abort_with_status(status)
        finally:
            seconds = time.perf_counter() - started
            observe(method, code, seconds, caller)
            if log.isEnabledFor(logging.DEBUG):  # the hot path builds no log record it would drop
                log.debug(
                    "request",
                    extra={"method": method, "code": code.name, "caller": caller, "ms": round(seconds * 1000, 3)},
                )

    async def Evaluate(self, request: pb.EvaluateRequest | Malformed, context: security.Context) -> object:
        return await self._unary("Evaluate", self._decide, request, context)

    async def _list_programs(self, request: pb.ListProgramsRequest) -> pb.ListProgramsResponse:
        return self.decisions.list_programs(request)

    async def ListPrograms(self, request: pb.ListProgramsRequest | Malformed, context: security.Context) -> object:
        return await self._unary("ListPrograms", self._list_programs, request, context)

    async def EvaluateBatch(
        self, request_iterator: AsyncIterator[pb.EvaluateBatchRequest | Malformed], context: security.Context
    ) -> AsyncIterator[bytes | pb.EvaluateBatchResponse]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        index = 0
        try:
            async for item in request_iterator:
                if index >= self.max_batch:
                    code = grpc.StatusCode.RESOURCE_EXHAUSTED
                    await context.abort(code, f"a batch stream takes at most {self.max_batch} requests")
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:  # the caller's deadline stops the work
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    await context.abort(code, f"the caller's deadline passed after {index} requests")
                ref = "" if isinstance(item, Malformed) else item.ref
                try:
                    if isinstance(item, Malformed):
                        raise _malformed_error(item)
                    reply = await self._decide(item.request)
                    if self.audit_log:
                        audit.record(
                            "EvaluateBatch",
                            caller,
                            reply.policy_version,
                            reply.request_hash,
                            reply.audit,
                            batch_index=index,
                        )
                    # Serialized by hand: the reply is already bytes (see wire.py).
                    out: bytes | pb.EvaluateBatchResponse = (
                        (wire.embedded(_BATCH_REF, ref.encode()) if ref else b"")
                        + wire.integer(_BATCH_INDEX, index)
                        + wire.embedded(_BATCH_RESPONSE, reply.data)
                    )
                except Exception as exc:
                    item_code, message, violations = errors.to_status(exc)
                    out = pb.EvaluateBatchResponse(
                        ref=ref,
                        index=index,
                        error=pb.BatchError(
                            code=item_code.name,
                            message=message,
                            field_errors=[pb.FieldError(field=f, description=d) for f, d in violations],
                        ),
                    )
                yield out
                index += 1
        except asyncio.CancelledError:  # the caller went away (or its deadline passed) mid-stream
            code = grpc.StatusCode.CANCELLED if code == grpc.StatusCode.OK else code
            raise
        finally:
            observe("EvaluateBatch", code, time.perf_counter() - started, caller)


def _serialize(message_type: type[Message]) -> Callable[[bytes | Message], bytes]:
    """Replies built as bytes pass as they are; messages are serialized."""
    serialize = message_type.SerializeToString

    def serializer(reply: bytes | Message) -> bytes:
        return reply if isinstance(reply, bytes) else serialize(reply)

    return serializer


def add_servicer(servicer: EligibilityServicer, server: grpc.aio.Server) -> None:
    """As the generated add_EligibilityServiceServicer_to_server, with deserializers that never raise."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Evaluate": grpc.unary_unary_rpc_method_handler(
            servicer.Evaluate,
            request_deserializer=safe_deserializer(pb.EvaluateRequest),
            response_serializer=_serialize(pb.EvaluateResponse),
        ),
        "EvaluateBatch": grpc.stream_stream_rpc_method_handler(
            servicer.EvaluateBatch,
            request_deserializer=safe_deserializer(pb.EvaluateBatchRequest),
            response_serializer=_serialize(pb.EvaluateBatchResponse),
        ),
        "ListPrograms": grpc.unary_unary_rpc_method_handler(
            servicer.ListPrograms,
            request_deserializer=safe_deserializer(pb.ListProgramsRequest),
            response_serializer=pb.ListProgramsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class Canary:
    """Evaluates an empty case now and then; a frozen engine turns health to NOT_SERVING."""

    def __init__(self, decisions: DecisionService, health_servicer: health.aio.HealthServicer, cfg: ServerConfig):
        self.decisions, self.health, self.cfg = decisions, health_servicer, cfg
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    def probe(self) -> None:
        self.decisions.list_programs(pb.ListProgramsRequest())
        self.decisions.holder.engine.matcher.match({})

    async def check(self) -> bool:
        # In a thread of its own, so that a hung engine call cannot hang the check as well.
        try:
            await asyncio.wait_for(asyncio.to_thread(self.probe), self.cfg.canary_timeout)
            return True
        except Exception:
            log.exception("canary evaluation failed")
            return False

    async def run(self) -> None:
        while not self.draining:
            await asyncio.sleep(self.cfg.canary_interval)
            if self.draining:
                return
            ok = await self.check()
            if self.draining:  # never turn a draining server back to SERVING
                return
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                await self.health.set(name, status)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="canary")

    def stop(self) -> None:
        self.draining = True
        if self._task:
            self._task.cancel()


async def build_server(
    decisions: DecisionService, cfg: ServerConfig
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """The server, not yet started; call from the event loop that will run it."""
    options = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_send_bytes),
        ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
        ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
    ]
    callers = security.Callers(cfg.tls)

    def refused(method: str, caller: str, code: grpc.StatusCode) -> None:
        observe(method.rsplit("/", 1)[-1], code, None, caller)

    server = grpc.aio.server(
        options=options,
        interceptors=[security.AuthInterceptor(callers, refused)],
        maximum_concurrent_rpcs=cfg.max_concurrent_rpcs or None,
    )
    io_pool = futures.ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="cache-io")
    add_servicer(EligibilityServicer(decisions, cfg.max_batch, callers, cfg.audit, io_pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{cfg.host}:{cfg.port}"
    if cfg.tls.enabled:
        port = server.add_secure_port(address, security.server_credentials(cfg.tls))
    else:
        port = server.add_insecure_port(address)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
