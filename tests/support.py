"""Helpers for the tests: free ports, real processes, requests from plain dicts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.local import RedisProcess, free_port  # noqa: F401 (re-exported for the tests)
from policycheck.requests import make_id, person, request  # noqa: F401 (re-exported for the tests)
from service.api import eligibility_pb2_grpc as pb_grpc
from service.logs import WRITE_INTERVAL

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


HANGZHOU_NURSING_CASE: dict[str, Any] = dict(
    birth_date="1970-05-05",
    region_code="330102",
    household_status="dibao",
    disability={"grade": 1, "category": "physical"},
    long_term_care_need=True,
    self_care="fully_dependent",
)


@dataclass
class ServiceProcess:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stub(self) -> pb_grpc.EligibilityServiceStub:
        return pb_grpc.EligibilityServiceStub(grpc.insecure_channel(self.address))

    def log_text(self) -> str:
        """The log so far. A running service writes audit lines in batches (service/logs.py): give
        the writer time for the lines of every call that has already returned."""
        if self.proc.poll() is None:
            time.sleep(4 * WRITE_INTERVAL)
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def stop_gracefully(service: ServiceProcess, timeout: float = 60) -> int:
    """SIGTERM and wait: the service drains and exits, and so writes its last log lines and, under
    `make coverage`, its coverage data. A service that does not stop is killed, and that fails."""
    try:
        return service.stop(signal.SIGTERM, timeout)
    except subprocess.TimeoutExpired:
        service.stop(signal.SIGKILL)
        raise


# A hang guard, not a speed limit: on a shared 2-core machine under load (and under coverage) a
# service has taken 30 s to start.
START_TIMEOUT = 180


def wait_serving(address: str, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                channel.close()
                return
        except grpc.RpcError:
            time.sleep(0.1)
    channel.close()
    raise TimeoutError(f"service at {address} not serving after {timeout}s")


def start_service(tmp: Path, *args: str, env: dict | None = None, name: str = "service") -> ServiceProcess:
    port, metrics_port = free_port(), free_port()
    log_path = tmp / f"{name}-{port}.log"
    full_env = {**os.environ, "SUBSIDY_HMAC_KEY": "test-key", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                *args,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    service = ServiceProcess(proc, port, metrics_port, log_path)
    try:
        wait_serving(service.address, proc=proc)
    except Exception as exc:
        service.stop(signal.SIGKILL)
        raise RuntimeError(f"service did not start:\n{service.log_text()}") from exc
    return service


def scrape(service: ServiceProcess) -> str:
    """The service's metrics endpoint as text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples in scraped text whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_value(service: ServiceProcess, name: str, **labels: str) -> float:
    """The sum of a sample's values on the service's metrics endpoint (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def wait_for_metric(service: ServiceProcess, name: str, at_least: float, timeout: float = 60, **labels: str) -> float:
    """Wait until a counter reaches `at_least`: the event itself, not a guess at how long it takes.
    The timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        seen = metric_value(service, name, **labels)
        if seen >= at_least:
            return seen
        if service.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} is {seen}, never reached {at_least}:\n{service.log_text()}")
        time.sleep(0.05)


def log_records(service: ServiceProcess) -> list[dict[str, Any]]:
    """The service's JSON log lines so far, parsed."""
    return [json.loads(line) for line in service.log_text().splitlines() if line.startswith("{")]


def wait_for_log_lines(service: ServiceProcess, message: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until the log holds `count` lines with this message (the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in log_records(service) if r.get("message") == message]
        if len(found) >= count:
            return found
        if service.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} {message!r} lines, expected {count}:\n{service.log_text()}")
