"""Three replicas behave as one service: one private redis-server, one SUBSIDY_HMAC_KEY, and a
private nginx (Debian's package) in front as the gRPC load balancer (`grpc_pass`,
`grpc_next_upstream error timeout`). Loads go through nginx from a few client threads, each call
with a deadline, and are bounded in count and time; assertions are on counts, never on speed.

Each test leaves three replicas serving for the next one. The counts of each scenario are printed
(`pytest -s tests/test_replicas.py`).
"""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from replicas import (
    Call,
    Load,
    Nginx,
    hangzhou_request,
    metric,
    scrape,
    start_replica,
    wait_replicas,
)
from support import POLICIES, RedisProcess, ServiceProcess, free_port

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

REPLICAS = 3
DRAIN_DELAY = 3.0
GRACE = 10.0
REPLICA_ARGS = ("--drain-delay", str(DRAIN_DELAY), "--grace", str(GRACE))
# The Hangzhou nursing case on 2020-08-01 (50% of the dibao standard), before and after the rollout.
DIBAO_LINE_BEFORE = "- {from: 2020-07-01, value: 1080, source: reference}"
DIBAO_LINE_AFTER = "- {from: 2020-07-01, value: 1100, source: reference}"
NURSING_FEN_BEFORE, NURSING_FEN_AFTER = 540_00, 550_00


@dataclass
class Cluster:
    tmp: Path
    redis: RedisProcess
    policies: list[Path]  # each replica's own copy, so a rollout can change one at a time
    ports: list[int]
    replicas: list[ServiceProcess]
    nginx: Nginx

    def start(self, i: int) -> ServiceProcess:
        return start_replica(
            self.tmp, self.ports[i], self.policies[i], self.redis.url, *REPLICA_ARGS, name=f"replica{i}"
        )

    def restart(self, i: int) -> None:
        """Start replica i again on its port (nginx's upstream) and wait until it serves."""
        assert self.replicas[i].proc.poll() is not None
        self.replicas[i] = self.start(i)
        wait_replicas([self.replicas[i]])
        if self.ports[i] not in self.nginx.upstreams:
            self.nginx.set_upstreams(self.ports)

    def ensure_all_up(self) -> None:
        for i, replica in enumerate(self.replicas):
            if replica.proc.poll() is not None:
                self.restart(i)

    def load(self, **kwargs) -> Load:
        return Load(lambda: grpc.insecure_channel(self.nginx.address), **kwargs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    redis = RedisProcess(free_port(), tmp)
    redis.start()
    policies = []
    for i in range(REPLICAS):
        copy = tmp / f"policies-{i}"
        shutil.copytree(POLICIES, copy)
        policies.append(copy)
    ports = [free_port() for _ in range(REPLICAS)]
    cluster = Cluster(tmp, redis, policies, ports, [], Nginx(tmp / "nginx", ports))
    try:
        cluster.replicas = [cluster.start(i) for i in range(REPLICAS)]
        wait_replicas(cluster.replicas)
        cluster.nginx.start()
        yield cluster
    finally:
        cluster.nginx.stop()
        for replica in cluster.replicas:
            replica.stop(signal.SIGKILL)
        redis.kill()


@pytest.fixture
def replicas(cluster: Cluster) -> Cluster:
    cluster.ensure_all_up()
    return cluster


def few_people(seq: int) -> pb.EvaluateRequest:
    return hangzhou_request(seq % 20)  # repeats, so that cache hits are expected whenever Redis is up


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status


def upstreams(entry: dict) -> list[str]:
    """The replicas nginx tried for one call, in order (`$upstream_addr`: "a, b" after a retry)."""
    return [u.strip() for u in entry["upstream"].replace(" : ", ", ").split(",") if u.strip()]


def by_seq(nginx: Nginx, calls: list[Call]) -> dict[int, dict]:
    """nginx's log line of every call, by call number. nginx writes a line when it has finished
    with a request, which can be just after the client has its answer: wait for the last ones."""
    deadline = time.monotonic() + 30
    while True:
        log = {int(e["seq"]): e for e in nginx.access_log() if e["seq"]}
        missing = [c.seq for c in calls if c.seq not in log]
        if not missing:
            return log
        assert time.monotonic() < deadline, f"calls {missing[:10]} not in nginx's access log"
        time.sleep(0.1)


def report(name: str, **counts: object) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in counts.items()))


# ----------------------------------------------------------------------------- shared cache


