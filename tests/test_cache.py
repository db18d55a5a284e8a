"""The decision cache against real processes: a private redis-server on a free port (never the
shared one on 6379) and the service as a subprocess.

Hits and misses, a policy change never serving an old decision, what Redis holds (no ID number,
no birth date), the TTL, Redis killed and restarted mid-run with no failed call, a Redis that
accepts connections but never answers, the in-process LRU without REDIS_URL, and TTL 0.
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
import urllib.request

import grpc
import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from support import HANGZHOU_NURSING_CASE, POLICIES, make_id, request, start_service, stop_gracefully

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc
from service.cache import RedisCache

pytestmark = pytest.mark.timeout(300)  # a hang guard; a loaded machine starts services slowly

KEY_RE = re.compile(r"^subsidy:decision:(?P<version>[0-9a-f]+):(?P<hmac>[0-9a-f]{64})$")
BIRTH = HANGZHOU_NURSING_CASE["birth_date"]


def nursing_request(as_of: str = "2020-08-01", seq: int = 16) -> pb.EvaluateRequest:
    return request(as_of, id_number=make_id(BIRTH, seq=seq), **HANGZHOU_NURSING_CASE)


def without_cache_flag(reply: pb.EvaluateResponse) -> pb.EvaluateResponse:
    copy = pb.EvaluateResponse()
    copy.CopyFrom(reply)
    copy.from_cache = False
    return copy


def amounts(reply: pb.EvaluateResponse) -> dict[str, int]:
    return {d.program_id: d.monthly_amount.fen for d in reply.decisions}


def scrape(service) -> dict[tuple[str, tuple], float]:
    """Every sample of the service's metrics endpoint: {(name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def scan(redis_proc) -> list[str]:
    return [k for k in redis_proc.cli("--scan").splitlines() if k]


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def policy_version(stub) -> str:
    return stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01"), timeout=5).policy_version


def bump_nursing_share(policies) -> None:
    """A policy change: the fully dependent nursing share from 50% to 60% of the dibao standard."""
    path = policies / "parameters" / "disability" / "nursing_share_fully_dependent.yaml"
    text = path.read_text()
    assert "value: 0.5," in text
    path.write_text(text.replace("value: 0.5,", "value: 0.6,"))


@pytest.fixture
def service_factory(tmp_path):
    started = []

    def start(*args, **kwargs):
        service = start_service(tmp_path, *args, **kwargs)
        started.append(service)
        return service

    yield start
    for service in started:
        stop_gracefully(service)


# ----------------------------------------------------------------------------- hits and misses


@pytest.mark.parametrize("backend", ["redis", "local"])
def test_second_identical_call_hits_and_a_different_request_misses(backend, request_fixture_redis, service_factory):
    args = ("--redis-url", request_fixture_redis.url) if backend == "redis" else ()
    service = service_factory(*args)
    stub = service.stub()
    first = stub.Evaluate(nursing_request(), timeout=10)
    second = stub.Evaluate(nursing_request(), timeout=10)
    assert not first.from_cache
    assert second.from_cache
    assert without_cache_flag(second) == first  # the same decision receipt, byte for byte
    assert amounts(first)["disability_nursing_subsidy"] == 54000

    other_date = stub.Evaluate(nursing_request(as_of="2020-06-30"), timeout=10)
    other_person = stub.Evaluate(nursing_request(seq=17), timeout=10)
    assert not other_date.from_cache and not other_person.from_cache
    assert amounts(other_date)["disability_nursing_subsidy"] == 50900
    assert stub.Evaluate(nursing_request(seq=17), timeout=10).from_cache

    samples = scrape(service)
    assert metric(samples, "subsidy_cache_lookups_total", result="hit") == 2
    assert metric(samples, "subsidy_cache_lookups_total", result="miss") == 3
    assert metric(samples, "subsidy_cache_up", backend=backend) == 1
    if backend == "redis":
        assert len(scan(request_fixture_redis)) == 3


@pytest.fixture
def request_fixture_redis(request):
    """The private redis-server, only for the parameter that uses it."""
    if request.node.callspec.params.get("backend") == "redis":
        return request.getfixturevalue("redis_server")
    return None


