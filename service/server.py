"""The gRPC server: a thin layer over DecisionService, with health checking and reflection.

It is an asyncio server (grpc.aio): one event loop per process runs every call. durable-rules
holds the GIL whatever we do, so threads could never decide two people at once; what the loop
saves is the sync server's hand-off of every call, and of every message of a stream, between a
poller thread and a pool thread (measured in bench/: about twice the calls, and twice the batch
people, per second). Without Redis a decision runs inline on the loop; with Redis the whole
decision (cache lookup, engine, store) runs in a small thread pool, so that a slow Redis never
stalls other calls. Worker processes (--workers) use the other cores.

Hardening lives here. No caller can hold the server: a call takes a decision slot (Admission)
only once its request has arrived, a caller (an mTLS identity; over plaintext, a connection) may
hold only part of the slots, every wait for a message or for the caller to take a reply is bounded
(--idle-seconds) and so is every call (--max-call-seconds), whatever deadline the client set.
Health and reflection are outside the slots. Every refusal is counted in the request metrics.
Also: message size limits, a maximum batch stream length, the caller's deadline checked before
any work and between batch items, malformed protobuf answered INVALID_ARGUMENT, TLS / mutual TLS
with an allow-list (security.py) and an audit line per decision (audit.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
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
# The transport refuses messages this many times the limit without handing them to us; up to it,
# the service answers an oversize message itself (counted; in a batch, in the item's place).
TRANSPORT_MESSAGE_FACTOR = 4


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    threads: int = 8  # for cache I/O that waits on the network
    max_message_bytes: int = 256 * 1024  # largest request message accepted
    max_send_bytes: int = 4 * 1024 * 1024  # largest reply (ListPrograms, a full receipt)
    max_batch: int = 100_000
    max_concurrent_rpcs: int = 100  # decision slots; beyond them RESOURCE_EXHAUSTED, no unbounded queue
    max_rpcs_per_caller: int = 0  # slots one caller may hold; 0: a quarter of max_concurrent_rpcs
    max_streams_per_connection: int = 100
    idle_seconds: float = 20.0  # longest wait for a request message, or for the caller to take a reply
    max_call_seconds: float = 600.0  # longest call, whatever deadline the caller set
    reuse_port: bool = False
    canary_interval: float = 10.0
    canary_timeout: float = 5.0
    tls: security.TlsConfig = field(default_factory=security.TlsConfig)
    audit: bool = True

    @property
    def per_caller(self) -> int:
        return self.max_rpcs_per_caller or max(1, self.max_concurrent_rpcs // 4)


def observe(method: str, code: grpc.StatusCode, seconds: float | None, caller: str) -> None:
    """Count one finished call (subsidy_grpc_requests_total{method,code,caller}) and its latency."""
    metrics.observe_request(method, code.name, seconds, caller)


class Malformed:
    """A request whose bytes are not a valid protobuf message of the method's type."""

    def __init__(self, type_name: str):
        self.type_name = type_name


class Oversize:
    """A request message larger than --max-message-bytes (the transport let it through)."""

    def __init__(self, size: int):
        self.size = size


def safe_deserializer(message_type: Any, max_bytes: int | None = None) -> Callable[[bytes], object]:
    """grpc answers INTERNAL when a deserializer raises; bad bytes are the caller's error, not ours.
    A message over `max_bytes` is not parsed at all."""

    def deserialize(data: bytes) -> object:
        if max_bytes is not None and len(data) > max_bytes:
            return Oversize(len(data))
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError, RuntimeError, TypeError):
            return Malformed(message_type.DESCRIPTOR.full_name)

    return deserialize


def _malformed_error(request: Malformed) -> InvalidRequest:
    return InvalidRequest([("request", f"is not a valid {request.type_name} message")])


