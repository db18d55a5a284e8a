"""A real Prometheus server scrapes the running service's metrics port.

Uses the session-scoped `server` fixture of conftest.py (`.address` "127.0.0.1:PORT" for gRPC,
`.metrics_port` for the prometheus-client HTTP endpoint) and the `prometheus` binary of the
Debian package `prometheus`; fails (never skips) when the binary is missing.  Prometheus runs
on a free loopback port with its own temporary configuration and storage, loads
deploy/prometheus/alerts.yml, and is stopped at the end of the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc
import pytest
import yaml
from support import free_port

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "subsidy"
CALLS = 5
TIMEOUT_S = 30.0
EXPECTED_ALERTS = {
    "SubsidyHighErrorRatio",
    "SubsidyHighLatency",
    "SubsidyCacheDown",
    "SubsidyPolicyReloadFailed",
    "SubsidyEngineDisagreement",
    "SubsidyDown",
    "SubsidyRequestsRefused",
}


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail(
        f"{name} not found on PATH or at /usr/bin/{name}: "
        "install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus)"
    )


@dataclass
class Prometheus:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def fail(self, message: str) -> NoReturn:
        pytest.fail(f"{message}\n--- prometheus log ({self.log_path}) ---\n{self.log()}")

    def get(self, path: str, **params) -> dict | None:
        """JSON body of a GET on the HTTP API, or None while Prometheus does not answer."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return {"raw": body.decode(errors="replace")}

    def query(self, promql: str) -> list[dict]:
        body = self.get("/api/v1/query", query=promql)
        if body is None:
            return []
        if body.get("status") != "success":
            self.fail(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def check_alive(self):
        if self.process.poll() is not None:
            self.fail(f"prometheus exited with code {self.process.returncode}")


def _start_prometheus(binary: str, workdir: Path, metrics_target: str) -> Prometheus:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [metrics_target]}]},
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "prometheus.log"

    last: Prometheus | None = None
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=info",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        prom = Prometheus(process, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            body = prom.get("/-/ready")
            if body is not None:
                return prom
            time.sleep(0.2)
        last = prom
        if process.poll() is None:  # never got ready: give up
            _stop(prom)
            prom.fail(f"prometheus not ready on {prom.url} after {TIMEOUT_S:.0f}s")
        if "address already in use" not in prom.log():
            break
    assert last is not None
    last.fail(f"prometheus exited with code {last.process.returncode} at start-up")


def _stop(prom: Prometheus):
    if prom.process.poll() is None:
        prom.process.terminate()
        try:
            prom.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.process.kill()
            prom.process.wait(timeout=5)


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    binary = find_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    host = server.address.rsplit(":", 1)[0]
    prom = _start_prometheus(binary, workdir, f"{host}:{server.metrics_port}")
    try:
        yield prom
    finally:
        _stop(prom)


def call_list_programs(server, n: int):
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.EligibilityServiceStub(channel)
        for _ in range(n):
            reply = stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01"), timeout=10)
            assert reply.programs, "ListPrograms answered no programs"


def wait_for_counter(prom: Prometheus, server, minimum: float) -> float:
    """Poll until Prometheus holds subsidy_grpc_requests_total{method="ListPrograms", code="OK"}
    >= minimum for the service's target; return the value seen."""
    instance = f"{server.address.rsplit(':', 1)[0]}:{server.metrics_port}"
    deadline = time.monotonic() + TIMEOUT_S
    seen: list[dict] = []
    while time.monotonic() < deadline:
        prom.check_alive()
        seen = prom.query("subsidy_grpc_requests_total")
        for sample in seen:
            labels = sample["metric"]
            if (
                labels.get("job") == JOB
                and labels.get("instance") == instance
                and labels.get("method") == "ListPrograms"
                and labels.get("code") == "OK"
            ):
                value = float(sample["value"][1])
                if value >= minimum:
                    return value
        time.sleep(0.5)
    prom.fail(
        f'subsidy_grpc_requests_total{{method="ListPrograms", code="OK"}} did not reach {minimum} '
        f"within {TIMEOUT_S:.0f}s; last query result: {seen}"
    )


def test_prometheus_scrapes_request_counter(server, prometheus):
    call_list_programs(server, CALLS)
    first = wait_for_counter(prometheus, server, CALLS)

    up = prometheus.query(f'up{{job="{JOB}"}}')
    assert [float(s["value"][1]) for s in up] == [1.0], up

    # Scraping goes on: later calls show up too.
    call_list_programs(server, CALLS)
    wait_for_counter(prometheus, server, first + CALLS)


def test_prometheus_evaluates_alert_rules_without_errors(server, prometheus):
    deadline = time.monotonic() + TIMEOUT_S
    rules: list[dict] = []
    while time.monotonic() < deadline:
        prometheus.check_alive()
        body = prometheus.get("/api/v1/rules", type="alert")
        if body and body.get("status") == "success":
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            # Two evaluations after the first scrape so that rate() has two samples.
            if (
                rules
                and all(r.get("health") != "unknown" for r in rules)
                and prometheus.query(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 3')
            ):
                break
        time.sleep(0.5)
    else:
        prometheus.fail(f"alert rules not evaluated within {TIMEOUT_S:.0f}s: {rules}")
    time.sleep(2)  # one more evaluation on the data now present
    body = prometheus.get("/api/v1/rules", type="alert")
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == EXPECTED_ALERTS
    broken = {r["name"]: r.get("lastError") for r in rules if r.get("health") != "ok"}
    if broken:
        prometheus.fail(f"alert rules failing to evaluate: {broken}")