@pytest.mark.parametrize("backend", ["redis", "local"])
def test_policy_change_misses_and_keys_carry_the_new_version(backend, request_fixture_redis, service_factory, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    args = ("--redis-url", request_fixture_redis.url) if backend == "redis" else ()
    service = service_factory("--policies", str(policies), *args)
    stub = service.stub()
    old_version = policy_version(stub)
    before = stub.Evaluate(nursing_request(), timeout=10)
    assert stub.Evaluate(nursing_request(), timeout=10).from_cache
    assert before.policy_version == old_version

    bump_nursing_share(policies)
    service.proc.send_signal(signal.SIGHUP)
    new_version = wait_for(lambda: (v := policy_version(stub)) != old_version and v, timeout=15)

    after = stub.Evaluate(nursing_request(), timeout=10)
    assert not after.from_cache, "a new policy version served an old decision"
    assert after.policy_version == new_version
    assert amounts(after)["disability_nursing_subsidy"] == 64800  # 60% of 1,080
    again = stub.Evaluate(nursing_request(), timeout=10)
    assert again.from_cache and again.policy_version == new_version
    assert amounts(again)["disability_nursing_subsidy"] == 64800

    if backend == "redis":
        keys = [KEY_RE.fullmatch(k) for k in scan(request_fixture_redis)]
        assert all(keys), keys
        versions = sorted(k.group("version") for k in keys if k)
        assert versions == sorted([old_version, new_version])
        # Same request, same HMAC: only the version part of the key differs.
        hmacs = {k.group("hmac") for k in keys if k}
        assert hmacs == {before.request_hash}


# ----------------------------------------------------------------------------- what Redis holds


def test_redis_holds_no_id_number_or_birth_date_and_the_configured_ttl(redis_server, service_factory):
    service = service_factory("--redis-url", redis_server.url, "--cache-ttl", "120")
    stub = service.stub()
    ids = [make_id(BIRTH, seq=seq) for seq in (16, 17, 18)]
    replies = [stub.Evaluate(request("2020-08-01", id_number=i, **HANGZHOU_NURSING_CASE), timeout=10) for i in ids]
    child_birth = "2012-03-04"
    child_id = make_id(child_birth, seq=21)
    replies.append(
        stub.Evaluate(
            request(
                "2020-08-01",
                id_number=child_id,
                birth_date=child_birth,
                region_code="330102",
                household_status="dibao",
                child_status="community_orphan",
            ),
            timeout=10,
        )
    )
    keys = scan(redis_server)
    assert len(keys) == 4
    secrets = [*ids, child_id, BIRTH, BIRTH.replace("-", ""), child_birth, child_birth.replace("-", "")]
    client = redis.Redis.from_url(redis_server.url)
    try:
        for key in keys:
            match = KEY_RE.match(key)
            assert match, f"unexpected key {key!r}"
            assert match.group("version") == replies[0].policy_version
            assert match.group("hmac") in {r.request_hash for r in replies}
            for secret in secrets:
                assert secret not in key
            raw = client.get(key)
            assert raw is not None
            for secret in [*ids, child_id]:
                assert secret.encode() not in raw, "an ID number in clear in a cached value"
                assert secret[:17].encode() not in raw
            ttl = int(redis_server.cli("ttl", key).strip())
            assert 110 <= ttl <= 120, ttl
    finally:
        client.close()


def test_ttl_zero_means_no_caching(redis_server, service_factory):
    for args in (("--cache-ttl", "0"), ("--cache-ttl", "0", "--redis-url", redis_server.url)):
        service = service_factory(*args)
        stub = service.stub()
        replies = [stub.Evaluate(nursing_request(), timeout=10) for _ in range(3)]
        assert not any(r.from_cache for r in replies)
        samples = scrape(service)
        assert metric(samples, "subsidy_cache_lookups_total", result="hit") == 0
        assert metric(samples, "subsidy_cache_lookups_total", result="miss") == 3
        assert metric(samples, "subsidy_cache_up") == 1  # off by configuration is not an outage
        service.stop()
    assert scan(redis_server) == []


def test_local_cache_entries_expire_after_the_ttl(service_factory):
    """No entry is missed before its TTL, and each is missed after it. Only lower bounds on time
    are asserted (measured from before the first call), so a slow machine cannot fail it."""
    ttl = 2.0
    service = service_factory("--cache-ttl", str(ttl))
    stub = service.stub()
    stored_by = time.monotonic()  # the entry is stored after this instant, so expires after it + ttl
    assert not stub.Evaluate(nursing_request(), timeout=10).from_cache
    hits = 0
    while stub.Evaluate(nursing_request(), timeout=10).from_cache:
        hits += 1
        assert time.monotonic() - stored_by < ttl + 30, "the entry never expired"  # a hang guard
        time.sleep(0.05)
    assert time.monotonic() - stored_by >= ttl, f"missed after {hits} hits, before the TTL of {ttl} s"


# ----------------------------------------------------------------------------- Redis failures


class SteadyCalls:
    """A thread sending calls back to back (a few distinct people, so there are hits and misses),
    recording every failure and every wrong answer. How fast they are is the benchmarks' business."""

    def __init__(self, service):
        self.channel = grpc.insecure_channel(service.address)
        self.stub = pb_grpc.EligibilityServiceStub(self.channel)
        self.stop = threading.Event()
        self.calls = 0
        self.failures: list[str] = []
        self.wrong: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            seq = 100 + i % 5
            i += 1
            try:
                reply = self.stub.Evaluate(nursing_request(seq=seq), timeout=30)
                if amounts(reply).get("disability_nursing_subsidy") != 54000:
                    self.wrong.append(str(amounts(reply)))
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code()}: {exc.details()}")
            self.calls += 1
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.channel.close()


