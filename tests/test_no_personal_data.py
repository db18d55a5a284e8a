"""No ID number in any log line or metric.

A service at DEBUG level gets ID numbers everywhere a caller can put them (valid, with a wrong
check character, lower-case x, in the wrong fields, in batch refs, in oversized and malformed
messages), a policy reload fails, and its log and metrics text are searched for every one of them.
Then every service log the tests of this session wrote so far (the tests' tmp directories), and
the metrics of the session's shared server, are searched for anything shaped like an ID number
with a valid check character.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
import urllib.request

import grpc
import pytest
from support import HANGZHOU_NURSING_CASE, POLICIES, make_id, request, start_service

from service.api import eligibility_pb2 as pb
from service.idnumber import check_char

# Not after a "." either: the fraction digits of a float (0.031243716000062705) are not an ID number.
ID_SHAPE = re.compile(r"(?<![0-9A-Za-z.])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")


def looks_like_an_id(text: str) -> list[str]:
    """Substrings shaped like an ID number: 18 characters with a valid check character, or 15 digits
    starting with a Zhejiang region code (33...)."""
    found = []
    for m in ID_SHAPE.finditer(text):
        s = m.group(1)
        if len(s) == 18 and check_char(s[:17]) == s[17].upper() or len(s) == 15 and s.startswith("33"):
            found.append(s)
    return found


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def call(fn, *args):
    try:
        return fn(*args, timeout=10)
    except grpc.RpcError as err:
        return err.code()


@pytest.fixture(scope="module")
def exercised(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("personal-data")
    policies = tmp / "policies"
    shutil.copytree(POLICIES, policies)
    service = start_service(tmp, "--policies", str(policies), "--log-level", "DEBUG", name="pii")
    stub = service.stub()
    used: set[str] = set()

    def ident(birth: str, seq: int) -> str:
        value = make_id(birth, seq=seq)
        used.add(value)
        return value

    # Valid people, decided (and cached, and decided again).
    for seq in range(20):
        r = request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": ident("1970-05-05", seq)})
        assert call(stub.Evaluate, r).decisions
        assert call(stub.Evaluate, r).from_cache
    # A lower-case x check character, and surrounding spaces.
    for seq in range(200):
        candidate = make_id("1958-03-04", seq=seq)
        if candidate.endswith("X"):
            used.add(candidate)
            r = request("2020-08-01", birth_date="1958-03-04", region_code="330106", id_number=candidate.lower())
            call(stub.Evaluate, r)
            r.person.id_number = f"  {candidate}  "
            call(stub.Evaluate, r)
            break
    # Wrong check character, 15 digits, and an ID in every other string field.
    other = ident("1980-01-01", 7)
    wrong = other[:-1] + ("1" if other[-1] != "1" else "2")
    fifteen = other[:6] + other[8:17]
    used |= {wrong, fifteen}
    for bad in (wrong, fifteen):
        assert (
            call(
                stub.Evaluate,
                pb.EvaluateRequest(
                    as_of="2020-08-01", person=pb.Person(id_number=bad, birth_date="1980-01-01", region_code="330102")
                ),
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )
    smuggled = pb.EvaluateRequest(
        as_of=other, programs=[other], person=pb.Person(id_number=other, birth_date=other, region_code=other)
    )
    smuggled.person.capacity_assessment.assessed_on = other
    assert call(stub.Evaluate, smuggled) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        call(stub.ListPrograms, pb.ListProgramsRequest(as_of=other, region_code=other))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    # A batch, with IDs in its refs too (refs are "never personal data", but callers err).
    items = [
        pb.EvaluateBatchRequest(
            ref=ident(f"1950-06-0{1 + i % 9}", i),
            request=request(
                "2020-08-01",
                birth_date=f"1950-06-0{1 + i % 9}",
                region_code="330122",
                id_number=make_id(f"1950-06-0{1 + i % 9}", seq=i),
            ),
        )
        for i in range(12)
    ]
    items.append(pb.EvaluateBatchRequest(ref=wrong, request=pb.EvaluateRequest(person=pb.Person(id_number=wrong))))
    assert len(list(stub.EvaluateBatch(iter(items), timeout=30))) == 13
    # Oversized and malformed messages carrying an ID.
    big = request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": (other + " ") * 20_000})
    assert call(stub.Evaluate, big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    with grpc.insecure_channel(service.address) as channel:
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/subsidy.v1.EligibilityService/Evaluate")
        damaged = request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": other}).SerializeToString()[:-3]
        assert call(raw, damaged + b"\xff") == grpc.StatusCode.INVALID_ARGUMENT
    # A broken policy reload (the old set keeps serving).
    (policies / "parameters/common/dibao_standard.yaml").write_text(f"values: [{other}\n")
    service.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "policy reload failed" not in service.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    metrics_text = scrape(service.metrics_port)
    assert service.stop() == 0
    return service, used, metrics_text


def test_no_id_number_in_the_logs(exercised):
    service, used, _ = exercised
    text = service.log_text()
    assert '"audit"' in text and "policy reload failed" in text  # the log really covers those paths
    leaked = sorted(i for i in used if i in text or i.lower() in text)
    assert leaked == []
    assert looks_like_an_id(text) == []


def test_no_id_number_in_the_metrics(exercised):
    _, used, metrics_text = exercised
    assert "subsidy_grpc_requests_total" in metrics_text
    assert sorted(i for i in used if i in metrics_text) == []
    assert looks_like_an_id(metrics_text) == []


def test_no_id_number_in_any_log_of_this_test_session(tmp_path_factory, server):
    """Every service log the session's tests wrote (all use tmp dirs of this session), and the metrics
    of the session's shared server after all the requests other tests sent it."""
    logs = list(tmp_path_factory.getbasetemp().rglob("*.log"))
    assert logs
    found = {str(path): looks_like_an_id(path.read_text(errors="replace")) for path in logs}
    assert {path: ids for path, ids in found.items() if ids} == {}
    assert looks_like_an_id(scrape(server.metrics_port)) == []


def test_the_search_finds_an_id_number_where_there_is_one():
    valid = make_id("1970-05-05")
    line = json.dumps({"level": "INFO", "message": "x", "id": valid, "hash": "ab" * 32})
    assert looks_like_an_id(line) == [valid]
    assert looks_like_an_id(f"id={valid[:6] + valid[8:17]}") == [valid[:6] + valid[8:17]]
    # A request hash full of digits is not an ID number.
    assert looks_like_an_id("request_hash 0123456789012345678901234567890123456789abcdef") == []
    assert looks_like_an_id("subsidy_grpc_request_duration_seconds_sum 0.031243716000062705") == []
