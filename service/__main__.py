"""Run the eligibility service: `python -m service [--port 50051] [--metrics-port 9464] [--policies DIR]`.

Every flag has an environment variable (shown in --help). With --workers N > 1 this process
supervises N worker processes sharing the gRPC port (SO_REUSEPORT) and serves their aggregated
metrics; durable-rules holds the GIL, so processes are how the service uses more than one core.

Plaintext by default (local development). --tls-cert/--tls-key turn on TLS; --tls-client-ca adds
mutual TLS and --allowed-callers the list of client certificate names (CN or SAN) let in.
SIGTERM drains (health NOT_SERVING, in-flight requests finish within --grace, exit 0); SIGHUP
reloads the policies (a broken set is refused and the old one keeps serving).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


def default_policies() -> str:
    """The repository's policies/ when run from a checkout, else the copy bundled in the package."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "policies"
    return str(checkout if (checkout / "policy.yaml").is_file() else here / "bundled_policies")


def _env(name: str, default: T) -> str | T:
    return os.environ.get(name, default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m service", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--host", default=_env("SUBSIDY_HOST", "0.0.0.0"), help="gRPC bind address (SUBSIDY_HOST)")
    p.add_argument("--port", type=int, default=int(_env("SUBSIDY_PORT", 50051)), help="gRPC port (SUBSIDY_PORT)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("SUBSIDY_METRICS_PORT", 9464)),
        help="Prometheus metrics port, 0 for none (SUBSIDY_METRICS_PORT)",
    )
    p.add_argument(
        "--policies", default=_env("SUBSIDY_POLICIES", default_policies()), help="policy directory (SUBSIDY_POLICIES)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(_env("SUBSIDY_WORKERS", 1)),
        help="worker processes sharing the port (SUBSIDY_WORKERS)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(_env("SUBSIDY_THREADS", 8)),
        help="threads per worker for decisions with Redis (each runs in one, cache lookup to store); without "
        "Redis decisions run on the worker's event loop (SUBSIDY_THREADS)",
    )
    p.add_argument(
        "--redis-url",
        default=_env("REDIS_URL", ""),
        help="Redis for the decision cache; empty for an in-process LRU (REDIS_URL)",
    )
    p.add_argument(
        "--cache-ttl",
        type=float,
        default=float(_env("SUBSIDY_CACHE_TTL", 3600)),
        help="decision cache TTL in seconds, 0 turns caching off (SUBSIDY_CACHE_TTL)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=float(_env("SUBSIDY_GRACE", 10)),
        help="seconds to finish in-flight requests on SIGTERM (SUBSIDY_GRACE)",
    )
    p.add_argument(
        "--drain-delay",
        type=float,
        default=float(_env("SUBSIDY_DRAIN_DELAY", 0)),
        help="on SIGTERM, seconds to keep accepting while health says NOT_SERVING, so load balancers "
        "move away before the server stops accepting (SUBSIDY_DRAIN_DELAY)",
    )
    p.add_argument("--log-level", default=_env("SUBSIDY_LOG_LEVEL", "INFO"), help="(SUBSIDY_LOG_LEVEL)")
    p.add_argument(
        "--audit",
        action=argparse.BooleanOptionalAction,
        default=_env("SUBSIDY_AUDIT", "1").lower() not in ("0", "false", "no", "off"),
        help="an audit log line per decision: caller, policy version, rule ids, request hash (SUBSIDY_AUDIT)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("SUBSIDY_MAX_MESSAGE_BYTES", 256 * 1024)),
        help="largest request message; larger ones get RESOURCE_EXHAUSTED (SUBSIDY_MAX_MESSAGE_BYTES)",
    )
    limits.add_argument(
        "--max-batch",
        type=int,
        default=int(_env("SUBSIDY_MAX_BATCH", 100_000)),
        help="most requests in one EvaluateBatch stream (SUBSIDY_MAX_BATCH)",
    )
    limits.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=int(_env("SUBSIDY_MAX_CONCURRENT_RPCS", 100)),
        help="calls being decided per worker (a call counts once its request has arrived; health and reflection "
        "never); beyond it RESOURCE_EXHAUSTED at once (SUBSIDY_MAX_CONCURRENT_RPCS)",
    )
    limits.add_argument(
        "--max-rpcs-per-caller",
        type=int,
        default=int(_env("SUBSIDY_MAX_RPCS_PER_CALLER", 0)),
        help="of those, most one caller may hold (an mTLS identity; over plaintext, a connection); "
        "0 for a quarter of --max-concurrent-rpcs (SUBSIDY_MAX_RPCS_PER_CALLER)",
    )
    limits.add_argument(
        "--max-streams-per-connection",
        type=int,
        default=int(_env("SUBSIDY_MAX_STREAMS_PER_CONNECTION", 100)),
        help="concurrent HTTP/2 streams one connection may open (SUBSIDY_MAX_STREAMS_PER_CONNECTION)",
    )
    limits.add_argument(
        "--idle-seconds",
        type=float,
        default=float(_env("SUBSIDY_IDLE_SECONDS", 20)),
        help="longest wait for a request message or for the caller to take a reply; then the call ends "
        "with DEADLINE_EXCEEDED (SUBSIDY_IDLE_SECONDS)",
    )
    limits.add_argument(
        "--max-call-seconds",
        type=float,
        default=float(_env("SUBSIDY_MAX_CALL_SECONDS", 600)),
        help="longest call, whatever deadline the caller set (SUBSIDY_MAX_CALL_SECONDS)",
    )
    tls = p.add_argument_group("transport security (plaintext unless --tls-cert is given)")
    tls.add_argument(
        "--tls-cert", default=_env("SUBSIDY_TLS_CERT", None), help="server certificate chain, PEM (SUBSIDY_TLS_CERT)"
    )
    tls.add_argument(
        "--tls-key", default=_env("SUBSIDY_TLS_KEY", None), help="server private key, PEM (SUBSIDY_TLS_KEY)"
    )
    tls.add_argument(
        "--tls-client-ca",
        default=_env("SUBSIDY_TLS_CLIENT_CA", None),
        help="CA for client certificates: mutual TLS, a caller without a certificate from it is refused "
        "(SUBSIDY_TLS_CLIENT_CA)",
    )
    tls.add_argument(
        "--allowed-callers",
        default=_env("SUBSIDY_ALLOWED_CALLERS", None),
        help="comma list of client certificate subject CNs or SAN values allowed to call; others get "
        "PERMISSION_DENIED (SUBSIDY_ALLOWED_CALLERS)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    for name in ("max_message_bytes", "max_batch", "max_concurrent_rpcs", "max_streams_per_connection"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_rpcs_per_caller < 0:
        p.error("--max-rpcs-per-caller must be 0 or more")
    for name in ("idle_seconds", "max_call_seconds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be more than 0")
    from .security import TlsConfig, TlsConfigError

    try:
        args.tls = TlsConfig.from_args(args.tls_cert, args.tls_key, args.tls_client_ca, args.allowed_callers)
    except TlsConfigError as exc:
        p.error(str(exc))
    return args


def hmac_key() -> bytes:
    """SUBSIDY_HMAC_KEY keys the request hash (cache key and audit); set it so hashes survive restarts."""
    key = os.environ.get("SUBSIDY_HMAC_KEY")
    return key.encode() if key else b""


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="subsidy-metrics-"))
    os.environ.setdefault("SUBSIDY_HMAC_KEY", secrets.token_hex(32))
    from . import logs, metrics

    logs.setup(args.log_level)
    worker_argv, skip = [], False
    for a in argv:  # drop "--workers N" / "--workers=N" and "--metrics-port N" / "--metrics-port=N"
        if skip:
            skip = False
        elif a in ("--workers", "--metrics-port"):
            skip = True
        elif not a.startswith(("--workers=", "--metrics-port=")):
            worker_argv.append(a)
    cmd = [sys.executable, "-m", "service", *worker_argv, "--workers", "1", "--metrics-port", "0", "--reuse-port"]
    children = [subprocess.Popen(cmd) for _ in range(args.workers)]
    if args.metrics_port:
        metrics.serve(args.metrics_port)

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, forward)
    # Poll, never block in wait(): a signal delivered to another thread only sets a flag that
    # Python's main thread checks when it runs, and a blocked wait() would never notice it.
    running = set(children)
    while running:
        for child in [c for c in running if c.poll() is not None]:
            running.discard(child)
            metrics.worker_exited(child.pid)  # its live gauges stop counting in the totals
        time.sleep(0.2)
    return max(child.returncode for child in children)


