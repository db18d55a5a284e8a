"""Hostile input: at least 10,000 generated requests, valid and malformed, against a real server.

Every reply must be a valid decision receipt, or INVALID_ARGUMENT (OUT_OF_RANGE for a well-formed
date outside the policy period) with field violations: never INTERNAL, never another code, never
a crash.

Memory: the server runs without a decision cache, but the engine and the reply builder keep
bounded caches of what they rendered per distinct input (engine/decide.py, convert.py: up to
10,000-100,000 entries each), so the first pass over fresh inputs grows the RSS by a few MB
while they fill. A leak is growth per request: after the generated run, every message is sent
again, and over that replay of 10,000+ requests the server's RSS (from /proc) must stay flat.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import start_service

from service.api import eligibility_pb2 as pb
from service.idnumber import check_char

REQUESTS_PER_EXAMPLE = 20
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 520))  # 520 x 20 = 10,400 requests
WARMUP_REQUESTS = 2_000  # RSS baseline after this many
FIRST_PASS_GROWTH_LIMIT_KIB = 48 * 1024  # bounded caches filling (see above)
REPLAY_GROWTH_LIMIT_KIB = 3 * 1024  # the same 10,000+ requests again: flat
REGIONS = [
    "330102",
    "330106",
    "330110",
    "330122",
    "330185",
    "330204",
    "330212",
    "331102",
    "330100",
    "330000",
    "110101",
    "330199",
    "000000",
]
PROGRAMS = [
    "elderly_care_subsidy",
    "child_basic_living_allowance",
    "disability_living_allowance",
    "disability_nursing_subsidy",
]
# Well-formed requests are decided on a few dates: the engine caches the parameters in force per
# (region, date), bounded at 10,000 entries (engine/decide.py), and the memory check is for leaks,
# not for that cache filling. Hostile requests use any date.
EVALUATION_DATES = st.sampled_from(
    [
        "2016-07-01",
        "2017-01-01",
        "2017-11-01",
        "2018-06-30",
        "2019-07-01",
        "2020-06-30",
        "2020-07-01",
        "2020-08-01",
        "2021-03-15",
        "2024-01-01",
    ]
)
# FAILED_PRECONDITION: a date before every region has every parameter (policy.yaml complete_from).
OK_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --- strategies ----------------------------------------------------------------------------------

any_text = st.text(max_size=40)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
dates = st.dates(dt.date(1900, 1, 1), dt.date(2035, 12, 31))
date_text = st.one_of(
    dates.map(dt.date.isoformat),
    dates.map(dt.date.isoformat),
    any_text,
    st.sampled_from(
        [
            "",
            "2020-02-30",
            "2019-02-29",
            "2020-13-01",
            "20200801",
            "2020-8-1",
            "２０２０-０８-０１",
            "2020-08-01\n",
            " 2020-08-01",
            "0000-00-00",
        ]
    ),
)


@st.composite
def id_numbers(draw, birth: str, region: str) -> str:
    digits = birth.replace("-", "")
    seq = draw(st.integers(0, 999))
    region = region if re.fullmatch(r"[0-9]{6}", region) else "330102"
    first = f"{region}{digits if len(digits) == 8 else '19700505'}{seq:03d}"
    good = first + check_char(first) if re.fullmatch(r"[0-9]{17}", first) else first + "0"
    return draw(
        st.one_of(
            st.just(good),
            st.just(good),
            st.just(good),
            st.just(good.lower()),
            st.just(f" {good} "),
            st.just(good[:-1] + ("0" if good[-1] != "0" else "1")),  # wrong check character
            st.just(good[:6] + good[8:17]),  # a 15-digit ID
            st.text(alphabet="0123456789Xx", max_size=20),
            any_text,
        )
    )


def _enum(enum_type, hostile: bool):
    """An enum number: a defined value (0 is unspecified) or, when hostile, any int32."""
    defined = st.sampled_from(sorted(enum_type.values_by_number))
    return st.one_of(defined, defined, defined, int32) if hostile else defined


@st.composite
def requests(draw) -> pb.EvaluateRequest:
    """Half well-formed people (decided, or refused for a rule of the API), half hostile."""
    hostile = draw(st.booleans())
    valid_birth = draw(st.dates(dt.date(1925, 1, 1), dt.date(2016, 6, 30)))
    birth = draw(st.one_of(st.just(valid_birth.isoformat()), date_text)) if hostile else valid_birth.isoformat()
    valid_regions = st.sampled_from(REGIONS[:9])
    region = draw(st.one_of(st.sampled_from(REGIONS), any_text)) if hostile else draw(valid_regions)
    id_number = draw(id_numbers(birth, region)) if hostile else None
    if id_number is None:
        first = f"{draw(valid_regions)}{birth.replace('-', '')}{draw(st.integers(0, 999)):03d}"
        id_number = first + check_char(first)
    person = pb.Person(id_number=id_number, birth_date=birth, region_code=region)
    enums = pb.Person.DESCRIPTOR.fields_by_name
    person.household_status = draw(_enum(enums["household_status"].enum_type, hostile))
    money = st.one_of(st.integers(0, 1_000_000), int64) if hostile else st.integers(0, 1_000_000)
    if draw(st.booleans()):
        person.household_income_per_head_fen = draw(money)
    if draw(st.booleans()):
        person.own_income_fen = draw(money)
    if draw(st.booleans()):
        person.disability.grade = draw(st.one_of(st.integers(0, 5), int32) if hostile else st.integers(1, 4))
        person.disability.category = draw(_enum(pb.Disability.DESCRIPTOR.fields_by_name["category"].enum_type, hostile))
    for name in (
        "long_term_care_need",
        "in_institutional_care",
        "in_full_time_education",
        "serious_illness",
        "depends_on_family_support",
    ):
        if draw(st.booleans()):
            setattr(person, name, draw(st.booleans()))
    person.self_care = draw(_enum(enums["self_care"].enum_type, hostile))
    person.child_status = draw(_enum(enums["child_status"].enum_type, hostile))
    if draw(st.booleans()):
        person.capacity_assessment.level = draw(
            _enum(pb.CapacityAssessment.DESCRIPTOR.fields_by_name["level"].enum_type, hostile)
        )
        person.capacity_assessment.assessed_on = (
            draw(date_text)
            if hostile
            else draw(st.dates(dt.date(2016, 1, 1), dt.date(2020, 7, 31)).map(dt.date.isoformat))
        )
    benefit = enums["other_benefits"].enum_type
    assert benefit is not None
    person.other_benefits.extend(
        draw(
            st.lists(
                _enum(benefit, True) if hostile else st.sampled_from(sorted(n for n in benefit.values_by_number if n)),
                max_size=3,
                unique=not hostile,
            )
        )
    )
    in_period = st.dates(dt.date(2016, 7, 1), dt.date(2026, 12, 31)).map(dt.date.isoformat)
    as_of = draw(st.one_of(in_period, st.just(""), date_text)) if hostile else draw(EVALUATION_DATES)
    programs = draw(
        st.lists(st.one_of(st.sampled_from(PROGRAMS), any_text), max_size=5)
        if hostile
        else st.lists(st.sampled_from(PROGRAMS), max_size=3, unique=True)
    )
    request = pb.EvaluateRequest(as_of=as_of, programs=programs)
    if not hostile or draw(st.integers(0, 30)) != 0:  # now and then no person at all
        request.person.CopyFrom(person)
    return request


wire_messages = st.one_of(
    requests().map(lambda r: r.SerializeToString()),
    requests().map(lambda r: r.SerializeToString()),
    requests().map(lambda r: r.SerializeToString()),
    st.binary(max_size=300),  # any bytes
    requests()
    .map(lambda r: r.SerializeToString())
    .flatmap(  # a valid message, damaged
        lambda b: st.tuples(st.just(b), st.integers(0, max(0, len(b) - 1)), st.integers(0, 255)).map(
            lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]
        )
    ),
    requests().map(lambda r: r.SerializeToString()).map(lambda b: b[: len(b) // 2]),  # truncated
)


# --- the checks ----------------------------------------------------------------------------------


def check_reply(reply: pb.EvaluateResponse) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", reply.policy_version)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", reply.evaluation_date)
    assert re.fullmatch(r"[0-9a-f]{64}", reply.request_hash)
    assert reply.region.code and reply.decisions
    total = 0
    for d in reply.decisions:
        assert d.outcome in (pb.OUTCOME_ELIGIBLE, pb.OUTCOME_INELIGIBLE, pb.OUTCOME_UNDETERMINED)
        assert d.monthly_amount.fen >= 0
        assert d.outcome == pb.OUTCOME_ELIGIBLE or d.monthly_amount.fen == 0
        assert d.outcome != pb.OUTCOME_UNDETERMINED or d.missing_facts
        assert d.reasons and all(r.rule_id and r.text_en and r.citation for r in d.reasons)
        total += d.monthly_amount.fen
    assert reply.total_monthly_amount.fen == total


def check_error(code: grpc.StatusCode, details: str, violations: list) -> str:
    assert code in OK_CODES, f"{code.name}: {details}"
    assert violations, f"{code.name} without field violations: {details}"
    assert "Traceback" not in details
    return code.name


def field_violations(err: grpc.RpcError) -> list:
    assert isinstance(err, grpc.Call)  # an RpcError from a call is also the call
    status = rpc_status.from_call(err)
    out = []
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out += list(bad.field_violations)
    return out


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    service = start_service(
        tmp_path_factory.mktemp("fuzz"), "--cache-ttl", "0", "--threads", "4", "--log-level", "WARNING", name="fuzz"
    )
    yield service
    assert service.stop() == 0


def test_ten_thousand_generated_requests(fuzz_server):
    channel = grpc.insecure_channel(fuzz_server.address)
    raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/subsidy.v1.EligibilityService/Evaluate"
    )  # bytes in, bytes out
    batch: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
        "/subsidy.v1.EligibilityService/EvaluateBatch"
    )
    pool = futures.ThreadPoolExecutor(8)
    outcomes: Counter = Counter()
    rss: dict[str, int] = {}
    samples: list[int] = []  # server RSS every 1,000 requests
    sent: list[bytes] = []
    lock = threading.Lock()
    started = time.monotonic()

    def send(message: bytes) -> str:
        try:
            reply = pb.EvaluateResponse.FromString(raw(message, timeout=30))
        except grpc.RpcError as err:
            return check_error(err.code(), err.details() or "", field_violations(err))
        check_reply(reply)
        return "decision"

    def send_batch(messages: list[bytes]) -> list[str]:
        # As EvaluateBatch items: a bad item gets an error in its place and the stream goes on.
        items = [b"\x0a\x02r" + bytes([48 + i % 10]) + b"\x12" + _varint(len(m)) + m for i, m in enumerate(messages)]
        out = []
        for index, data in enumerate(batch(iter(items), timeout=60)):
            r = pb.EvaluateBatchResponse.FromString(data)
            assert r.index == index
            if r.WhichOneof("result") == "response":
                check_reply(r.response)
                out.append("decision")
            else:
                out.append(check_error(grpc.StatusCode[r.error.code], r.error.message, list(r.error.field_errors)))
        assert len(out) == len(messages)
        return out

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(st.lists(wire_messages, min_size=REQUESTS_PER_EXAMPLE, max_size=REQUESTS_PER_EXAMPLE), st.integers(0, 9))
    def run(messages: list[bytes], mode: int) -> None:
        results = send_batch(messages) if mode == 0 else list(pool.map(send, messages))
        with lock:
            sent.extend(messages)
            outcomes.update(results)
            outcomes["total"] += len(results)
            if "warm" not in rss and outcomes["total"] >= WARMUP_REQUESTS:
                rss["warm"] = rss_kib(fuzz_server.proc.pid)
            if outcomes["total"] // 1000 > len(samples):
                samples.append(rss_kib(fuzz_server.proc.pid))
        assert fuzz_server.proc.poll() is None, "the server died"

    try:
        run()
    finally:
        pool.shutdown()
        channel.close()
    rss["end"] = rss_kib(fuzz_server.proc.pid)
    elapsed = time.monotonic() - started
    # The replay: the same messages again, 8 at a time.
    channel = grpc.insecure_channel(fuzz_server.address)
    raw = channel.unary_unary("/subsidy.v1.EligibilityService/Evaluate")
    with futures.ThreadPoolExecutor(8) as replay_pool:
        replayed = Counter(replay_pool.map(send, sent))
    channel.close()
    rss["replayed"] = rss_kib(fuzz_server.proc.pid)
    print(
        f"\nfuzz: {dict(outcomes)} in {elapsed:.0f}s; server RSS {rss['warm']} KiB after "
        f"{WARMUP_REQUESTS} requests, {rss['end']} KiB at the end; every 1,000: {samples}; "
        f"replay of {len(sent)}: {dict(replayed)}, RSS {rss['end']} -> {rss['replayed']} KiB"
    )
    assert outcomes["total"] >= 10_000
    assert outcomes["decision"] > 2_000 and outcomes["INVALID_ARGUMENT"] > 2_000  # both kinds well exercised
    assert replayed == Counter({k: v for k, v in outcomes.items() if k != "total"})  # same answers again
    assert rss["end"] - rss["warm"] < FIRST_PASS_GROWTH_LIMIT_KIB
    assert rss["replayed"] - rss["end"] < REPLAY_GROWTH_LIMIT_KIB
    log = fuzz_server.log_text()
    assert '"internal error"' not in log and "Traceback" not in log
    assert fuzz_server.proc.poll() is None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
