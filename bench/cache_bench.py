"""Decision cache: Evaluate throughput on the cache-hit path against the miss path, side by side in
one run, with h2load sending one prepared gRPC body (bench/grpc_bench.py).

- miss: `--cache-ttl 0`, every call decided by the engine;
- hit, in-process LRU: cache on, the same body every time, so every call after the first is a hit;
- hit, Redis: the same against a private redis-server on a free port (never the shared 6379).

    python -m bench.cache_bench [--seconds 8]
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from service.api import eligibility_pb2_grpc as pb_grpc

from . import grpc_bench
from .local import RedisProcess, free_port
from .people import people

MISS = "Evaluate, cache miss (--cache-ttl 0)"
HIT_LOCAL = "Evaluate, cache hit (in-process LRU)"
HIT_REDIS = "Evaluate, cache hit (Redis)"
RATIO_LOCAL = "ratio: hit (in-process LRU) / miss"
RATIO_REDIS = "ratio: hit (Redis) / miss"
LOAD: dict[str, Any] = {"clients": 16, "streams": 4}  # as bench/__main__.py's unary load


@contextmanager
def redis_server():
    """A private redis-server on a free port, no persistence; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        redis = RedisProcess(free_port(), Path(workdir))
        redis.start()
        try:
            yield redis.url
        finally:
            redis.kill()


def _check(port: int, request, expect_hit: bool) -> None:
    """One real call before measuring (h2load sees HTTP status only): the path is the one named."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.EligibilityServiceStub(channel)
        stub.Evaluate(request, timeout=10)
        reply = stub.Evaluate(request, timeout=10)
    if reply.from_cache != expect_hit:
        raise RuntimeError(f"expected from_cache={expect_hit}, got {reply.from_cache}")


def _measure(request, seconds: float, expect_hit: bool, *service_args: str) -> float:
    body = grpc_bench.grpc_body(request)
    port = free_port()
    with grpc_bench.service(port, *service_args):
        _check(port, request, expect_hit)
        sizes = grpc_bench.unary_reply_bytes(port, request)
        grpc_bench.h2load(port, body, seconds=max(1, round(seconds / 4)), reply_bytes=sizes, **LOAD)  # warm-up
        return grpc_bench.h2load(port, body, seconds=seconds, reply_bytes=sizes, **LOAD).rps


def run(seconds: float) -> list[tuple[str, float]]:
    """Rows (name, req/s) for the miss path and the hit paths, then the hit/miss ratios."""
    request = people(1)[0]
    miss = _measure(request, seconds, False, "--cache-ttl", "0")
    hit_local = _measure(request, seconds, True)
    with redis_server() as url:
        hit_redis = _measure(request, seconds, True, "--redis-url", url)
    return [
        (MISS, miss),
        (HIT_LOCAL, hit_local),
        (HIT_REDIS, hit_redis),
        (RATIO_LOCAL, hit_local / miss),
        (RATIO_REDIS, hit_redis / miss),
    ]


def print_rows(rows: list[tuple[str, float]], seconds: float) -> None:
    print(
        f"\n## Decision cache (h2load, {LOAD['clients']} connections x {LOAD['streams']} streams, {seconds:g} s each, "
        "one worker)"
    )
    for name, value in rows:
        print(f"{value:12.2f}x  {name}" if name.startswith("ratio") else f"{value:12.0f}   {name} (req/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="per measurement")
    args = parser.parse_args()
    print_rows(run(args.seconds), args.seconds)


if __name__ == "__main__":
    main()
