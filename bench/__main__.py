"""Run the benchmarks and print a table of ratios measured side by side in one run.

    python -m bench [--seconds 2] [--load-seconds 10] [--only engine,grpc,scale,growth,cache]
"""
from __future__ import annotations

import argparse

from . import cache_bench, engine_bench, grpc_bench, growth
from .local import free_port
from .people import people


# 16 connections x 4 streams: 64 calls in flight, under the server's limit of 100 concurrent RPCs
# (beyond it calls would be refused, not queued), and enough connections that SO_REUSEPORT spreads
# them over two workers evenly enough.
UNARY_LOAD = {"clients": 16, "streams": 4}


def measure(port: int, request, seconds: float, **load) -> grpc_bench.Load:
    """Warm up, then drive the server for `seconds`, checking that every reply was a good one."""
    sizes = grpc_bench.unary_reply_bytes(port, request)
    body = grpc_bench.grpc_body(request)
    options = {**UNARY_LOAD, **load}
    grpc_bench.h2load(port, body, seconds=max(1, round(seconds / 4)), reply_bytes=sizes, **options)
    return grpc_bench.h2load(port, body, seconds=seconds, reply_bytes=sizes, **options)


def bench_grpc(args) -> None:
    request = people(1)[0]
    seconds = args.load_seconds
    results = {}
    port = free_port()
    with grpc_bench.noop(port):
        results["no-op handler"] = measure(port, request, seconds)
    port = free_port()
    with grpc_bench.service(port, "--cache-ttl", "0"):
        results["Evaluate, cache off"] = measure(port, request, seconds)
    port = free_port()
    with grpc_bench.service(port):
        results["Evaluate, cache hit (in-process LRU)"] = measure(port, request, seconds)
    base = results["no-op handler"].rps
    print(f"\n## gRPC unary (h2load, {UNARY_LOAD['clients']} connections x {UNARY_LOAD['streams']} streams, "
          f"{seconds:g} s each, one worker)")
    print(f"{'':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'of no-op':>9}")
    for name, r in results.items():
        print(f"{name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.rps / base:9.2f}")
    print(f"Evaluate / no-op:            {results['Evaluate, cache off'].rps / base:5.2f}  (target >= 0.6)")
    print(f"cache hit / no-op:           {results['Evaluate, cache hit (in-process LRU)'].rps / base:5.2f}  "
          "(target >= 0.9)")


def bench_scale(args) -> None:
    """Two workers against one, EvaluateBatch against unary, and latency at half the saturating load."""
    from service.api import eligibility_pb2 as pb

    request = people(1)[0]
    seconds = args.load_seconds
    batch_size = 100
    batch = [pb.EvaluateBatchRequest(ref=str(i), request=r) for i, r in enumerate(people(batch_size))]
    batch_body = b"".join(grpc_bench.grpc_body(item) for item in batch)
    rows = {}
    for workers in (1, 2):
        port = free_port()
        with grpc_bench.service(port, "--cache-ttl", "0", "--workers", str(workers)):
            rows[f"Evaluate, cache off, {workers} worker(s)"] = measure(port, request, seconds)
            if workers == 1:
                sizes = grpc_bench.stream_reply_bytes(port, batch)
                load = grpc_bench.h2load(port, batch_body, seconds=seconds, clients=4, streams=1,
                                         path=grpc_bench.BATCH_PATH, reply_bytes=sizes)
                rows[f"EvaluateBatch ({batch_size} people a stream), people/s"] = grpc_bench.Load(
                    load.rps * batch_size, load.p50_ms, load.p99_ms)
                half = rows["Evaluate, cache off, 1 worker(s)"].rps / 2
                rows[f"Evaluate at half load ({half:.0f} req/s)"] = grpc_bench.h2load(
                    port, grpc_bench.grpc_body(request), clients=8, streams=1, rate=half, seconds=10,
                    reply_bytes=grpc_bench.unary_reply_bytes(port, request))
    print(f"\n## Scale (h2load, {seconds:g} s a measurement)")
    print(f"{'':48} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in rows.items():
        print(f"{name:48} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}")
    one, two = rows["Evaluate, cache off, 1 worker(s)"], rows["Evaluate, cache off, 2 worker(s)"]
    batch_rate = rows[f"EvaluateBatch ({batch_size} people a stream), people/s"]
    half = next(r for k, r in rows.items() if k.startswith("Evaluate at half"))
    print(f"two workers / one:           {two.rps / one.rps:5.2f}  (target >= 1.6)")
    print(f"batch people/s / unary:      {batch_rate.rps / one.rps:5.2f}  (target >= 3)")
    print(f"p99 / p50 at half load:      {half.p99_ms / half.p50_ms:5.2f}  (target <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine measurement")
    parser.add_argument("--load-seconds", type=float, default=10.0, help="per gRPC measurement")
    parser.add_argument("--requests", type=int, default=20000, help="per cache measurement")
    parser.add_argument("--evaluations", type=int, default=1_000_000, help="for the memory measurement")
    parser.add_argument("--only", default="engine,grpc,cache,scale,growth")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    if "engine" in sections:
        bench_engine(args)
    if "grpc" in sections:
        bench_grpc(args)
    if "scale" in sections:
        bench_scale(args)
    if "growth" in sections:
        print(f"\n## Growth and memory (engine alone, {args.evaluations} evaluations for memory)")
        for name, value in growth.run(args.seconds, evaluations=args.evaluations):
            print(f"{value:14.2f}  {name}")
    if "cache" in sections:
        cache_bench.print_rows(cache_bench.run(args.requests), args.requests)


if __name__ == "__main__":
    main()
