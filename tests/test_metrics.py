"""Metrics against real services: Prometheus text from the metrics port, parsed with
prometheus_client's parser, after real calls.

Requests by method, code and caller; latency histograms; decisions by program and outcome;
amounts; cache lookups; engine time; the policy version the replies carry; reloads after a good
and a bad SIGHUP; every label value from a bounded set and none carrying an ID number or a birth
date; and with `--workers 2`, counters aggregated over both workers (stale files of an earlier
run cleared).
"""

from __future__ import annotations

import collections
import math
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import HANGZHOU_NURSING_CASE, POLICIES, make_id, request, start_service, wait_for_log_lines

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)

PROGRAMS = {
    "elderly_care_subsidy",
    "child_basic_living_allowance",
    "disability_living_allowance",
    "disability_nursing_subsidy",
}
OUTCOMES = {"ELIGIBLE", "INELIGIBLE", "UNDETERMINED"}
BOUNDED = {
    "method": {"Evaluate", "EvaluateBatch", "ListPrograms"},
    "code": {c.name for c in grpc.StatusCode},
    "caller": {"anonymous"},  # no caller identities configured in these tests
    "program": PROGRAMS,
    "outcome": OUTCOMES,
    "result": {"hit", "miss", "success", "failure"},
    "operation": {"get", "set"},
    "backend": {"redis", "local", "off"},
}

ELDER_BIRTH = "1945-02-03"
CHILD_BIRTH = "2012-03-04"


def people() -> list[tuple[str, str, pb.EvaluateRequest]]:
    """(id number, birth date, request) for a few people whose decisions differ."""
    out = []
    nursing_id = make_id(HANGZHOU_NURSING_CASE["birth_date"], seq=31)
    out.append(
        (
            nursing_id,
            HANGZHOU_NURSING_CASE["birth_date"],
            request("2020-08-01", id_number=nursing_id, **HANGZHOU_NURSING_CASE),
        )
    )
    elder_id = make_id(ELDER_BIRTH, seq=32)
    out.append(
        (
            elder_id,
            ELDER_BIRTH,
            request(
                "2020-08-01", id_number=elder_id, birth_date=ELDER_BIRTH, region_code="330102", household_status="dibao"
            ),
        )
    )
    child_id = make_id(CHILD_BIRTH, seq=33)
    out.append(
        (
            child_id,
            CHILD_BIRTH,
            request(
                "2020-08-01",
                id_number=child_id,
                birth_date=CHILD_BIRTH,
                region_code="330102",
                household_status="dibao",
                child_status="community_orphan",
            ),
        )
    )
    return out


def scrape_text(service) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()


def scrape(service) -> list:
    """Every sample of the subsidy_* families."""
    return [
        s
        for family in text_string_to_metric_families(scrape_text(service))
        if family.name.startswith("subsidy_")
        for s in family.samples
    ]


def value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def by_labels(samples, name: str, *keys: str) -> dict[tuple, float]:
    out: dict[tuple, float] = collections.defaultdict(float)
    for s in samples:
        if s.name == name:
            out[tuple(s.labels[k] for k in keys)] += s.value
    return {k: v for k, v in out.items() if v}


def assert_bounded_labels(samples, versions: set[str], secrets: list[str]) -> None:
    """Every label of every subsidy_* sample has a value from a known, bounded set; none holds
    personal data."""
    assert samples
    for s in samples:
        for label, v in s.labels.items():
            for secret in secrets:
                assert secret not in v, f"{s.name}{s.labels} carries personal data"
            if label == "le":
                assert v == "+Inf" or math.isfinite(float(v)), s
            elif label == "version":
                assert v in versions, s
            else:
                assert label in BOUNDED, f"unexpected label {label} on {s.name}"
                assert v in BOUNDED[label], s


def secrets_of(persons) -> list[str]:
    out = []
    for id_number, birth, _ in persons:
        out += [id_number, id_number[:17], birth, birth.replace("-", "")]
    return out


def outcome_name(decision: pb.ProgramDecision) -> str:
    return pb.Outcome.Name(decision.outcome).removeprefix("OUTCOME_")


# ----------------------------------------------------------------------------- one worker


