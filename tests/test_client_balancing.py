"""Client-side load balancing with clients/channel.py: one channel to three real replicas (one
private redis-server, one HMAC key) balances per call (`round_robin`), and gRPC's own retry policy
for UNAVAILABLE carries the callers over one replica's death. Every call has a deadline."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from replicas import Load, hangzhou_request, metric, replicas_with_redis, scrape
from support import POLICIES, ROOT, RedisProcess, ServiceProcess, free_port

from clients.channel import open_channel
from service.api import eligibility_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Iterator[list[ServiceProcess]]:
    """Shared by the tests below in file order; the last one kills a replica."""
    tmp = tmp_path_factory.mktemp("balancing")
    redis = RedisProcess(free_port(), tmp)
    redis.start()
    try:
        with replicas_with_redis(tmp, redis.url, POLICIES, 3) as replicas:
            yield replicas
    finally:
        redis.kill()


def served(replica: ServiceProcess) -> float:
    return metric(scrape(replica), "subsidy_grpc_requests_total", method="Evaluate")


def ipv4_target(replicas: list[ServiceProcess]) -> str:
    """What a headless Service's DNS name resolves to, written out: every replica's address."""
    return "ipv4:" + ",".join(r.address for r in replicas)


def test_calls_spread_over_every_replica(three):
    before = [served(r) for r in three]
    with open_channel(ipv4_target(three)) as channel:
        stub = pb_grpc.EligibilityServiceStub(channel)
        for seq in range(90):
            stub.Evaluate(hangzhou_request(seq), timeout=10)
    counts = [served(r) - b for r, b in zip(three, before, strict=True)]
    print(f"\n[round_robin] calls per replica: {counts}")
    assert sum(counts) == 90
    # round_robin takes the ready replicas in turn: about 30 each (one may join a little late).
    assert all(c >= 20 for c in counts), counts


def test_a_dns_target_resolves_and_serves(three):
    with open_channel(f"dns:///localhost:{three[0].port}") as channel:
        reply = pb_grpc.EligibilityServiceStub(channel).Evaluate(hangzhou_request(1), timeout=10)
    assert reply.decisions and reply.policy_version


def test_the_client_survives_a_replica_killed_under_load(three):
    victim = three[1]
    with Load(lambda: open_channel(ipv4_target(three)), clients=4) as load:
        load.wait_for(150)
        before = [served(r) for r in three]
        killed_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        load.wait_for(load.done() + 300)
    calls, failed = load.calls, load.failed()
    after = [served(r) for i, r in enumerate(three) if r is not victim]
    in_flight = [c for c in calls if c.started < killed_at < c.ended]
    print(
        f"\n[client-kill] sent={len(calls)} failed={len(failed)} in_flight_at_kill={len(in_flight)} "
        f"per_replica_before={before} survivors_after={after} codes={dict(Counter(c.code for c in calls))}"
    )
    assert all(b > 0 for b in before), "every replica took calls before the kill"
    assert failed == [], "UNAVAILABLE is retried on another replica within the call's deadline"
    assert sum(after) > sum(before) - before[1]  # the survivors took the rest


def test_the_client_survives_a_replica_drained_with_sigterm(tmp_path, redis_server):
    """A Kubernetes rollout's view from a client: SIGTERM, --drain-delay, stop. Calls that reach the
    replica once it has stopped accepting are answered UNAVAILABLE and retried on another."""
    with replicas_with_redis(tmp_path, redis_server.url, POLICIES, 3, "--drain-delay", "2", "--grace", "10") as three:
        victim = three[1]
        with Load(lambda: open_channel(ipv4_target(three)), clients=4) as load:
            load.wait_for(150)
            victim.proc.send_signal(signal.SIGTERM)
            assert victim.proc.wait(30) == 0
            load.wait_for(load.done() + 300)
        log = [json.loads(line) for line in victim.log_text().splitlines() if line.startswith("{")]
    draining = next(i for i, entry in enumerate(log) if entry.get("message") == "draining")
    served_while_draining = sum(entry.get("name") == "audit" for entry in log[draining:])
    calls, failed = load.calls, load.failed()
    print(
        f"\n[client-sigterm] sent={len(calls)} failed={len(failed)} served_by_it_after_sigterm={served_while_draining} "
        f"codes={dict(Counter(c.code for c in calls))}"
    )
    assert failed == []


# ----------------------------------------------------------------------------- the documented snippet


def documented_snippet() -> str:
    """The code block of clients/channel.py's docstring, which the README repeats."""
    import textwrap

    import clients.channel

    doc = clients.channel.__doc__ or ""
    block = doc[doc.index("    from clients") : doc.index("timeout=2.0)") + len("timeout=2.0)")]
    return textwrap.dedent(block)


def test_the_readme_shows_the_snippet_of_channel_py():
    assert f"```python\n{documented_snippet()}\n```" in (ROOT / "README.md").read_text()


def test_the_snippet_runs_over_mutual_tls(tmp_path):
    """The snippet as documented, with only the address, the file names and the request filled in."""
    from test_security import make_pki, start_mtls_service

    pki = make_pki(tmp_path / "pki")
    service = start_mtls_service(tmp_path, pki)
    try:
        code = (
            documented_snippet()
            .replace("dns:///subsidy-headless.minzheng-subsidy.svc:50051", f"dns:///localhost:{service.port}")
            .replace('"ca.crt"', repr(str(pki.ca.path)))
            .replace('"caller.crt"', repr(str(pki.allowed.cert)))  # a caller on the allow-list
            .replace('"caller.key"', repr(str(pki.allowed.key)))
            .replace("pb.EvaluateRequest(...)", "hangzhou_request(1)")
        )
        scope: dict = {"hangzhou_request": hangzhou_request}
        exec(compile(code, "channel.py docstring", "exec"), scope)  # noqa: S102 - our own documented code
        reply = scope["reply"]
        assert [d.monthly_amount.fen for d in reply.decisions] == [540_00]
    finally:
        service.stop(signal.SIGKILL)
