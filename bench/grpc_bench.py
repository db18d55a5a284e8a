"""Service throughput over gRPC, driven by h2load (nghttp2-client) with a prepared gRPC body, so
the load generator costs the service as little CPU as possible."""

from __future__ import annotations

import os
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PATH = "/subsidy.v1.EligibilityService/Evaluate"
BATCH_PATH = "/subsidy.v1.EligibilityService/EvaluateBatch"
FRAME = 5  # gRPC message framing: a compression flag byte and a 4-byte length
FROM_CACHE_BYTES = 2  # the from_cache = true field a cache hit adds


def grpc_body(message) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


@contextmanager
def process(cmd: list[str], port: int, env: dict | None = None):
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SUBSIDY_HMAC_KEY": "bench", **(env or {})},
        )
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 180  # a hang guard: a loaded machine starts slowly
            while True:
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(
                            f"{cmd} did not start: {log.read().decode(errors='replace')[-2000:]}"
                        ) from None
                    time.sleep(0.1)
            channel.close()
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def service(port: int, *args: str):
    """The service as deployed: INFO logging, so an audit line per decision (to a temporary file)."""
    return process(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0", *args],
        port,
    )


def noop(port: int, *args: str):
    return process([sys.executable, "-m", "bench.noop_server", "--port", str(port), *args], port)


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cores: float = float("nan")  # CPU seconds per second of the server's processes
    h2load_cores: float = float("nan")  # and of the load generator


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process, its threads and its child processes (the workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _search(pattern: str, out: str) -> re.Match[str]:
    found = re.search(pattern, out)
    if found is None:
        raise RuntimeError(f"h2load: no {pattern!r} in its output:\n{out}")
    return found


def h2load(
    port: int,
    body: bytes,
    requests: int = 0,
    clients: int = 8,
    streams: int = 8,
    path: str = PATH,
    rate: float | None = None,
    seconds: float | None = None,
    reply_bytes: tuple[int, int] | None = None,
    server_pid: int | None = None,
) -> Load:
    """Throughput and latency percentiles of identical calls (a count, or a duration at a rate).

    h2load sees HTTP status only: a gRPC error is an HTTP 200 whose status is in the trailers and
    whose body is empty. So with `reply_bytes` (the least and most DATA bytes one good reply takes,
    framing included) the DATA received must add up to that many bytes per request done; a
    RESOURCE_EXHAUSTED or INTERNAL reply would fall short (so no --warm-up-time: its traffic would
    count too; warm up with a call of its own). A duration (`seconds`) keeps every
    connection busy to the end; a count gives each connection an equal share, so a worker that
    happened to get fewer connections would sit idle while the others finish theirs.
    """
    with tempfile.NamedTemporaryFile(suffix=".bin") as f, tempfile.NamedTemporaryFile(suffix=".log") as log:
        f.write(body)
        f.flush()
        cmd = [
            "h2load",
            "-c",
            str(clients),
            "-m",
            str(streams),
            "-t",
            "1",
            "-d",
            f.name,
            "--log-file",
            log.name,
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
        cmd += ["-D", str(round(seconds))] if seconds else ["-n", str(requests)]
        if rate:
            cmd += ["--rps", f"{rate / clients:.2f}"]
        server_before = tree_cpu_seconds(server_pid) if server_pid else float("nan")
        children_before, started_at = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        out = subprocess.run(
            cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
        ).stdout
        elapsed = time.monotonic() - started_at
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        h2load_cores = (
            children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
        ) / elapsed
        server_cores = ((tree_cpu_seconds(server_pid) - server_before) / elapsed) if server_pid else float("nan")
        rows = [line.split("\t") for line in Path(log.name).read_text().splitlines() if line.strip()]
    done = _search(
        r"requests: \d+ total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored",
        out,
    )
    if int(done.group(4)) or int(done.group(5)) or any(r[1] != "200" for r in rows):
        raise RuntimeError(f"h2load: requests failed:\n{out}")
    if reply_bytes:
        data = int(_search(r"traffic: .*, [\d.]+\w*B \((\d+)\) data", out).group(1))
        started, succeeded = int(done.group(1)), int(done.group(3))
        # Calls still running when a duration ends were cut off part way: they may add part of a reply.
        if not succeeded * reply_bytes[0] <= data <= started * reply_bytes[1]:
            raise RuntimeError(
                f"h2load: {data} bytes of replies for {succeeded} requests, expected "
                f"{reply_bytes[0]} to {reply_bytes[1]} each: some calls failed\n{out}"
            )
    latencies = sorted(int(r[2]) / 1000 for r in rows)
    rps = float(_search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    return Load(rps, percentile(latencies, 50), percentile(latencies, 99), server_cores, h2load_cores)


def unary_reply(port: int, request, path: str = PATH) -> bytes:
    """One reply's bytes, fetched raw through a real client."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[Any, bytes] = channel.unary_unary(
            path, request_serializer=type(request).SerializeToString
        )
        return call(request, timeout=10)


def unary_reply_bytes(port: int, request, path: str = PATH) -> tuple[int, int]:
    """DATA bytes of one good reply: (as computed, as a cache hit)."""
    size = FRAME + len(unary_reply(port, request, path))
    return size, size + FROM_CACHE_BYTES


def stream_reply_bytes(port: int, requests: list, path: str = BATCH_PATH) -> tuple[int, int]:
    """DATA bytes of one good reply stream to `requests`, fetched raw through a real client."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.StreamStreamMultiCallable[Any, bytes] = channel.stream_stream(
            path, request_serializer=type(requests[0]).SerializeToString
        )
        replies = list(call(iter(requests), timeout=60))
    if len(replies) != len(requests):
        raise RuntimeError(f"{len(replies)} replies to {len(requests)} requests")
    size = sum(FRAME + len(r) for r in replies)
    return size, size


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]
