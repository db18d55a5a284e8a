"""The gRPC server: a thin layer over DecisionService, with health checking and reflection."""
from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import errors, metrics
from .api import eligibility_pb2 as pb
from .api import eligibility_pb2_grpc as pb_grpc
from .decisions import DecisionService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EligibilityService"].full_name


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    threads: int = 8
    max_message_bytes: int = 4 * 1024 * 1024
    max_batch: int = 100_000
    reuse_port: bool = False
    canary_interval: float = 10.0
    canary_timeout: float = 5.0


class EligibilityServicer(pb_grpc.EligibilityServiceServicer):
    def __init__(self, decisions: DecisionService, max_batch: int):
        self.decisions = decisions
        self.max_batch = max_batch

    def _unary(self, method: str, fn: Callable, request, context: grpc.ServicerContext):
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return fn(request)
        except Exception as exc:
            code, status = errors.rpc_error_status(exc)
            context.abort_with_status(status)
        finally:
            metrics.REQUESTS.labels(method=method, code=code.name).inc()
            metrics.LATENCY.labels(method=method).observe(time.perf_counter() - started)
            log.debug("request", extra={"method": method, "code": code.name,
                                        "ms": round((time.perf_counter() - started) * 1000, 3)})

    def Evaluate(self, request, context):
        return self._unary("Evaluate", self.decisions.evaluate, request, context)

    def ListPrograms(self, request, context):
        return self._unary("ListPrograms", self.decisions.list_programs, request, context)

    def EvaluateBatch(self, request_iterator: Iterator[pb.EvaluateBatchRequest], context):
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            for index, item in enumerate(request_iterator):
                if index >= self.max_batch:
                    code = grpc.StatusCode.RESOURCE_EXHAUSTED
                    context.abort(code, f"a batch stream takes at most {self.max_batch} requests")
                if not context.is_active():
                    code = grpc.StatusCode.CANCELLED
                    return
                try:
                    reply = self.decisions.evaluate(item.request)
                    yield pb.EvaluateBatchResponse(ref=item.ref, index=index, response=reply)
                except Exception as exc:
                    item_code, message, violations = errors.to_status(exc)
                    yield pb.EvaluateBatchResponse(ref=item.ref, index=index, error=pb.BatchError(
                        code=item_code.name, message=message,
                        field_errors=[pb.FieldError(field=f, description=d) for f, d in violations]))
        finally:
            metrics.REQUESTS.labels(method="EvaluateBatch", code=code.name).inc()
            metrics.LATENCY.labels(method="EvaluateBatch").observe(time.perf_counter() - started)


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
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.threads), options=options)
    pb_grpc.add_EligibilityServiceServicer_to_server(EligibilityServicer(decisions, cfg.max_batch), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port
