"""Run the benchmarks and print a table of ratios measured side by side in one run.

python -m bench [--seconds 2] [--load-seconds 10] [--persons 1000000]
                [--only engine,grpc,scale,growth,cache,columnar,population]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

from . import cache_bench, columnar_bench, engine_bench, growth, grpc_bench, population_bench
from .local import free_port
from .people import people

# 16 connections x 4 streams: 64 calls in flight, under the server's limit of 100 concurrent RPCs
# (beyond it calls would be refused, not queued), and enough connections that SO_REUSEPORT spreads
# them over two workers evenly enough.
UNARY_LOAD = {"clients": 16, "streams": 4}
SAME_PERSON_BATCH = "EvaluateBatch, the same person x 100 a stream, people/s"


def measure(server, port: int, request, seconds: float, **load) -> grpc_bench.Load:
    """Warm up, then drive the server for `seconds`, checking that every reply was a good one."""
    sizes = grpc_bench.unary_reply_bytes(port, request)
    body = grpc_bench.grpc_body(request)
    options = {**UNARY_LOAD, **load}
    grpc_bench.h2load(port, body, seconds=max(1, round(seconds / 4)), reply_bytes=sizes, **options)
    return grpc_bench.h2load(port, body, seconds=seconds, reply_bytes=sizes, server_pid=server.pid, **options)


def bench_engine(args) -> None:
    rows = engine_bench.run(args.seconds)
    print("\n## Engine alone (evaluations per second, one thread)")
    base = rows[-2][1]
    for name, value in rows:
        ratio = "" if name.startswith("(") else f"  {value / base:7.4f} of plain Python"
        print(f"{value:12.0f}  {name}{ratio}")


def bench_grpc(args) -> None:
    """Evaluate (cache off, cache hit) against the no-op handler: the configurations take turns for
    `--rounds` rounds and each row is its median, so a noisy minute does not decide a ratio."""
    request = people(1)[0]
    seconds = args.load_seconds
    port = free_port()
    with grpc_bench.service(port, "--cache-ttl", "0"):
        reply = grpc_bench.unary_reply(port, request)
    with tempfile.NamedTemporaryFile(suffix=".bin") as reply_file:
        reply_file.write(reply)
        reply_file.flush()
        runs = _grpc_rounds(args, request, reply_file.name)
    results = {name: median_load(loads) for name, loads in runs.items()}
    base = results["no-op handler"].rps
    print(
        f"\n## gRPC unary (h2load, {UNARY_LOAD['clients']} connections x {UNARY_LOAD['streams']} streams, "
        f"{seconds:g} s each, one worker; median of {args.rounds} rounds)"
    )
    print(
        f"{'':50} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'of no-op':>9} {'server':>7} {'h2load':>7}  rounds (req/s)"
    )
    for name, r in results.items():
        every = " ".join(f"{load.rps:.0f}" for load in runs[name])
        print(
            f"{name:50} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.rps / base:9.2f} {r.server_cores:7.2f}"
            f" {r.h2load_cores:7.2f}  {every}"
        )
    print("(server, h2load: CPU cores each used during the measurement)")
    print(f"Evaluate / no-op:            {results['Evaluate, cache off'].rps / base:5.2f}  (target >= 0.6)")
    print(
        f"cache hit / no-op:           {results['Evaluate, cache hit (in-process LRU)'].rps / base:5.2f}  "
        "(target >= 0.9)"
    )


def _grpc_rounds(args, request, reply_path: str) -> dict[str, list[grpc_bench.Load]]:
    configurations = {
        "no-op handler": lambda port: grpc_bench.noop(port),
        "no-op handler, answering Evaluate's reply bytes": lambda port: grpc_bench.noop(port, "--reply", reply_path),
        "Evaluate, cache off": lambda port: grpc_bench.service(port, "--cache-ttl", "0"),
        "Evaluate, cache hit (in-process LRU)": lambda port: grpc_bench.service(port),
    }
    runs: dict[str, list[grpc_bench.Load]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, start in configurations.items():
            port = free_port()
            with start(port) as server:
                runs[name].append(measure(server, port, request, args.load_seconds))
    return runs


def median_load(loads: list[grpc_bench.Load]) -> grpc_bench.Load:
    """The round with the median throughput (its own latencies with it)."""
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


def bench_scale(args) -> None:
    """Two workers against one, EvaluateBatch against unary, and latency at half the saturating load."""
    from service.api import eligibility_pb2 as pb

    request = people(1)[0]
    seconds = args.load_seconds
    batch_size = 100
    # The unary measurement repeats one person (h2load sends one body), so the batch that it is
    # compared with carries that person too; a batch of different people is shown beside it.
    batches = {
        SAME_PERSON_BATCH: [pb.EvaluateBatchRequest(ref=str(i), request=request) for i in range(batch_size)],
        f"EvaluateBatch, {batch_size} different people a stream, people/s": [
            pb.EvaluateBatchRequest(ref=str(i), request=r) for i, r in enumerate(people(batch_size))
        ],
    }
    runs: dict[str, list[grpc_bench.Load]] = {}
    for round_ in range(args.rounds):
        for workers in (1, 2):
            port = free_port()
            with grpc_bench.service(port, "--cache-ttl", "0", "--workers", str(workers)) as server:
                unary = measure(server, port, request, seconds)
                runs.setdefault(f"Evaluate, cache off, {workers} worker(s)", []).append(unary)
                for name, batch in batches.items() if workers == 1 else ():
                    sizes = grpc_bench.stream_reply_bytes(port, batch)
                    load = grpc_bench.h2load(
                        port,
                        b"".join(grpc_bench.grpc_body(item) for item in batch),
                        seconds=seconds,
                        clients=4,
                        streams=1,
                        path=grpc_bench.BATCH_PATH,
                        reply_bytes=sizes,
                        server_pid=server.pid,
                    )
                    runs.setdefault(name, []).append(dataclasses.replace(load, rps=load.rps * batch_size))
                if workers == 1 and round_ == 0:
                    half = unary.rps / 2
                    runs[f"Evaluate at half load ({half:.0f} req/s)"] = [
                        grpc_bench.h2load(
                            port,
                            grpc_bench.grpc_body(request),
                            clients=8,
                            streams=1,
                            rate=half,
                            seconds=max(3, seconds),
                            reply_bytes=grpc_bench.unary_reply_bytes(port, request),
                            server_pid=server.pid,
                        )
                    ]
    rows = {name: median_load(loads) for name, loads in runs.items()}
    print(f"\n## Scale (h2load, {seconds:g} s a measurement; median of {args.rounds} rounds)")
    print(f"{'':58} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server':>7} {'h2load':>7}  rounds (per s)")
    for name, r in rows.items():
        every = " ".join(f"{load.rps:.0f}" for load in runs[name])
        print(
            f"{name:58} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.server_cores:7.2f} {r.h2load_cores:7.2f}"
            f"  {every}"
        )
    one, two = rows["Evaluate, cache off, 1 worker(s)"], rows["Evaluate, cache off, 2 worker(s)"]
    batch_rate = rows[SAME_PERSON_BATCH]
    at_half = next(r for k, r in rows.items() if k.startswith("Evaluate at half"))
    print(f"two workers / one:           {two.rps / one.rps:5.2f}  (target >= 1.6)")
    print(f"batch people/s / unary:      {batch_rate.rps / one.rps:5.2f}  (target >= 3)")
    print(f"p99 / p50 at half load:      {at_half.p99_ms / at_half.p50_ms:5.2f}  (target <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine measurement")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="per gRPC measurement")
    parser.add_argument("--rounds", type=int, default=3, help="turns each gRPC configuration takes")
    parser.add_argument("--evaluations", type=int, default=1_000_000, help="for the memory measurement")
    parser.add_argument("--persons", type=int, default=1_000_000, help="population job: persons (and 10x streamed)")
    parser.add_argument("--only", default="engine,grpc,cache,scale,growth,columnar,population")
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
        cache_bench.print_rows(cache_bench.run(args.load_seconds), args.load_seconds)
    if "columnar" in sections:
        # As many persons as the memory measurement's evaluations (1M), a tenth of them compared.
        columnar_bench.print_rows(columnar_bench.run(args.evaluations, max(args.evaluations // 10, 1000)))
    if "population" in sections:
        population_bench.print_rows(population_bench.run(args.persons))


if __name__ == "__main__":
    main()
