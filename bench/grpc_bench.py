"""Service throughput over gRPC, driven by h2load (nghttp2-client) with a prepared gRPC body, so
the load generator costs the service as little CPU as possible."""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PATH = "/subsidy.v1.EligibilityService/Evaluate"


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grpc_body(message) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


@contextmanager
def process(cmd: list[str], port: int, env: dict | None = None):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SUBSIDY_HMAC_KEY": "bench", **(env or {})})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{cmd} did not start: {log.read().decode(errors='replace')[-2000:]}")
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
    return process([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
                    "--metrics-port", "0", "--log-level", "WARNING", *args], port)


def noop(port: int, *args: str):
    return process([sys.executable, "-m", "bench.noop_server", "--port", str(port), *args], port)


@dataclass
class Load:
    rps: float
    mean_ms: float
    max_ms: float


def h2load(port: int, body: bytes, requests: int, clients: int = 8, streams: int = 8,
           path: str = PATH) -> Load:
    """Throughput and latency of `requests` identical calls. h2load sees HTTP status only (gRPC
    errors are trailers), so callers check one reply through a real client first."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(body)
        f.flush()
        cmd = ["h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams), "-t", "1", "-d", f.name,
               "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{path}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if int(ok.group(1)) != requests:
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")
    lat = re.search(r"time for request:\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return Load(rps, float(lat.group(5)) * scale[lat.group(6)], float(lat.group(3)) * scale[lat.group(4)])