def test_killing_redis_loses_no_request_and_restarting_it_resumes_caching(redis_server, service_factory):
    service = service_factory("--redis-url", redis_server.url)
    stub = service.stub()
    with SteadyCalls(service) as load:
        wait_for(lambda: load.calls >= 20, timeout=10)
        assert metric(scrape(service), "subsidy_cache_lookups_total", result="hit") > 0

        redis_server.kill()
        calls_at_kill = load.calls
        wait_for(lambda: load.calls >= calls_at_kill + 50, timeout=10)
        samples = scrape(service)
        assert metric(samples, "subsidy_cache_errors_total") >= 1
        assert metric(samples, "subsidy_cache_up", backend="redis") == 0
        assert "decision cache unavailable" in service.log_text()
        # While Redis is down every call is a fresh decision, not a failure.
        reply = stub.Evaluate(nursing_request(seq=999), timeout=5)
        assert not reply.from_cache and amounts(reply)["disability_nursing_subsidy"] == 54000

        redis_server.start()  # same port, empty: caching resumes by itself

        def hits_again():
            stub.Evaluate(nursing_request(seq=998), timeout=5)
            return stub.Evaluate(nursing_request(seq=998), timeout=5).from_cache

        wait_for(hits_again, timeout=8, interval=0.2)
        assert scan(redis_server), "nothing cached after Redis came back"
        assert metric(scrape(service), "subsidy_cache_up", backend="redis") == 1
        calls_at_restart = load.calls
        wait_for(lambda: load.calls >= calls_at_restart + 20, timeout=10)

    assert load.calls > 100
    assert load.failures == [], load.failures[:5]
    assert load.wrong == [], load.wrong[:5]


@pytest.fixture
def hung_redis(redis_server):
    """A real redis-server, stopped by SIGSTOP: it accepts connections (the kernel's backlog) and
    never answers, as a Redis stuck in a long command or a swapped-out host does."""
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    yield redis_server
    redis_server.proc.send_signal(signal.SIGCONT)


def test_a_redis_that_never_answers_costs_no_request(hung_redis, service_factory):
    hung = service_factory("--redis-url", hung_redis.url, name="hung")
    stub = hung.stub()
    for i in range(25):
        reply = stub.Evaluate(nursing_request(seq=200 + i), timeout=30)
        assert amounts(reply)["disability_nursing_subsidy"] == 54000 and not reply.from_cache
    samples = scrape(hung)
    assert metric(samples, "subsidy_cache_errors_total", operation="get") >= 1
    assert metric(samples, "subsidy_cache_up", backend="redis") == 0
    assert "decision cache unavailable" in hung.log_text()


def get_errors() -> float:
    return REGISTRY.get_sample_value("subsidy_cache_errors_total", {"operation": "get"}) or 0


def test_a_hung_redis_is_backed_off_then_probed_until_it_answers(redis_server):
    """RedisCache itself, in this process. After a failure it leaves Redis alone for `backoff`
    seconds: one error however many calls (a back-off of an hour, so no call outlasts it). With no
    back-off every call probes, and the first after Redis answers again finds the entry."""
    backed_off = RedisCache(redis_server.url, ttl=60, backoff=3600)
    probing = RedisCache(redis_server.url, ttl=60, backoff=0)
    backed_off.set("k", b"v")
    assert backed_off.get("k") == b"v" and probing.get("k") == b"v"
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        errors = get_errors()
        assert [backed_off.get("k") for _ in range(20)] == [None] * 20  # decided without the cache
        assert get_errors() == errors + 1
        assert REGISTRY.get_sample_value("subsidy_cache_up", {"backend": "redis"}) == 0
        assert [probing.get("k") for _ in range(3)] == [None] * 3
        assert get_errors() == errors + 4  # each call probed, and each timed out
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: probing.get("k") == b"v", timeout=30)
    assert REGISTRY.get_sample_value("subsidy_cache_up", {"backend": "redis"}) == 1
    assert backed_off.get("k") is None  # still backed off: it has not asked Redis again
    backed_off.close()
    probing.close()
