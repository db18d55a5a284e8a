"""Prometheus metrics. Labels carry only bounded values: methods, status codes, program ids,
outcomes, results and the policy version; never personal data.

With several worker processes, PROMETHEUS_MULTIPROC_DIR is set before this module is imported
and the metrics HTTP server aggregates every worker's files (prometheus-client multiprocess mode).
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5)
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter("subsidy_grpc_requests", "gRPC requests by method and status code", ["method", "code"])
LATENCY = Histogram("subsidy_grpc_request_duration_seconds", "gRPC request latency", ["method"],
                    buckets=LATENCY_BUCKETS)
DECISIONS = Counter("subsidy_decisions", "Program decisions by outcome", ["program", "outcome"])
AMOUNT = Counter("subsidy_decided_amount_fen", "Monthly amounts decided payable, in fen", ["program"])
CACHE_LOOKUPS = Counter("subsidy_cache_lookups", "Decision cache lookups", ["result"])
CACHE_ERRORS = Counter("subsidy_cache_errors", "Decision cache errors", ["operation"])
CACHE_UP = Gauge("subsidy_cache_up", "1 when the decision cache answers", multiprocess_mode="min")
ENGINE_TIME = Histogram("subsidy_engine_evaluation_seconds", "Rule engine evaluation time per person",
                        buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1))
POLICY_INFO = Gauge("subsidy_policy_info", "The policy version serving (value 1)", ["version"],
                    multiprocess_mode="max")
RELOADS = Counter("subsidy_policy_reloads", "Policy reloads by result", ["result"])
DISAGREEMENTS = Counter("subsidy_engine_disagreements", "Engine and explanation disagreed (a bug)")


# Series exist at 0 from the start, so that the first event shows as an increase to Prometheus.
for _result in ("hit", "miss"):
    CACHE_LOOKUPS.labels(result=_result)
for _operation in ("get", "set"):
    CACHE_ERRORS.labels(operation=_operation)
for _result in ("success", "failure"):
    RELOADS.labels(result=_result)


def set_policy_version(version: str, previous: str | None = None) -> None:
    if previous and previous != version:
        POLICY_INFO.labels(version=previous).set(0)
    POLICY_INFO.labels(version=version).set(1)


def serve(port: int, addr: str = "0.0.0.0"):
    """Start the metrics HTTP server; in multiprocess mode it reads every worker's files."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return start_http_server(port, addr=addr, registry=registry)
    return start_http_server(port, addr=addr)