def test_requests_decisions_cache_engine_and_policy_metrics(tmp_path):
    service = start_service(tmp_path)
    try:
        stub = service.stub()
        persons = people()
        fresh: list[pb.EvaluateResponse] = []
        for _, _, req in persons:
            fresh.append(stub.Evaluate(req, timeout=10))
        hits = [stub.Evaluate(req, timeout=10) for _, _, req in persons]
        assert not any(r.from_cache for r in fresh) and all(r.from_cache for r in hits)

        bad_id = persons[0][0][:17] + ("0" if persons[0][0][17] != "0" else "1")
        invalid = request("2020-08-01", id_number=bad_id, **HANGZHOU_NURSING_CASE)
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                stub.Evaluate(invalid, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        out_of_range = request("2035-01-01", id_number=persons[0][0], **HANGZHOU_NURSING_CASE)
        with pytest.raises(grpc.RpcError) as err:
            stub.Evaluate(out_of_range, timeout=10)
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01"), timeout=10)
        batch_people = [
            request("2020-06-30", id_number=i, **HANGZHOU_NURSING_CASE)
            for i in (
                make_id(HANGZHOU_NURSING_CASE["birth_date"], seq=41),
                make_id(HANGZHOU_NURSING_CASE["birth_date"], seq=42),
            )
        ]
        batch = list(
            stub.EvaluateBatch(
                iter([pb.EvaluateBatchRequest(ref=f"r{i}", request=r) for i, r in enumerate(batch_people)]), timeout=10
            )
        )
        fresh += [item.response for item in batch]
        assert all(item.WhichOneof("result") == "response" for item in batch)

        samples = scrape(service)
        # Requests by method, code and caller.
        assert by_labels(samples, "subsidy_grpc_requests_total", "method", "code", "caller") == {
            ("Evaluate", "OK", "anonymous"): 6,
            ("Evaluate", "INVALID_ARGUMENT", "anonymous"): 2,
            ("Evaluate", "OUT_OF_RANGE", "anonymous"): 1,
            ("ListPrograms", "OK", "anonymous"): 1,
            ("EvaluateBatch", "OK", "anonymous"): 1,
        }
        # Latency histograms: one observation per call, cumulative buckets ending at the count.
        for method, count in (("Evaluate", 9), ("ListPrograms", 1), ("EvaluateBatch", 1)):
            assert value(samples, "subsidy_grpc_request_duration_seconds_count", method=method) == count
            assert value(samples, "subsidy_grpc_request_duration_seconds_sum", method=method) > 0
            buckets = sorted(
                (float(s.labels["le"]), s.value)
                for s in samples
                if s.name == "subsidy_grpc_request_duration_seconds_bucket" and s.labels["method"] == method
            )
            assert [v for _, v in buckets] == sorted(v for _, v in buckets)
            assert buckets[-1] == (math.inf, count)
        # Decisions by program and outcome, and amounts: exactly those of the fresh decisions
        # (a cache hit is not decided again).
        expected = collections.Counter((d.program_id, outcome_name(d)) for r in fresh for d in r.decisions)
        assert by_labels(samples, "subsidy_decisions_total", "program", "outcome") == dict(expected)
        assert {"ELIGIBLE", "INELIGIBLE"} <= {o for _, o in expected}
        paid: collections.Counter[str] = collections.Counter()
        for r in fresh:
            for d in r.decisions:
                paid[d.program_id] += d.monthly_amount.fen
        assert by_labels(samples, "subsidy_decided_amount_fen_total", "program") == {
            (p,): v for p, v in paid.items() if v
        }
        assert (
            value(samples, "subsidy_decided_amount_fen_total", program="disability_nursing_subsidy")
            == 54000 + 2 * 50900
        )
        # Cache lookups: the out-of-range request is looked up (a miss) before the engine refuses it.
        lookups = by_labels(samples, "subsidy_cache_lookups_total", "result")
        assert lookups[("hit",)] == 3
        assert lookups[("miss",)] in (len(fresh), len(fresh) + 1)
        assert value(samples, "subsidy_cache_errors_total") == 0
        assert value(samples, "subsidy_cache_up", backend="local") == 1
        # Engine time: one observation per fresh decision.
        assert value(samples, "subsidy_engine_evaluation_seconds_count") == len(fresh)
        assert value(samples, "subsidy_engine_evaluation_seconds_sum") > 0
        # The policy version the replies carry.
        versions = {r.policy_version for r in fresh + hits}
        assert len(versions) == 1
        assert by_labels(samples, "subsidy_policy_info", "version") == {(versions.pop(),): 1}

        assert_bounded_labels(samples, {fresh[0].policy_version}, secrets_of(persons) + [bad_id])
        assert bad_id not in scrape_text(service) and persons[0][0] not in scrape_text(service)
    finally:
        service.stop()


def test_policy_reloads_by_result_and_policy_info(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    service = start_service(tmp_path, "--policies", str(policies))
    try:
        stub = service.stub()
        persons = people()
        old = stub.Evaluate(persons[0][2], timeout=10).policy_version
        samples = scrape(service)
        assert by_labels(samples, "subsidy_policy_info", "version") == {(old,): 1}
        assert value(samples, "subsidy_policy_reloads_total", result="success") == 0
        assert value(samples, "subsidy_policy_reloads_total", result="failure") == 0

        # A good reload: a changed parameter.
        share = policies / "parameters" / "disability" / "nursing_share_fully_dependent.yaml"
        share.write_text(share.read_text().replace("value: 0.5,", "value: 0.6,"))
        service.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while value(scrape(service), "subsidy_policy_reloads_total", result="success") < 1:
            assert time.monotonic() < deadline, "no successful reload counted"
            time.sleep(0.1)
        new = stub.Evaluate(persons[0][2], timeout=10).policy_version
        assert new != old
        samples = scrape(service)
        info = {s.labels["version"]: s.value for s in samples if s.name == "subsidy_policy_info"}
        assert info == {old: 0, new: 1}

        # A bad reload: a parameter file that does not parse. The old set keeps serving.
        share.write_text("values: [unclosed\n")
        service.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while value(scrape(service), "subsidy_policy_reloads_total", result="failure") < 1:
            assert time.monotonic() < deadline, "no failed reload counted"
            time.sleep(0.1)
        samples = scrape(service)
        assert value(samples, "subsidy_policy_reloads_total", result="success") == 1
        assert value(samples, "subsidy_policy_reloads_total", result="failure") == 1
        assert {s.labels["version"]: s.value for s in samples if s.name == "subsidy_policy_info"} == {old: 0, new: 1}
        reply = stub.Evaluate(persons[0][2], timeout=10)
        assert reply.policy_version == new
        assert "policy reload failed" in service.log_text()
        assert_bounded_labels(samples, {old, new}, secrets_of(persons))
    finally:
        service.stop()


# ----------------------------------------------------------------------------- several workers


def write_stale_metrics(directory) -> None:
    """What a crashed earlier run leaves behind: a worker's counter file with 1000 requests."""
    code = (
        "from prometheus_client import Counter\n"
        "c = Counter('subsidy_grpc_requests', 'x', ['method', 'code', 'caller'])\n"
        "c.labels(method='Evaluate', code='OK', caller='anonymous').inc(1000)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        timeout=30,
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
    )
    assert list(directory.glob("counter_*.db"))


def test_workers_share_the_port_and_metrics_are_aggregated(tmp_path):
    multiproc = tmp_path / "prometheus-multiproc"
    multiproc.mkdir()
    write_stale_metrics(multiproc)
    service = start_service(tmp_path, "--workers=2", "--grace", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    calls = 0
    channels = []
    try:
        persons = people()
        same = persons[0][2]
        replies: list = []
        # Both workers up (each says so in the log), not only the one that answered the health check.
        wait_for_log_lines(service, "serving", 2)
        # Each call on a fresh connection (a channel with its own subchannel pool); SO_REUSEPORT
        # spreads connections over the workers by a hash of the client port. Each worker has its own
        # in-process LRU, so the same request decided afresh twice means both workers served it.
        # Bounded by count, not time: 200 connections all on one worker would be a 2**-199 chance.
        for _ in range(200):
            if sum(not r.from_cache for r in replies) >= 2:
                break
            channel = grpc.insecure_channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(channel)
            replies.append(pb_grpc.EligibilityServiceStub(channel).Evaluate(same, timeout=10))
            calls += 1
            channel.close()
        assert sum(not r.from_cache for r in replies) >= 2, "the second worker never served a call"
        # More calls on separate connections, all three people.
        for i in range(30):
            with grpc.insecure_channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                replies.append(pb_grpc.EligibilityServiceStub(channel).Evaluate(persons[i % 3][2], timeout=10))
                calls += 1
        pids = {p.name.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}
        assert len(pids) >= 2  # the workers (the supervisor cleared the stale file and its own)

        samples = scrape(service)
        assert value(samples, "subsidy_grpc_requests_total", method="Evaluate", code="OK") == calls, (
            "the aggregated request counter is not the number of calls made (stale files?)"
        )
        assert value(samples, "subsidy_grpc_request_duration_seconds_count", method="Evaluate") == calls
        fresh = sum(not r.from_cache for r in replies)
        assert 4 <= fresh <= 6  # each person decided once per worker that saw it
        lookups = by_labels(samples, "subsidy_cache_lookups_total", "result")
        assert lookups[("miss",)] == fresh and lookups[("hit",)] == calls - fresh
        assert value(samples, "subsidy_engine_evaluation_seconds_count") == fresh
        decided = sum(v for (n, _), v in by_labels(samples, "subsidy_decisions_total", "program", "outcome").items())
        assert decided == 4 * fresh
        # Gauges: the lowest cache state over the live workers (no supervisor series at 0) and the version.
        assert [(s.labels, s.value) for s in samples if s.name == "subsidy_cache_up"] == [({"backend": "local"}, 1)]
        version = replies[0].policy_version
        assert by_labels(samples, "subsidy_policy_info", "version") == {(version,): 1}
        assert_bounded_labels(samples, {version}, secrets_of(persons))
    finally:
        code = service.stop()
    assert code == 0