class Refusal(Exception):
    """The call ends with this status, and is counted with it."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _check_deadline(context: security.Context) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:  # waited for the loop past the caller's deadline
        raise Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller's deadline passed before the request was decided")


class Admission:
    """Which calls of the service may run: decision slots overall and per caller, none when draining.

    A call takes a slot when its first request message has arrived (a stream that sends nothing
    holds none) and gives it back when it ends. One caller (an mTLS identity; over plaintext, where
    callers cannot be told apart, a connection) may hold at most `per_caller` slots, so that one
    caller cannot take them all. Everything runs on the event loop: no locks."""

    def __init__(self, total: int, per_caller: int):
        self.total, self.per_caller = total, per_caller
        self.used = 0
        self.by_caller: collections.Counter[str] = collections.Counter()
        self.draining = False
        self.last_activity = 0.0
        self.calls = 0  # calls inside a handler of the service, with or without a slot
        self._idle = asyncio.Event()
        self._idle.set()

    def take(self, key: str) -> None:
        if self.used >= self.total:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is at its limit of {self.total} calls; retry with backoff",
            )
        if self.by_caller[key] >= self.per_caller:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this caller is at its limit of {self.per_caller} concurrent calls; retry with backoff",
            )
        self.used += 1
        self.by_caller[key] += 1

    def give_back(self, key: str) -> None:
        self.used -= 1
        left = self.by_caller[key] - 1
        if left:
            self.by_caller[key] = left
        else:
            del self.by_caller[key]

    def enter(self) -> bool:
        """Counts a call in; True when it must be refused because the server is draining. It is
        refused once its first message has come (or DRAIN_READ_SECONDS passed): a status sent
        while a client is still sending can reach it as CANCELLED instead (grpc's client)."""
        self.calls += 1
        self._idle.clear()
        return self.draining

    def refuse_draining(self) -> Refusal:
        self.last_activity = time.monotonic()
        return Refusal(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")

    def leave(self) -> None:
        self.last_activity = time.monotonic()  # its caller may follow with another call at once
        self.calls -= 1
        if not self.calls:
            self._idle.set()

    async def drain(self, timeout: float, quiet: float = 0.3, most_quiet_wait: float = 2.0) -> bool:
        """Refuse new calls (UNAVAILABLE, which clients retry elsewhere) and wait for those running,
        and then (at most `most_quiet_wait` s, so that a caller retrying without pause cannot keep
        the process up) for `quiet` s in which no call started or ended (a caller whose call just
        ended may send the next at once): the transport stops only then, because a
        call that reaches it in the instant it stops is left unanswered until the end of the grace
        period, then CANCELLED (grpc.aio)."""
        self.draining = True
        ends = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        ends = min(ends, time.monotonic() + most_quiet_wait)
        while time.monotonic() < ends:
            since = time.monotonic() - self.last_activity
            if since >= quiet and not self.calls:
                return True
            await asyncio.sleep(max(0.01, quiet - since))
        return False


class _Bounded:
    """The time limits of one call: each wait at most `idle` seconds, the whole call at most `total`."""

    def __init__(self, idle: float, total: float):
        self.idle = idle
        self.ends = time.monotonic() + total

    async def wait(self, awaitable: Awaitable[Any], what: str) -> Any:
        left = self.ends - time.monotonic()
        try:
            async with asyncio.timeout(min(self.idle, left)):
                return await awaitable
        except TimeoutError:
            if left <= self.idle:
                raise Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "the call reached the server's time limit") from None
            raise Refusal(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no {what} for {self.idle:g} s (the server's idle limit)"
            ) from None


class EligibilityServicer:
    """The three methods, as coroutines on the server's event loop.

    Evaluate and ListPrograms are registered as client-streaming on this side of the wire (the
    bytes are the same as a unary call's): the handler then runs as soon as the call starts, so
    that it bounds the wait for the request message itself. grpc's unary handlers run only once
    a message has arrived, and a call whose message never comes would wait forever."""

    def __init__(
        self,
        decisions: DecisionService,
        max_batch: int,
        callers: security.Callers | None = None,
        audit_log: bool = True,
        io_pool: futures.Executor | None = None,
        admission: Admission | None = None,
        idle_seconds: float = 20.0,
        max_call_seconds: float = 600.0,
        max_message_bytes: int = 256 * 1024,
    ):
        self.decisions = decisions
        self.max_batch = max_batch
        self.callers = callers or security.Callers(security.TlsConfig())
        self.audit_log = audit_log
        # Only a cache that waits on the network leaves the loop; the engine itself is CPU-bound.
        self.io_pool = io_pool if decisions.cache.blocking else None
        self.admission = admission or Admission(100, 25)
        self.idle_seconds, self.max_call_seconds = idle_seconds, max_call_seconds
        self.max_message_bytes = max_message_bytes

    async def _decide(self, request: Any) -> Reply:
        if self.io_pool is not None:
            return await asyncio.get_running_loop().run_in_executor(self.io_pool, self.decisions.decide, request)
        return self.decisions.decide(request)

    def _slot_key(self, caller: str, context: security.Context) -> str:
        if caller in (security.ANONYMOUS, security.UNVERIFIED):
            return "peer:" + str(context.peer())  # no identity: one connection counts as one caller
        return caller

    @staticmethod
    async def _transport_ended() -> None:
        """No message came. When gRPC's transport itself ended the call (a message over its hard
        size limit, a frame it cannot read, the caller resetting the stream), grpc cancels this
        handler as soon as the loop lets it: the call is then counted CANCELLED, not INVALID_ARGUMENT."""
        for _ in range(3):
            await asyncio.sleep(0)

    async def _unary(
        self,
        method: str,
        fn: Callable[[Any], Awaitable[Any]],
        requests: AsyncIterator[Any],
        context: security.Context,
    ) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        key: str | None = None
        entered = False
        try:
            refuse = self.admission.enter()
            entered = True
            limits = _Bounded(DRAIN_READ_SECONDS if refuse else self.idle_seconds, self.max_call_seconds)
            try:
                request = await limits.wait(context.read(), "request message")
            except Refusal:
                if not refuse:
                    raise
            if refuse:
                raise self.admission.refuse_draining()
            if request is grpc.aio.EOF:
                await self._transport_ended()
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended without a complete request message")
            _check_deadline(context)  # do no work for a caller that has given up
            if isinstance(request, Oversize):
                raise Refusal(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the request message has {request.size} bytes; the limit is {self.max_message_bytes}",
                )
            if isinstance(request, Malformed):
                raise _malformed_error(request)
            slot = self._slot_key(caller, context)
            self.admission.take(slot)
            key = slot
            # Only a decision that waits on the network can be bounded; one on the loop runs to its end.
            reply = await (limits.wait(fn(request), "decision") if self.io_pool is not None else fn(request))
            if isinstance(reply, Reply):
                if self.audit_log:
                    audit.record(method, caller, reply.policy_version, reply.request_hash, reply.audit)
                return reply.data
            return reply
        except Refusal as refusal:
            code = refusal.code
            await _abort(context, code, refusal.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):  # raised by context.abort itself
                raise
            code, status = errors.rpc_error_status(exc)
            await context.abort_with_status(status)
        finally:
            if key is not None:
                self.admission.give_back(key)
            if entered:
                self.admission.leave()
            seconds = time.perf_counter() - started
            observe(method, code, seconds, caller)
            if code in _LOGGED_REFUSALS:
                log.info("request refused", extra={"method": method, "code": code.name, "caller": caller})
            elif log.isEnabledFor(logging.DEBUG):  # the hot path builds no log record it would drop
                log.debug(
                    "request",
                    extra={"method": method, "code": code.name, "caller": caller, "ms": round(seconds * 1000, 3)},
                )

    async def Evaluate(self, requests: AsyncIterator[Any], context: security.Context) -> Any:
        return await self._unary("Evaluate", self._decide, requests, context)

    async def _list_programs(self, request: Any) -> Any:
        return self.decisions.list_programs(request)

    async def ListPrograms(self, requests: AsyncIterator[Any], context: security.Context) -> Any:
        return await self._unary("ListPrograms", self._list_programs, requests, context)

    async def _batch_item(self, item: Any, index: int, caller: str) -> bytes | pb.EvaluateBatchResponse:
        """The reply for one batch item; a bad item gets an error in its place and the stream goes on."""
        ref = "" if isinstance(item, (Malformed, Oversize)) else item.ref
        try:
            if isinstance(item, Oversize):
                raise Refusal(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the item has {item.size} bytes; the limit is {self.max_message_bytes}",
                )
            if isinstance(item, Malformed):
                raise _malformed_error(item)
            reply = await self._decide(item.request)
        except Refusal as refusal:
            return pb.EvaluateBatchResponse(
                ref=ref, index=index, error=pb.BatchError(code=refusal.code.name, message=refusal.message)
            )
        except Exception as exc:
            return _batch_error(exc, ref, index)
        if self.audit_log:
            audit.record(
                "EvaluateBatch", caller, reply.policy_version, reply.request_hash, reply.audit, batch_index=index
            )
        # Serialized by hand: the reply is already bytes (see wire.py).
        return (
            (wire.embedded(_BATCH_REF, ref.encode()) if ref else b"")
            + wire.integer(_BATCH_INDEX, index)
            + wire.embedded(_BATCH_RESPONSE, reply.data)
        )

    async def EvaluateBatch(self, requests: AsyncIterator[Any], context: security.Context) -> None:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        caller = self.callers.caller(context)
        key: str | None = None
        entered = False
        index = 0
        try:
            refuse = self.admission.enter()
            entered = True
            limits = _Bounded(DRAIN_READ_SECONDS if refuse else self.idle_seconds, self.max_call_seconds)
            while True:
                try:
                    item = await limits.wait(context.read(), "request message")
                except Refusal:
                    if not refuse:
                        raise
                if refuse:
                    raise self.admission.refuse_draining()
                if item is grpc.aio.EOF:
                    break
                if index >= self.max_batch:
                    raise Refusal(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, f"a batch stream takes at most {self.max_batch} requests"
                    )
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:  # the caller's deadline stops the work
                    raise Refusal(
                        grpc.StatusCode.DEADLINE_EXCEEDED, f"the caller's deadline passed after {index} requests"
                    )
                if key is None:
                    slot = self._slot_key(caller, context)
                    self.admission.take(slot)
                    key = slot
                out = await self._batch_item(item, index, caller)
                await limits.wait(context.write(out), "reply taken by the caller")
                index += 1
        except Refusal as refusal:
            code = refusal.code
            await _abort(context, code, refusal.message)
        except asyncio.CancelledError:  # the caller went away (or its deadline passed) mid-stream
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = grpc.StatusCode.CANCELLED  # a write failed: the caller is gone
            raise
        finally:
            if key is not None:
                self.admission.give_back(key)
            if entered:
                self.admission.leave()
            observe("EvaluateBatch", code, time.perf_counter() - started, caller)
            if code in _LOGGED_REFUSALS:
                log.info("request refused", extra={"method": "EvaluateBatch", "code": code.name, "caller": caller})


DRAIN_READ_SECONDS = 1.0  # while draining, the longest wait for the message of a call to refuse
ABORT_SECONDS = 2.0  # the longest wait to send a status; a caller that takes no replies blocks it


async def _abort(context: security.Context, code: grpc.StatusCode, message: str) -> None:
    """context.abort, bounded: a stream whose caller takes no replies has its status queued behind
    them for good. Then the handler ends as cancelled (logged at DEBUG by grpc), holding nothing;
    the stream itself ends with its connection."""
    try:
        async with asyncio.timeout(ABORT_SECONDS):
            await context.abort(code, message)
    except TimeoutError:
        raise asyncio.CancelledError() from None


# Refusals an operator must see in the logs as well as in the metrics (never per decision).
_LOGGED_REFUSALS = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


def _batch_error(exc: Exception, ref: str, index: int) -> pb.EvaluateBatchResponse:
    item_code, message, violations = errors.to_status(exc)
    return pb.EvaluateBatchResponse(
        ref=ref,
        index=index,
        error=pb.BatchError(
            code=item_code.name,
            message=message,
            field_errors=[pb.FieldError(field=f, description=d) for f, d in violations],
        ),
    )


def _serialize(message_type: Any) -> Callable[[object], bytes]:
    """Replies built as bytes pass as they are; messages are serialized."""
    serialize = message_type.SerializeToString

    def serializer(reply: object) -> bytes:
        return reply if isinstance(reply, bytes) else bytes(serialize(reply))

    return serializer


def add_servicer(servicer: EligibilityServicer, server: grpc.aio.Server) -> None:
    """As the generated add_EligibilityServiceServicer_to_server, with deserializers that never raise,
    and the unary methods taken as client streams (see EligibilityServicer)."""
    limit = servicer.max_message_bytes
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Evaluate": grpc.stream_unary_rpc_method_handler(
            servicer.Evaluate,
            request_deserializer=safe_deserializer(pb.EvaluateRequest, limit),
            response_serializer=_serialize(pb.EvaluateResponse),
        ),
        "EvaluateBatch": grpc.stream_stream_rpc_method_handler(
            servicer.EvaluateBatch,
            request_deserializer=safe_deserializer(pb.EvaluateBatchRequest, limit),
            response_serializer=_serialize(pb.EvaluateBatchResponse),
        ),
        "ListPrograms": grpc.stream_unary_rpc_method_handler(
            servicer.ListPrograms,
            request_deserializer=safe_deserializer(pb.ListProgramsRequest, limit),
            response_serializer=pb.ListProgramsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _PeerGoneFilter(logging.Filter):
    """grpc logs `ExecuteBatchError raised in core by servicer method` at ERROR when a reply or a
    status is sent after the caller went away (its deadline passed, it cancelled, its connection
    closed) and grpc had not noticed yet. That is the caller's doing, not an error of ours, and the
    noise would hide real errors: it goes down to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("ExecuteBatchError raised in core"):
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_GRPC_LOG = logging.getLogger("grpc._cython.cygrpc")
if not any(isinstance(f, _PeerGoneFilter) for f in _GRPC_LOG.filters):
    _GRPC_LOG.addFilter(_PeerGoneFilter())


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
    decisions: DecisionService, cfg: ServerConfig, admission: Admission | None = None
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """The server, not yet started; call from the event loop that will run it. `admission` is how
    the caller drains it on SIGTERM (Admission.drain before server.stop)."""
    options = [
        # Up to the hard limit the service itself answers an oversize message (see Oversize).
        ("grpc.max_receive_message_length", cfg.max_message_bytes * TRANSPORT_MESSAGE_FACTOR),
        ("grpc.max_send_message_length", cfg.max_send_bytes),
        ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
        ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
    ]
    callers = security.Callers(cfg.tls)

    def refused(method: str, caller: str, code: grpc.StatusCode) -> None:
        observe(method.rsplit("/", 1)[-1], code, None, caller)

    # No grpc maximum_concurrent_rpcs: it counts a call from its first bytes, so streams that never
    # send a message fill it, and it covers health and reflection as well. Admission counts work.
    server = grpc.aio.server(options=options, interceptors=[security.AuthInterceptor(callers, refused)])
    io_pool = futures.ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="cache-io")
    servicer = EligibilityServicer(
        decisions,
        cfg.max_batch,
        callers,
        cfg.audit,
        io_pool,
        admission or Admission(cfg.max_concurrent_rpcs, cfg.per_caller),
        cfg.idle_seconds,
        cfg.max_call_seconds,
        cfg.max_message_bytes,
    )
    add_servicer(servicer, server)
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