def serve(args: argparse.Namespace) -> int:
    from . import logs

    logs.setup(args.log_level)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    import logging

    from . import logs, metrics
    from .cache import make_cache
    from .decisions import DecisionService, PolicyHolder
    from .server import Admission, Canary, ServerConfig, build_server

    log = logging.getLogger("service")
    key = hmac_key()
    if not key:
        key = secrets.token_bytes(32)
        log.warning("SUBSIDY_HMAC_KEY is not set: request hashes and cache keys last only for this process")
    holder = PolicyHolder(args.policies)
    decisions = DecisionService(holder, make_cache(args.redis_url or None, args.cache_ttl), key)
    cfg = ServerConfig(
        host=args.host,
        port=args.port,
        threads=args.threads,
        reuse_port=args.reuse_port,
        max_message_bytes=args.max_message_bytes,
        max_batch=args.max_batch,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_rpcs_per_caller=args.max_rpcs_per_caller,
        max_streams_per_connection=args.max_streams_per_connection,
        idle_seconds=args.idle_seconds,
        max_call_seconds=args.max_call_seconds,
        tls=args.tls,
        audit=args.audit,
    )
    admission = Admission(cfg.max_concurrent_rpcs, cfg.per_caller)
    server, health_servicer, port = await build_server(decisions, cfg, admission)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    await server.start()
    canary = Canary(decisions, health_servicer, cfg)
    canary.start()
    log.info(
        "serving",
        extra={
            "port": port,
            "metrics_port": args.metrics_port,
            "policy_version": holder.engine.version,
            "pid": os.getpid(),
            "transport": "mtls" if args.tls.mutual else "tls" if args.tls.enabled else "plaintext",
            "allowed_callers": list(args.tls.allowed_callers),
        },
    )
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()  # the loop keeps weak references only

    async def drain(signum: int) -> None:
        canary.stop()
        await health_servicer.enter_graceful_shutdown()  # NOT_SERVING everywhere, and it stays so
        log.info(
            "draining", extra={"signal": signum, "grace_seconds": args.grace, "drain_delay_seconds": args.drain_delay}
        )
        if args.drain_delay > 0:  # still accepting, but health says NOT_SERVING: balancers move away
            await asyncio.sleep(args.drain_delay)
        # New calls get UNAVAILABLE from the service itself (clients retry it elsewhere) while the
        # calls in flight finish; only then does the transport stop. Stopping it at once would leave
        # calls that arrive in that instant unanswered until the grace period ends, then CANCELLED.
        log.info("refusing new calls; finishing requests in flight", extra={"grace_seconds": args.grace})
        began = loop.time()
        await admission.drain(args.grace)
        await server.stop(max(0.5, args.grace - (loop.time() - began)))
        stopped.set()

    def on_stop_signal(signum: int) -> None:
        if tasks:  # a second SIGTERM does not cut the grace period short
            return
        task = loop.create_task(drain(signum))
        tasks.add(task)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal, signum)
    # A reload builds and checks the new set in a thread; requests go on with the old one meanwhile.
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, holder.reload))
    await stopped.wait()
    decisions.cache.close()
    log.info("stopped")
    logs.close()  # every audit line queued is written before exit
    logging.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return supervise(args, argv) if args.workers > 1 else serve(args)


if __name__ == "__main__":
    sys.exit(main())