def test_a_decision_computed_by_one_replica_is_a_cache_hit_on_another(replicas: Cluster):
    stubs = [r.stub() for r in replicas.replicas]
    first = stubs[0].Evaluate(hangzhou_request(7001), timeout=10)
    assert not first.from_cache
    for stub in stubs[1:]:
        again = stub.Evaluate(hangzhou_request(7001), timeout=10)
        assert again.from_cache
        assert again.request_hash == first.request_hash  # one HMAC key: one cache key
        assert again.policy_version == first.policy_version
        assert again.decisions == first.decisions
    # And through the balancer: whichever replica nginx picks, a hit.
    with grpc.insecure_channel(replicas.nginx.address) as channel:
        via_nginx = pb_grpc.EligibilityServiceStub(channel).Evaluate(hangzhou_request(7001), timeout=10)
    assert via_nginx.from_cache and via_nginx.decisions == first.decisions


# ----------------------------------------------------------------------------- SIGKILL


def test_sigkill_under_load_fails_only_the_calls_in_flight_on_the_killed_replica(replicas: Cluster):
    nginx, victim = replicas.nginx, replicas.replicas[1]
    with replicas.load(clients=6) as load:
        load.wait_for(300)
        killed_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        dead_at = time.time()
        load.wait_for(load.done() + 600)
    calls, failed = load.calls, load.failed()
    log = by_seq(nginx, calls)

    in_flight = [c for c in calls if c.started < dead_at and c.ended > killed_at]
    in_flight_on_victim = [c for c in in_flight if upstreams(log[c.seq])[0] == victim.address]
    served_by_victim_before = [c for c in calls if c.ended < killed_at and upstreams(log[c.seq])[-1] == victim.address]
    after = [c for c in calls if c.started > dead_at]
    report(
        "sigkill",
        sent=len(calls),
        failed=len(failed),
        failed_codes=dict(Counter(c.code for c in failed)),
        in_flight_at_kill=len(in_flight),
        in_flight_on_killed_replica=len(in_flight_on_victim),
        served_by_it_before=len(served_by_victim_before),
        sent_after_kill=len(after),
    )
    assert served_by_victim_before, "the killed replica was taking its share of the load"
    # Every failed call was in flight on the killed replica when it died...
    assert {c.seq for c in failed} <= {c.seq for c in in_flight_on_victim}
    assert all(upstreams(log[c.seq]) == [victim.address] for c in failed)
    # ...and none after: calls that reach a dead replica are refused and nginx passes them on.
    assert len(after) >= 600 and all(c.code == "OK" for c in after)
    assert all(upstreams(log[c.seq])[-1] != victim.address for c in after)


# ----------------------------------------------------------------------------- SIGTERM


