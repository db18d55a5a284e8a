"""Sustained load with faults: the service must keep answering correctly through all of them.

    python -m bench.soak --seconds 180 [--clients 4x4] [--workers 2] [--json]

Starts its own redis-server on a free loopback port (never the shared one) and the service on a
copy of the policies with REDIS_URL, then drives it with many concurrent clients (processes of
threads, a gRPC channel each) while, on a timeline over --seconds:

  15%  redis-server is killed (SIGKILL)         30%  started again on the same port
  45%  a broken policy (a non-numeric dibao standard) + SIGHUP: must be refused, old version serves
  60%  a good new policy (Hangzhou's 2020 dibao standard 1,080 -> 1,100) + SIGHUP: switches
  75%  redis-server killed again                85%  started again
 100%  SIGTERM: health NOT_SERVING, requests in flight finish, exit 0

Every reply is checked against the reply computed in this process from the same policy
directory for the version the reply names (all fields but `from_cache`): a reply that mixed two
policy versions, or any wrong answer, is a failure. Deliberate rejections are counted apart:
invalid requests (INVALID_ARGUMENT with field violations), oversized messages
(RESOURCE_EXHAUSTED) and calls started after SIGTERM once the server stopped accepting
(UNAVAILABLE, or CANCELLED for a call that reached the transport in the instant it stopped).
A call started before SIGTERM must succeed. Anything else is unexpected; the exit code is 1 if
there is any, if a reload went the wrong way, if the service exits non-zero, or if an ID number
appears in its logs or metrics.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from .local import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
HMAC_KEY = "soak-test-key"
AS_OF = "2020-08-01"
GOOD_CHANGE = (
    "{from: 2020-07-01, value: 1080, source: reference}",
    "{from: 2020-07-01, value: 1100, source: reference}",
)
BROKEN_CHANGE = (
    "{from: 2020-07-01, value: 1080, source: reference}",
    "{from: 2020-07-01, value: one thousand, source: reference}",
)
DIBAO_FILE = Path("parameters/common/dibao_standard.yaml")
EXPECTED_REFUSALS = {"rejected_invalid_argument", "rejected_oversize", "refused_after_sigterm"}


# --- the cases and their expected replies ------------------------------------------------------


def cases(n: int) -> list[bytes]:
    from .people import people

    out = []
    for r in people(n, seed=11):
        r.as_of = AS_OF
        out.append(r.SerializeToString())
    return out


def expected_replies(policy_dir: Path, requests: list[bytes]) -> tuple[str, list[bytes]]:
    """The policy version and the reply for each case, decided in this process without a cache."""
    from service.api import eligibility_pb2 as pb
    from service.cache import NoCache
    from service.decisions import DecisionService, PolicyHolder

    holder = PolicyHolder(policy_dir)
    service = DecisionService(holder, NoCache(), HMAC_KEY.encode())
    replies = [
        service.evaluate(pb.EvaluateRequest.FromString(r)).SerializeToString(deterministic=True) for r in requests
    ]
    return holder.engine.version, replies


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- clients ---------------------------------------------------------------------------------------


def _client_process(
    address: str, threads: int, seed: int, requests: list[bytes], expected: dict, stop, sigterm_at, results
) -> None:
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    from service.api import eligibility_pb2 as pb
    from service.api import eligibility_pb2_grpc as pb_grpc

    parsed = [pb.EvaluateRequest.FromString(r) for r in requests]
    counts: collections.Counter = collections.Counter()
    versions: collections.Counter = collections.Counter()
    latencies: list[float] = []
    examples: list[str] = []
    lock = threading.Lock()

    def bad_request() -> pb.EvaluateRequest:
        r = pb.EvaluateRequest()
        r.CopyFrom(parsed[0])
        last = r.person.id_number[-1]
        r.person.id_number = r.person.id_number[:-1] + ("0" if last != "0" else "1")
        return r

    def matches(index: int, reply: pb.EvaluateResponse) -> bool:
        want = expected.get(reply.policy_version)
        if want is None:
            return False
        got = pb.EvaluateResponse()
        got.CopyFrom(reply)
        got.from_cache = False
        return got.SerializeToString(deterministic=True) == want[index]

    def violations(err) -> set[str]:
        status = rpc_status.from_call(err)
        out = set()
        for detail in status.details if status else ():
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                out |= {v.field for v in bad.field_violations}
        return out

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pb_grpc.EligibilityServiceStub(channel)
        local: collections.Counter = collections.Counter()
        local_versions: collections.Counter = collections.Counter()
        local_lat: list[float] = []
        while not stop.is_set():
            kind = rng.random()
            started = time.time()
            t0 = time.perf_counter()
            try:
                if kind < 0.80:
                    i = rng.randrange(len(parsed))
                    reply = stub.Evaluate(parsed[i], timeout=10)
                    local_versions[reply.policy_version] += 1
                    if matches(i, reply):
                        local["ok_evaluate_cached" if reply.from_cache else "ok_evaluate"] += 1
                    else:
                        local["wrong_reply"] += 1
                        if len(examples) < 5:
                            examples.append(f"wrong reply for case {i} version {reply.policy_version}")
                elif kind < 0.88:
                    try:
                        stub.Evaluate(bad_request(), timeout=10)
                        local["wrong_accepted_invalid"] += 1
                    except grpc.RpcError as err:
                        if err.code() == grpc.StatusCode.INVALID_ARGUMENT and "person.id_number" in violations(err):
                            local["rejected_invalid_argument"] += 1
                        else:
                            raise
                elif kind < 0.93:
                    picks = [rng.randrange(len(parsed)) for _ in range(10)]
                    items = [pb.EvaluateBatchRequest(ref=f"r{k}", request=parsed[i]) for k, i in enumerate(picks)]
                    items[3] = pb.EvaluateBatchRequest(ref="r3", request=bad_request())
                    replies = list(stub.EvaluateBatch(iter(items), timeout=20))
                    good = len(replies) == 10
                    for k, (i, r) in enumerate(zip(picks, replies, strict=True)):
                        if k == 3:
                            good &= r.WhichOneof("result") == "error" and r.error.code == "INVALID_ARGUMENT"
                        else:
                            good &= r.WhichOneof("result") == "response" and matches(i, r.response)
                    local["ok_batch_stream" if good else "wrong_batch"] += 1
                elif kind < 0.99:
                    reply = stub.ListPrograms(pb.ListProgramsRequest(as_of=AS_OF, region_code="330102"), timeout=10)
                    local["ok_list_programs" if reply.policy_version in expected else "wrong_list_programs"] += 1
                else:
                    big = pb.EvaluateRequest()
                    big.CopyFrom(parsed[0])
                    big.person.id_number = "9" * 300_000  # over the 256 KiB message limit
                    try:
                        stub.Evaluate(big, timeout=10)
                        local["wrong_accepted_oversize"] += 1
                    except grpc.RpcError as err:
                        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            local["rejected_oversize"] += 1
                        else:
                            raise
                local_lat.append(time.perf_counter() - t0)
            except grpc.RpcError as err:
                code = err.code()
                term = sigterm_at.value
                if term and started >= term and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    # New work after SIGTERM, once the server stopped accepting: refused (UNAVAILABLE), or
                    # CANCELLED when the call reached the transport in the instant the server stopped.
                    local["refused_after_sigterm"] += 1
                    break  # the server is gone: this client is done
                local[f"unexpected_{code.name}"] += 1
                if len(examples) < 5:
                    examples.append(
                        f"{code.name}: {err.details()} (started {started - (term or started):+.3f}s from SIGTERM)"
                    )
                time.sleep(0.05)
        channel.close()
        with lock:
            counts.update(local)
            versions.update(local_versions)
            latencies.extend(local_lat)

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put({"counts": dict(counts), "versions": dict(versions), "latencies": latencies, "examples": examples})


# --- the service ---------------------------------------------------------------------------------


def scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_serving(address: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError("service not serving")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_pids(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [int(c) for c in children] or [pid]


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="subsidy-soak-"))

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=not args.json, file=sys.stderr)

    policies, policies_v2 = tmp / "policies", tmp / "policies-v2"
    shutil.copytree(ROOT / "policies", policies)
    shutil.copytree(ROOT / "policies", policies_v2)
    original = (policies / DIBAO_FILE).read_text()
    assert GOOD_CHANGE[0] in original, "the dibao standard this soak changes is no longer in the policies"
    (policies_v2 / DIBAO_FILE).write_text(original.replace(*GOOD_CHANGE))

    requests = cases(args.cases)
    log(f"deciding {len(requests)} cases under both policy versions for reference")
    v1, replies_v1 = expected_replies(policies, requests)
    v2, replies_v2 = expected_replies(policies_v2, requests)
    assert v1 != v2
    id_numbers = set()
    from service.api import eligibility_pb2 as pb

    for r in requests:
        id_numbers.add(pb.EvaluateRequest.FromString(r).person.id_number)
    changed = sum(a != b for a, b in zip(replies_v1, replies_v2, strict=True))

    redis = RedisProcess(free_port(), tmp)
    redis.start()
    port, metrics_port = free_port(), free_port()
    log_path = tmp / "service.log"
    env = {**os.environ, "SUBSIDY_HMAC_KEY": HMAC_KEY, "REDIS_URL": redis.url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [
        sys.executable,
        "-m",
        "service",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--policies",
        str(policies),
        "--workers",
        str(args.workers),
        "--grace",
        "15",
        "--drain-delay",
        "1",
    ]
    with open(log_path, "wb") as out:
        service = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    summary: dict = {
        "seconds": args.seconds,
        "workers": args.workers,
        "clients": args.procs * args.threads,
        "policy_versions": {"v1": v1, "v2": v2},
        "cases_changed_by_v2": changed,
    }
    ctx = mp.get_context("spawn")
    stop, sigterm_at, results = ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    clients = []
    problems: list[str] = []
    try:
        wait_serving(f"127.0.0.1:{port}", service)
        log(
            f"service up (pid {service.pid}, {args.workers} worker(s)), redis on {redis.port}; "
            f"{args.procs}x{args.threads} clients for {args.seconds}s"
        )
        expected = {v1: replies_v1, v2: replies_v2}
        for n in range(args.procs):
            p = ctx.Process(
                target=_client_process,
                args=(f"127.0.0.1:{port}", args.threads, n, requests, expected, stop, sigterm_at, results),
                daemon=True,
            )
            p.start()
            clients.append(p)
        start = time.monotonic()
        rss_start: dict[int, int] = {}

        def at(fraction: float) -> None:
            delay = start + args.seconds * fraction - time.monotonic()
            if delay > 0:
                time.sleep(delay)

        def sighup_and_wait(result: str, want: int) -> bool:
            service.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if metric(scrape(metrics_port), "subsidy_policy_reloads_total", result=result) >= want:
                    return True
                time.sleep(0.2)
            return False

        at(0.05)
        rss_start = {pid: rss_kib(pid) for pid in worker_pids(service.pid)}
        at(0.15)
        log("killing redis-server")
        redis.kill()
        at(0.30)
        log("restarting redis-server")
        redis.start()
        at(0.45)
        log("reloading a broken policy (SIGHUP)")
        write_atomically(policies / DIBAO_FILE, original.replace(*BROKEN_CHANGE))
        if not sighup_and_wait("failure", args.workers):
            problems.append("the broken policy's reload failure was not counted")
        at(0.60)
        log("reloading a good new policy (SIGHUP)")
        write_atomically(policies / DIBAO_FILE, original.replace(*GOOD_CHANGE))
        if not sighup_and_wait("success", args.workers):
            problems.append("the good policy was not reloaded")
        at(0.75)
        log("killing redis-server again")
        redis.kill()
        at(0.85)
        log("restarting redis-server")
        redis.start()
        at(1.0)
        text = scrape(metrics_port)
        summary["rss_kib"] = {
            pid: {"start": rss_start.get(pid, 0), "end": rss_kib(pid)} for pid in worker_pids(service.pid)
        }
        summary["service_metrics"] = {
            "requests_by_code": {
                code: metric(text, "subsidy_grpc_requests_total", code=code)
                for code in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL", "DEADLINE_EXCEEDED", "UNKNOWN")
            },
            "cache_errors": metric(text, "subsidy_cache_errors_total"),
            "cache_hits": metric(text, "subsidy_cache_lookups_total", result="hit"),
            "cache_misses": metric(text, "subsidy_cache_lookups_total", result="miss"),
            "reloads_success": metric(text, "subsidy_policy_reloads_total", result="success"),
            "reloads_failure": metric(text, "subsidy_policy_reloads_total", result="failure"),
            "engine_disagreements": metric(text, "subsidy_engine_disagreements_total"),
        }
        leaked = sorted(i for i in id_numbers if i in text)
        log("SIGTERM")
        sigterm_at.value = time.time()
        service.send_signal(signal.SIGTERM)
        code = service.wait(60)
        summary["service_exit_code"] = code
        summary["drain_seconds"] = round(time.time() - sigterm_at.value, 2)
        if code != 0:
            problems.append(f"service exited with {code}")
        time.sleep(1)
    finally:
        stop.set()
        collected = []
        deadline = time.monotonic() + 60
        for _ in clients:
            try:
                collected.append(results.get(timeout=max(1, deadline - time.monotonic())))
            except Exception:
                problems.append("a client process did not report")
        for p in clients:
            p.join(10)
            if p.is_alive():
                p.kill()
        if service.poll() is None:
            service.kill()
            service.wait()
        redis.kill()

    counts: collections.Counter = collections.Counter()
    versions: collections.Counter = collections.Counter()
    latencies: list[float] = []
    examples: list[str] = []
    for c in collected:
        counts.update(c["counts"])
        versions.update(c["versions"])
        latencies.extend(c["latencies"])
        examples += c["examples"]
    latencies.sort()
    logs = log_path.read_text(errors="replace")
    leaked += sorted(i for i in id_numbers if i in logs)
    pattern = re.compile(r"(?<![0-9A-Za-z.])\d{17}[\dXx](?![0-9A-Za-z])")
    summary.update(
        {
            "outcomes": dict(sorted(counts.items())),
            "operations_total": sum(counts.values()),
            "batch_items_verified": counts.get("ok_batch_stream", 0) * 10,
            "replies_by_policy_version": {
                ("v1" if v == v1 else "v2" if v == v2 else v): n for v, n in versions.items()
            },
            "operations_per_s": round(sum(counts.values()) / args.seconds, 1),
            "latency_ms": {
                "p50": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
                "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
                "max": round(latencies[-1] * 1000, 2) if latencies else None,
            },
            "id_numbers_in_logs_or_metrics": len(leaked) + len(pattern.findall(logs)),
            "internal_errors_logged": logs.count('"internal error"'),
        }
    )
    unexpected = {k: v for k, v in counts.items() if not k.startswith("ok_") and k not in EXPECTED_REFUSALS}
    summary["unexpected"] = unexpected
    if unexpected:
        problems.append(f"unexpected outcomes: {unexpected}; e.g. {examples[:3]}")
    if not versions.get(v1) or not versions.get(v2):
        problems.append("replies did not come from both policy versions")
    if set(versions) - {v1, v2}:
        problems.append(f"replies named unknown policy versions: {set(versions) - {v1, v2}}")
    if summary["id_numbers_in_logs_or_metrics"]:
        problems.append("an ID number appears in the service's logs or metrics")
    if summary["internal_errors_logged"]:
        problems.append("the service logged internal errors")
    sm = summary.get("service_metrics", {})
    if sm and not sm.get("cache_errors"):
        problems.append("redis was killed but no cache error was counted")
    summary["problems"] = problems
    summary["passed"] = not problems
    if problems:
        summary["log"] = str(log_path)  # kept for a look
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument("--threads", type=int, default=4, help="client threads per process, a channel each")
    p.add_argument("--workers", type=int, default=2, help="service worker processes")
    p.add_argument("--cases", type=int, default=200, help="distinct people in the mix")
    p.add_argument("--json", action="store_true", help="print only the summary as JSON")
    args = p.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is needed (apt-get install redis-server)", file=sys.stderr)
        return 2
    summary = run(args)
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps({k: v for k, v in summary.items() if k != "rss_kib"}, indent=2))
        print(
            "RSS (KiB) per worker, start -> end:",
            ", ".join(f"{v['start']} -> {v['end']}" for v in summary.get("rss_kib", {}).values()),
        )
        print("PASSED" if summary["passed"] else "FAILED: " + "; ".join(summary["problems"]))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
