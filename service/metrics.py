"""Prometheus metrics. Labels carry only bounded values: methods, status codes, callers from the
mTLS configuration, program ids, outcomes, results and the policy version; never personal data.

Several worker processes (`--workers N`): PROMETHEUS_MULTIPROC_DIR is set before this module is
imported, every worker writes its own files there, and the supervisor's metrics HTTP server
aggregates them (prometheus-client multiprocess mode). The first process of a process tree to
import this module (the supervisor, or a lone worker) owns the directory and clears files left by
an earlier run; its children inherit SUBSIDY_METRICS_OWNER and leave the files alone. When a
worker exits, the supervisor calls `worker_exited(pid)` so its live gauges stop counting.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_OWNER_ENV = "SUBSIDY_METRICS_OWNER"


def prepare_multiprocess_dir() -> bool:
    """Clear stale metric files from PROMETHEUS_MULTIPROC_DIR, once per process tree, before any
    metric of this process exists. Returns True when this call cleared the directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or os.environ.get(_OWNER_ENV):
        return False
    os.environ[_OWNER_ENV] = str(os.getpid())
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    return True


if MULTIPROCESS:
    prepare_multiprocess_dir()

REQUESTS = Counter(
    "subsidy_grpc_requests", "gRPC requests by method, status code and caller", ["method", "code", "caller"]
)
LATENCY = Histogram(
    "subsidy_grpc_request_duration_seconds", "gRPC request latency", ["method"], buckets=LATENCY_BUCKETS
)
DECISIONS = Counter("subsidy_decisions", "Program decisions by outcome", ["program", "outcome"])
AMOUNT = Counter("subsidy_decided_amount_fen", "Monthly amounts decided payable, in fen", ["program"])
CACHE_LOOKUPS = Counter("subsidy_cache_lookups", "Decision cache lookups", ["result"])
CACHE_ERRORS = Counter("subsidy_cache_errors", "Decision cache errors", ["operation"])
# Labelled, so that only processes with a cache (workers, not the supervisor) have a series; the
# lowest value across live workers: 0 when any worker's cache is down.
CACHE_UP = Gauge(
    "subsidy_cache_up",
    "1 when the decision cache answers (backend: redis, local, off)",
    ["backend"],
    multiprocess_mode="livemin",
)
ENGINE_TIME = Histogram(
    "subsidy_engine_evaluation_seconds",
    "Rule engine evaluation time per person",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
POLICY_INFO = Gauge(
    "subsidy_policy_info", "The policy version serving (value 1)", ["version"], multiprocess_mode="livemax"
)
RELOADS = Counter("subsidy_policy_reloads", "Policy reloads by result", ["result"])
DISAGREEMENTS = Counter("subsidy_engine_disagreements", "Engine and explanation disagreed (a bug)")

# Caller identities come from the mTLS configuration, a bounded set; this guards the label anyway.
ANONYMOUS = "anonymous"
OTHER_CALLER = "other"
MAX_CALLERS = 100
_CALLER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,127}")  # CNs, DNS and URI SANs
_callers: set[str] = set()
_callers_lock = threading.Lock()


_labels: dict[str | None, str] = {}  # caller -> label, as decided the first time; bounded


def caller_label(caller: str | None) -> str:
    """A bounded label value for a caller identity: the name itself when it looks like a configured
    identity (letters, digits, `_.:/-`, at most 128) and fewer than MAX_CALLERS were seen, else
    `other`; `anonymous` when there is none."""
    found = _labels.get(caller)
    if found is None:
        if len(_labels) >= 4 * MAX_CALLERS:
            _labels.clear()
        found = _labels[caller] = _caller_label(caller)
    return found


def _caller_label(caller: str | None) -> str:
    if not caller:
        return ANONYMOUS
    if not _CALLER_RE.fullmatch(caller) or sum(ch.isdigit() for ch in caller) >= 6:
        return OTHER_CALLER  # never a label that could hold an ID number or a date
    with _callers_lock:
        if caller in _callers:
            return caller
        if len(_callers) >= MAX_CALLERS:
            return OTHER_CALLER
        _callers.add(caller)
        return caller


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """metric.labels(*values), memoized: label values are a bounded set, and labels() is slow."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def observe_request(method: str, code: str, seconds: float | None, caller: str | None = ANONYMOUS) -> None:
    """Count one finished gRPC call and its latency (none for a call refused before any handler)."""
    child(REQUESTS, method, code, caller_label(caller)).inc()
    if seconds is not None:
        child(LATENCY, method).observe(seconds)


# Series exist at 0 from the start, so that the first event shows as an increase to Prometheus.
for _result in ("hit", "miss"):
    CACHE_LOOKUPS.labels(result=_result)
for _operation in ("get", "set"):
    CACHE_ERRORS.labels(operation=_operation)
for _result in ("success", "failure"):
    RELOADS.labels(result=_result)


def set_cache_up(backend: str, up: bool) -> None:
    CACHE_UP.labels(backend=backend).set(1 if up else 0)


def set_policy_version(version: str, previous: str | None = None) -> None:
    if previous and previous != version:
        POLICY_INFO.labels(version=previous).set(0)
    POLICY_INFO.labels(version=version).set(1)


def worker_exited(pid: int) -> None:
    """Call in the supervisor when a worker process has exited: its live gauges (cache up, policy
    version) stop counting; its counters and histograms stay in the totals."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)


def serve(port: int, addr: str = "0.0.0.0") -> object:
    """Start the metrics HTTP server; in multiprocess mode it reads every worker's files."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return start_http_server(port, addr=addr, registry=registry)
    return start_http_server(port, addr=addr)
