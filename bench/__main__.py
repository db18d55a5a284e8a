"""Run the benchmarks and print a table of ratios measured side by side in one run.

    python -m bench [--seconds 2] [--requests 20000] [--only engine,grpc,cache]
"""
from __future__ import annotations

import argparse

import grpc

from service.api import eligibility_pb2_grpc as pb_grpc

from . import cache_bench, engine_bench, grpc_bench, growth
from .local import free_port
from .people import people


def check_reply(port: int, request) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = pb_grpc.EligibilityServiceStub(channel).Evaluate(request, timeout=10)
        assert reply.policy_version or not reply.decisions


def bench_engine(args) -> None:
    rows = engine_bench.run(args.seconds)
    print("\n## Engine alone (evaluations per second, one thread)")
    base = rows[-2][1]
    for name, value in rows:
        ratio = "" if name.startswith("(") else f"  {value / base:7.4f} of plain Python"
        print(f"{value:12.0f}  {name}{ratio}")


def bench_grpc(args) -> None:
    request = people(1)[0]
    body = grpc_bench.grpc_body(request)
    n = args.requests
    results = {}
    port = free_port()
    with grpc_bench.noop(port):
        check_reply(port, request)
        grpc_bench.h2load(port, body, n // 10)  # warm-up
        results["no-op handler"] = grpc_bench.h2load(port, body, n)
    port = free_port()
    with grpc_bench.service(port, "--cache-ttl", "0"):
        check_reply(port, request)
        grpc_bench.h2load(port, body, n // 10)
        results["Evaluate, cache off"] = grpc_bench.h2load(port, body, n)
    port = free_port()
    with grpc_bench.service(port):
        check_reply(port, request)
        grpc_bench.h2load(port, body, n // 10)
        results["Evaluate, cache hit (in-process LRU)"] = grpc_bench.h2load(port, body, n)
    base = results["no-op handler"].rps
    print(f"\n## gRPC unary (h2load, 8 connections x 8 streams, {n} requests, one worker)")
    print(f"{'':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'of no-op':>9}")
    for name, r in results.items():
        print(f"{name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.rps / base:9.2f}")


def bench_scale(args) -> None:
    """Two workers against one, EvaluateBatch against unary, and latency at half the saturating load."""
    from service.api import eligibility_pb2 as pb

    request = people(1)[0]
    body = grpc_bench.grpc_body(request)
    batch_size = 100
    batch_body = b"".join(grpc_bench.grpc_body(pb.EvaluateBatchRequest(ref=str(i), request=r))
                          for i, r in enumerate(people(batch_size)))
    n = args.requests
    rows = {}
    for workers in (1, 2):
        port = free_port()
        with grpc_bench.service(port, "--cache-ttl", "0", "--workers", str(workers)):
            check_reply(port, request)
            grpc_bench.h2load(port, body, n // 10)
            rows[f"Evaluate, cache off, {workers} worker(s)"] = grpc_bench.h2load(port, body, n)
            if workers == 1:
                batch = grpc_bench.h2load(port, batch_body, max(20, n // batch_size), clients=4, streams=1,
                                          path="/subsidy.v1.EligibilityService/EvaluateBatch")
                rows[f"EvaluateBatch ({batch_size} people a stream), people/s"] = grpc_bench.Load(
                    batch.rps * batch_size, batch.p50_ms, batch.p99_ms)
                half = rows["Evaluate, cache off, 1 worker(s)"].rps / 2
                rows[f"Evaluate at half load ({half:.0f} req/s)"] = grpc_bench.h2load(
                    port, body, clients=8, streams=1, rate=half, seconds=10)
    print(f"\n## Scale (h2load; {n} requests per unary measurement)")
    print(f"{'':48} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in rows.items():
        print(f"{name:48} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}")
    one, two = rows["Evaluate, cache off, 1 worker(s)"], rows["Evaluate, cache off, 2 worker(s)"]
    batch = rows[f"EvaluateBatch ({batch_size} people a stream), people/s"]
    half = next(r for k, r in rows.items() if k.startswith("Evaluate at half"))
    print(f"two workers / one:           {two.rps / one.rps:5.2f}  (target >= 1.6)")
    print(f"batch people/s / unary:      {batch.rps / one.rps:5.2f}  (target >= 3)")
    print(f"p99 / p50 at half load:      {half.p99_ms / half.p50_ms:5.2f}  (target <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine measurement")
    parser.add_argument("--requests", type=int, default=20000, help="per gRPC measurement")
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