def test_sigterm_under_load_fails_no_call(replicas: Cluster):
    """SIGTERM: health turns NOT_SERVING at once, and for --drain-delay the replica still serves
    while the balancer takes it out (here the test plays Kubernetes' endpoints controller: it sees
    NOT_SERVING and reloads nginx without the replica); then it stops accepting and finishes the
    calls in flight. nginx (open source) has no active health checks and does not retry a call
    already sent, so without the take-out calls that reach the replica after the drain are lost."""
    nginx, victim = replicas.nginx, replicas.replicas[2]
    with replicas.load(clients=6) as load:
        load.wait_for(300)
        termed_at = time.time()
        victim.proc.send_signal(signal.SIGTERM)
        assert health(victim.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        nginx.set_upstreams([p for p in replicas.ports if p != victim.port])
        taken_out_after = time.time() - termed_at
        assert victim.proc.wait(GRACE + DRAIN_DELAY + 20) == 0
        exited_at = time.time()
        load.wait_for(load.done() + 600)
    calls, failed = load.calls, load.failed()
    log = by_seq(nginx, calls)
    on_victim = [c for c in calls if upstreams(log[c.seq])[-1] == victim.address]
    in_flight_on_victim = [c for c in on_victim if c.started < termed_at < c.ended]
    report(
        "sigterm",
        sent=len(calls),
        failed=len(failed),
        failed_codes=dict(Counter(c.code for c in failed)),
        in_flight_on_it_at_sigterm=len(in_flight_on_victim),
        served_by_it_after_sigterm=len([c for c in on_victim if c.started > termed_at]),
        taken_out_of_nginx_after_s=round(taken_out_after, 2),
        sent_after_exit=len([c for c in calls if c.started > exited_at]),
    )
    assert failed == []
    assert victim.log_text().count('"draining"') == 1


# ----------------------------------------------------------------------------- policy rollout


def versions_now(cluster: Cluster) -> list[str]:
    return [r.stub().Evaluate(hangzhou_request(1), timeout=10).policy_version for r in cluster.replicas]


def wait_version(replica: ServiceProcess, old: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = replica.stub().Evaluate(hangzhou_request(1), timeout=10).policy_version
        if version != old:
            return version
        time.sleep(0.2)
    raise AssertionError(f"replica {replica.port} still on {old} after {timeout}s:\n{replica.log_text()[-3000:]}")


def test_policy_rollout_replica_by_replica(replicas: Cluster):
    (old,) = set(versions_now(replicas))
    new_versions = []
    with replicas.load(clients=4, make_request=few_people) as load:
        load.wait_for(100)
        for i, replica in enumerate(replicas.replicas):
            dibao = replicas.policies[i] / "parameters" / "common" / "dibao_standard.yaml"
            text = dibao.read_text()
            assert text.count(DIBAO_LINE_BEFORE) == 1
            dibao.write_text(text.replace(DIBAO_LINE_BEFORE, DIBAO_LINE_AFTER))
            replica.proc.send_signal(signal.SIGHUP)
            new_versions.append(wait_version(replica, old))
            load.wait_for(load.done() + 100)  # a mixed fleet serves for a while
        rolled_out_at = time.time()
        load.wait_for(load.done() + 200)
    calls, failed = load.calls, load.failed()
    (new,) = set(new_versions)
    ok = [c for c in calls if c.code == "OK"]
    per_version = Counter(c.policy_version for c in ok)
    report("rollout", sent=len(calls), failed=len(failed), per_version=dict(per_version))
    assert failed == []
    assert set(per_version) == {old, new} and new != old
    # Every reply names the version that decided it, and its figures are that version's: a reply
    # from the old set pays 540 yuan, from the new set 550, whether computed or from the cache.
    expected = {old: NURSING_FEN_BEFORE, new: NURSING_FEN_AFTER}
    mixed = [c for c in ok if c.amount_fen != expected[c.policy_version]]
    assert mixed == []
    assert all(c.policy_version == new for c in ok if c.started > rolled_out_at)
    assert {c.from_cache for c in ok if c.policy_version == new} == {False, True}


# ----------------------------------------------------------------------------- Redis down


def cache_hits(cluster: Cluster) -> float:
    return sum(metric(scrape(r), "subsidy_cache_lookups_total", result="hit") for r in cluster.replicas)


def test_redis_down_for_10s_under_load_fails_no_call_and_hits_resume(replicas: Cluster):
    redis = replicas.redis
    with replicas.load(clients=6, make_request=few_people) as load:
        load.wait_for(200)
        down_at = time.time()
        redis.kill()
        time.sleep(10)  # the outage the issue asks for; nothing is timed against it
        during = load.done()
        restart_at = time.time()  # Redis answers again somewhere inside start(): the outage ends here
        redis.start()
        up_at = time.time()
        hits_before = cache_hits(replicas)
        deadline = time.monotonic() + 60

        def hits_resumed() -> bool:
            return any(c.from_cache and c.started > up_at + 0.5 for c in list(load.calls))

        while not hits_resumed() and time.monotonic() < deadline:
            load.wait_for(load.done() + 50)
        load.wait_for(load.done() + 100)
    calls, failed = load.calls, load.failed()
    outage: list[Call] = [c for c in calls if down_at < c.started < up_at]
    errors = sum(metric(scrape(r), "subsidy_cache_errors_total") for r in replicas.replicas)
    report(
        "redis-down",
        sent=len(calls),
        failed=len(failed),
        during_outage=len(outage),
        from_cache_during_outage=sum(c.from_cache for c in outage),
        cache_errors=errors,
    )
    assert failed == []
    assert during > 200 and len(outage) > 0
    assert errors > 0, "the replicas noticed Redis was gone"
    assert not any(c.from_cache for c in outage if c.started > down_at + 1 and c.ended < restart_at), (
        "no Redis, no hits"
    )
    assert hits_resumed(), "hits resume once Redis is back"
    assert cache_hits(replicas) > hits_before
    for seq, r in enumerate(replicas.replicas):
        # Each replica finds Redis again by itself on its next call after the back-off; nginx may have
        # sent this one none since, so call it directly until it has (a hang guard, not a speed limit).
        with grpc.insecure_channel(f"127.0.0.1:{r.port}") as channel:
            stub = pb_grpc.EligibilityServiceStub(channel)
            deadline = time.monotonic() + 60
            while metric(scrape(r), "subsidy_cache_up", backend="redis") != 1 and time.monotonic() < deadline:
                stub.Evaluate(few_people(seq), timeout=10)
                time.sleep(0.2)
        assert metric(scrape(r), "subsidy_cache_up", backend="redis") == 1
