"""Several replicas of the service sharing one private redis-server and one HMAC key, a private
nginx in front of them as the gRPC load balancer, and a bounded load that records every call.

Used by test_replicas.py (through nginx) and test_client_balancing.py (client-side round_robin).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from support import (  # noqa: F401 (scrape and metric re-exported for the replica tests)
    HANGZHOU_NURSING_CASE,
    ROOT,
    ServiceProcess,
    free_port,
    make_id,
    metric,
    request,
    scrape,
    wait_serving,
)

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

HMAC_KEY = "replicas-test-key"
NURSING = "disability_nursing_subsidy"


def hangzhou_request(seq: int) -> pb.EvaluateRequest:
    """The README's Hangzhou nursing case with its own ID number per `seq` (1,000 distinct people)."""
    return request("2020-08-01", [NURSING], **{**HANGZHOU_NURSING_CASE, "id_number": make_id("1970-05-05", seq=seq)})


def start_replica(tmp: Path, port: int, policies: Path, redis_url: str, *args: str, name: str) -> ServiceProcess:
    """A service process on a given port (a restarted replica keeps its address in the balancer)."""
    metrics_port = free_port()
    log_path = tmp / f"{name}-{time.monotonic_ns()}.log"
    env = {**os.environ, "SUBSIDY_HMAC_KEY": HMAC_KEY}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
            + ["--metrics-port", str(metrics_port), "--policies", str(policies), "--redis-url", redis_url, *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return ServiceProcess(proc, port, metrics_port, log_path)


def wait_replicas(replicas: list[ServiceProcess]) -> None:
    for replica in replicas:
        try:
            wait_serving(replica.address, timeout=60, proc=replica.proc)
        except Exception as exc:
            for r in replicas:
                r.stop(signal.SIGKILL)
            raise RuntimeError(f"replica {replica.port} did not start:\n{replica.log_text()}") from exc


# ----------------------------------------------------------------------------- nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format calls escape=json '{{"msec":$msec,"request_time":$request_time,"seq":"$http_x_load_seq",'
        '"status":$status,"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
        '"grpc_status":"$upstream_trailer_grpc_status"}}';
    access_log {dir}/access.log calls;
    upstream subsidy {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            # Without upstream keepalive every call opens its own connection to a replica: a replica
            # that is gone or has stopped listening refuses it, which is an `error` nginx retries
            # on the next replica. A call already sent (POST) is not retried.
            grpc_pass grpc://subsidy;
            grpc_next_upstream error timeout;
            grpc_connect_timeout 1s;
            grpc_read_timeout 30s;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """A private nginx (Debian's package) with its own prefix, config, pid and logs in a temp dir."""

    dir: Path
    upstreams: list[int]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(binary).exists(), "nginx not found: install Debian's package `nginx` (make system-deps)"
        conf = self.dir / "nginx.conf"
        return [binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")]

    def _write_conf(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in self.upstreams)
        # As root the workers would run as `nobody`, who cannot enter pytest's private temp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(dir=self.dir, port=self.port, servers=servers, user=user)
        (self.dir / "nginx.conf").write_text(conf)
        check = subprocess.run([*self._command(), "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr

    def start(self) -> None:
        self._write_conf()
        self.proc = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_serving(self.address, timeout=30, proc=self.proc)

    def _workers_started(self) -> int:
        return (self.dir / "error.log").read_text().count("start worker process")

    def set_upstreams(self, ports: list[int]) -> None:
        """What an endpoints controller does: a new upstream list, then a graceful reload (SIGHUP).
        Returns once the new worker runs; the old one finishes its calls and closes its connections."""
        assert self.proc is not None and self.proc.poll() is None
        self.upstreams = list(ports)
        before = self._workers_started()
        self._write_conf()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self._workers_started() == before:
            assert time.monotonic() < deadline, "nginx did not reload"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def access_log(self) -> list[dict]:
        path = self.dir / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# ----------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Call:
    seq: int
    started: float  # time.time(), the clock nginx logs with
    ended: float
    code: str  # "OK" or the gRPC status code name
    policy_version: str = ""
    amount_fen: int = -1
    from_cache: bool = False


class Load:
    """`clients` threads each sending one Evaluate at a time to `target`, with a per-call deadline,
    until stopped, or until `max_calls` or `max_seconds` (hard bounds: the load always ends).
    Call numbers (`seq`, sent as `x-load-seq` metadata and logged by nginx) are unique per process."""

    _first_seqs = itertools.count(0, 1_000_000)

    def __init__(
        self,
        channel_factory: Callable[[], grpc.Channel],
        clients: int = 6,
        deadline: float = 10.0,
        max_calls: int = 20_000,
        max_seconds: float = 300.0,
        make_request: Callable[[int], pb.EvaluateRequest] = hangzhou_request,
    ) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._seq = next(Load._first_seqs)
        self._first_seq = self._seq
        self._max_calls, self._deadline = max_calls, deadline
        self._end = time.monotonic() + max_seconds
        self._make_request = make_request
        self._channels = [channel_factory() for _ in range(clients)]
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in self._channels]

    def _next_seq(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self._seq - self._first_seq >= self._max_calls or time.monotonic() > self._end:
                return None
            self._seq += 1
            return self._seq

    def _run(self, channel: grpc.Channel) -> None:
        stub = pb_grpc.EligibilityServiceStub(channel)
        while (seq := self._next_seq()) is not None:
            req = self._make_request(seq)
            started = time.time()
            try:
                reply = stub.Evaluate(req, timeout=self._deadline, metadata=(("x-load-seq", str(seq)),))
                call = Call(
                    seq,
                    started,
                    time.time(),
                    "OK",
                    reply.policy_version,
                    sum(d.monthly_amount.fen for d in reply.decisions),
                    reply.from_cache,
                )
            except grpc.RpcError as err:
                call = Call(seq, started, time.time(), err.code().name)
            with self._changed:
                self.calls.append(call)
                self._changed.notify_all()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        for c in self._channels:
            c.close()

    def done(self) -> int:
        with self._lock:
            return len(self.calls)

    def wait_for(self, count: int, timeout: float = 180) -> None:
        """Until `count` calls in all have finished (a hang guard, not a speed requirement)."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, timeout), (
                f"only {len(self.calls)} of {count} calls finished in {timeout}s"
            )

    def failed(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.code != "OK"]


@contextmanager
def replicas_with_redis(
    tmp: Path, redis_url: str, policies: Path, n: int, *args: str
) -> Iterator[list[ServiceProcess]]:
    replicas = [start_replica(tmp, free_port(), policies, redis_url, *args, name=f"r{i}") for i in range(n)]
    try:
        wait_replicas(replicas)
        yield replicas
    finally:
        for r in replicas:
            r.stop(signal.SIGKILL)
