"""Limits, deadlines, the bounded queue, SIGTERM drain and policy reload under load, on real servers."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from support import (
    HANGZHOU_NURSING_CASE,
    POLICIES,
    ROOT,
    make_id,
    metric,
    request,
    scrape,
    start_service,
    stop_gracefully,
)

from bench.hostile import RawConnection, grpc_frame
from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

NURSING = "disability_nursing_subsidy"
LIVING = "disability_living_allowance"


def good_request(seq: int = 1) -> pb.EvaluateRequest:
    return request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": make_id("1970-05-05", seq=seq)})


def audit_lines(service, method: str | None = None) -> list[dict]:
    out = []
    for line in service.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("name") == "audit" and (method is None or entry.get("method") == method):
                out.append(entry)
    return out


def violations(err: grpc.RpcError) -> set[str]:
    fields = set()
    # A failed call's RpcError is also its grpc.Call (which has the trailing metadata), not typed so.
    for detail in rpc_status.from_call(cast(grpc.Call, err)).details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields |= {v.field for v in bad.field_violations}
    return fields


class Hold:
    """Occupies one of the server's RPC slots: a batch stream whose next request never comes until release()."""

    def __init__(self, stub):
        self.released = threading.Event()

        def items():
            yield pb.EvaluateBatchRequest(ref="hold", request=good_request())
            self.released.wait(30)

        self.call = stub.EvaluateBatch(items(), timeout=60)
        assert next(self.call).ref == "hold"  # the server is inside our stream now

    def release(self) -> None:
        self.released.set()
        list(self.call)


@pytest.fixture
def started(tmp_path):
    """start_service for one test; whatever it started is stopped at the end if still running: by
    SIGTERM, so that a supervisor stops its workers too (SIGKILL would leave them running)."""
    services = []

    def start(*args: str, **kwargs):
        service = start_service(tmp_path, *args, **kwargs)
        services.append(service)
        return service

    yield start
    for service in services:
        if service.proc.poll() is None:
            stop_gracefully(service)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """At most 3 calls at once (all 3 for one caller), batch streams of at most 5."""
    service = start_service(
        tmp_path_factory.mktemp("small"),
        "--max-concurrent-rpcs",
        "3",
        "--max-rpcs-per-caller",
        "3",
        "--max-batch",
        "5",
        name="small",
    )
    yield service
    assert service.stop() == 0


# --- limits --------------------------------------------------------------------------------------


def test_oversized_message_is_refused(stub):
    big = good_request()
    big.person.id_number = "9" * 300_000
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(big, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the limit, a long field is an ordinary bad field.
    big.person.id_number = "9" * 100_000
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(big, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "person.id_number" in violations(err.value)


def test_oversize_refusals_are_counted_and_a_batch_item_answered_in_place(started):
    service = started()
    stub = service.stub()
    big = good_request()
    big.person.id_number = "9" * 300_000
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(big, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    items = [
        pb.EvaluateBatchRequest(ref="a", request=good_request(1)),
        pb.EvaluateBatchRequest(ref="big", request=big),
        pb.EvaluateBatchRequest(ref="c", request=good_request(3)),
    ]
    replies = list(stub.EvaluateBatch(iter(items), timeout=10))
    assert [r.index for r in replies] == [0, 1, 2]
    assert [r.WhichOneof("result") for r in replies] == ["response", "error", "response"]
    assert replies[1].error.code == "RESOURCE_EXHAUSTED"
    text = scrape(service)
    assert metric(text, "subsidy_grpc_requests_total", method="Evaluate", code="RESOURCE_EXHAUSTED") == 1
    assert metric(text, "subsidy_grpc_requests_total", method="EvaluateBatch", code="OK") == 1
    assert '"message": "request refused"' in service.log_text()


def server_cpu_seconds(service) -> float:
    """CPU time of every thread of the server process so far (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{service.proc.pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def trailer_bytes(err: grpc.RpcError) -> int:
    return sum(len(m.key) + len(m.value) for m in err.trailing_metadata() or ()) + len(err.details() or "")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda r: r.person.other_benefits.extend([0] * 200_000), id="200000_other_benefits"),
        pytest.param(lambda r: r.programs.extend([NURSING] * 300), id="300_duplicate_programs"),
        pytest.param(lambda r: r.programs.extend([f"no_such_program_{i}" for i in range(60)]), id="60_unknown"),
    ],
)
def test_large_error_lists_are_bounded(server, make):
    """INVALID_ARGUMENT (never RESOURCE_EXHAUSTED from a trailer over gRPC's metadata limit), the
    first errors and a count of the rest, in little server time."""
    stub = server.stub()
    bad = good_request()
    make(bad)
    bad.person.id_number = bad.person.id_number[:-1] + "0"  # and one more bad field
    spent = []
    for _ in range(3):  # the least of three: the server also runs its canary now and then
        before = server_cpu_seconds(server)
        with pytest.raises(grpc.RpcError) as err:
            stub.Evaluate(bad, timeout=30)
        spent.append(server_cpu_seconds(server) - before)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer_bytes(err.value) < 8 * 1024
    listed = violations(err.value)
    assert 1 <= len(listed) <= 21
    print(f"server CPU time for the request: {min(spent) * 1000:.1f} ms")
    assert min(spent) < 0.05  # CPU time, not wall time: what a busy machine does not inflate much
    # The same inside a batch: an error in the item's place, bounded the same way.
    items = [pb.EvaluateBatchRequest(ref="bad", request=bad), pb.EvaluateBatchRequest(ref="ok", request=good_request())]
    replies = list(stub.EvaluateBatch(iter(items), timeout=30))
    assert replies[0].error.code == "INVALID_ARGUMENT" and len(replies[0].error.field_errors) <= 21
    assert replies[1].WhichOneof("result") == "response"


def test_many_field_errors_list_the_first_and_count_the_rest():
    from service.request import MAX_FIELD_ERRORS, InvalidRequest

    error = InvalidRequest([(f"f{i}", "bad " * 100) for i in range(500)])
    assert error.count == 500
    assert len(error.violations) <= MAX_FIELD_ERRORS + 1
    assert error.violations[-1][0] == "request"
    assert error.violations[-1][1].startswith(f"{500 - len(error.violations) + 1} more")
    assert sum(len(f) + len(d) for f, d in error.violations) < 4096


# --- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("assessed_on", ["9999-12-31", "9999-07-01", "0001-01-01"])
def test_date_arithmetic_on_any_valid_date(stub, assessed_on):
    """An assessment date at either end of the calendar is decided, alone and as a batch item."""
    person: dict[str, Any] = dict(birth_date="1950-03-01", region_code="330102", household_status="dibao")
    person["capacity_assessment"] = {"level": "severe_loss", "assessed_on": assessed_on}
    r = request("2020-08-01", programs=["elderly_care_subsidy"], **person)
    reply = stub.Evaluate(r, timeout=10)
    [decision] = reply.decisions
    valid = [x for x in decision.reasons if x.rule_id == "elderly.assessment_still_valid"]
    assert valid
    items = [pb.EvaluateBatchRequest(ref="a", request=r)]
    [item] = list(stub.EvaluateBatch(iter(items), timeout=10))
    assert item.WhichOneof("result") == "response"
    assert item.response.decisions[0].outcome == decision.outcome


def test_add_months_agrees_with_relativedelta_and_goes_past_9999():
    import datetime as dt
    import random

    from dateutil.relativedelta import relativedelta

    from service.policy.expressions import add_months

    def ymd(d: dt.date) -> int:
        return d.year * 10000 + d.month * 100 + d.day

    rng = random.Random(7)
    low, high = dt.date(1, 1, 1).toordinal() + 3700, dt.date(9999, 12, 31).toordinal() - 3700
    for _ in range(20_000):
        day, months = dt.date.fromordinal(rng.randrange(low, high)), rng.randrange(-120, 121)
        assert add_months(ymd(day), months) == ymd(day + relativedelta(months=months))
    assert add_months(99991231, 6) == 100000630  # 10000-06-30: later than any valid date
    assert add_months(99990831, 6) == 100000229  # the year 10000 is a leap year
    assert add_months(99991231, 6) > 99991231 > add_months(99991231, -1)
    assert add_months(10131, -1) == 1231  # 0000-12-31, earlier than any valid date


def test_malformed_protobuf_is_invalid_argument_not_internal(server):
    with grpc.insecure_channel(server.address) as channel:
        # No serializer: the bytes go out as they are.
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/subsidy.v1.EligibilityService/Evaluate"
        )
        for junk in (b"\xff\xff\xff", b"\x0a\x05\xc3\x28abc", b"\x12\x80\x80\x80\x80\x10"):
            with pytest.raises(grpc.RpcError) as err:
                call(junk, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert violations(err.value) == {"request"}


def test_batch_stream_length_is_bounded(small_server):
    items = [pb.EvaluateBatchRequest(ref=f"r{i}", request=good_request(i)) for i in range(7)]
    replies = []
    with pytest.raises(grpc.RpcError) as err:
        for reply in small_server.stub().EvaluateBatch(iter(items), timeout=30):
            replies.append(reply)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [r.ref for r in replies] == [f"r{i}" for i in range(5)]


def test_full_server_answers_resource_exhausted_at_once(small_server):
    stub = small_server.stub()
    before = scrape(small_server)
    holds = [Hold(stub) for _ in range(3)]  # every one of the 3 slots
    calls = [stub.Evaluate.future(good_request(100 + i), timeout=20) for i in range(10)]
    # Refused while every slot is still held: never queued behind them.
    assert all(c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for c in calls)
    assert "limit of 3 calls" in calls[0].details()
    # Health is outside the decision slots.
    with grpc.insecure_channel(small_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    for hold in holds:
        hold.release()
    assert stub.Evaluate(good_request(110), timeout=10).decisions  # a free slot serves again
    # Every refusal is counted with its code, and logged.
    after = scrape(small_server)
    refused = "subsidy_grpc_requests_total"
    assert (
        metric(after, refused, method="Evaluate", code="RESOURCE_EXHAUSTED")
        - metric(before, refused, method="Evaluate", code="RESOURCE_EXHAUSTED")
        == 10
    )
    logged = [json.loads(line) for line in small_server.log_text().splitlines() if line.startswith("{")]
    assert sum(1 for line in logged if line.get("message") == "request refused") >= 10


def test_one_caller_cannot_take_every_slot(started):
    """Over plaintext a connection counts as one caller: at most 2 of the 4 slots for each."""
    service = started("--max-concurrent-rpcs", "4", "--max-rpcs-per-caller", "2")
    greedy = service.stub()
    holds = [Hold(greedy) for _ in range(2)]
    with pytest.raises(grpc.RpcError) as err:
        Hold(greedy)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "this caller is at its limit of 2" in (err.value.details() or "")
    # A channel of its own (grpc would otherwise share the first one's connection).
    with grpc.insecure_channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        other = pb_grpc.EligibilityServiceStub(channel)
        for i in range(5):
            assert other.Evaluate(good_request(300 + i), timeout=10).decisions
    for hold in holds:
        hold.release()


EVALUATE = "/subsidy.v1.EligibilityService/Evaluate"
EVALUATE_BATCH = "/subsidy.v1.EligibilityService/EvaluateBatch"
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def hostile_streams(conn: RawConnection, variant: str, n: int) -> list[int]:
    """n streams on one connection that a gRPC library would finish and these never do."""
    body = grpc_frame(good_request().SerializeToString())
    item = grpc_frame(pb.EvaluateBatchRequest(ref="x", request=good_request()).SerializeToString())
    open_ = {
        "headers_only": lambda: conn.open(EVALUATE),
        "ten_bytes_of_body": lambda: conn.open(EVALUATE, body[:10]),
        "short_body_half_closed": lambda: conn.open(EVALUATE, b"\x00\x00\x00\x00\x64" + b"x" * 10, end_stream=True),
        "empty_batch": lambda: conn.open(EVALUATE_BATCH),
        "batch_item_then_silence": lambda: conn.open(EVALUATE_BATCH, item),
    }[variant]
    return [open_() for _ in range(n)]


def served(service, seq: int) -> None:
    """Health SERVING and every method answering, on connections of their own (a hang guard only)."""
    with grpc.insecure_channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.EligibilityServiceStub(channel)
        for i in range(10):  # more calls than the server has slots
            assert stub.Evaluate(good_request(seq + i), timeout=10).decisions
        assert stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01"), timeout=10).programs
        batch = [pb.EvaluateBatchRequest(ref=str(i), request=good_request(seq + i)) for i in range(3)]
        assert [r.ref for r in stub.EvaluateBatch(iter(batch), timeout=10)] == ["0", "1", "2"]


@pytest.fixture(scope="module")
def lockout_server(tmp_path_factory):
    """8 slots, 2 for any one connection, a long idle limit: hostile streams stay open during a test."""
    service = start_service(
        tmp_path_factory.mktemp("lockout"), "--max-concurrent-rpcs", "8", "--idle-seconds", "120", name="lockout"
    )
    yield service
    assert service.stop() == 0


@pytest.mark.parametrize(
    "variant",
    ["headers_only", "ten_bytes_of_body", "short_body_half_closed", "empty_batch", "batch_item_then_silence"],
)
def test_streams_that_never_finish_lock_no_one_out(lockout_server, variant):
    """100 streams on one connection that never finish (more than 10 times the slots): health stays
    SERVING and other callers are served while every one of them is still open."""
    conn = RawConnection(lockout_server.address)
    try:
        streams = hostile_streams(conn, variant, 100)
        assert conn.sync()  # the server has read every stream's frames
        if variant == "short_body_half_closed":
            # The stream ended without a whole message: answered at once, as a bad request.
            assert conn.wait_ended(streams, timeout=60)
            assert {conn.ended[s].grpc_status for s in streams} == {INVALID_ARGUMENT}
            still_open = []
        elif variant == "batch_item_then_silence":
            # Each stream asks for a slot with its item: this connection gets 2 of the 8, the rest
            # are refused at once; the 2 hold theirs while others are served.
            assert conn.wait_until(lambda ended: sum(s in ended for s in streams) >= 98, timeout=60)
            refused = [s for s in streams if s in conn.ended]
            assert {conn.ended[s].grpc_status for s in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
            still_open = [s for s in streams if s not in conn.ended]
            assert len(still_open) == 2
        else:
            still_open = streams
        served(lockout_server, 1000)
        assert not any(s in conn.ended for s in still_open)  # still open while others were served
        assert not conn.closed
    finally:
        conn.close()


def test_eight_connections_lock_no_worker_out(started):
    """Eight connections of 100 unfinished streams each against two workers."""
    service = started("--workers", "2", "--max-concurrent-rpcs", "8", "--idle-seconds", "120")
    conns = [RawConnection(service.address) for _ in range(8)]
    try:
        for n, conn in enumerate(conns):
            hostile_streams(conn, ["headers_only", "ten_bytes_of_body", "empty_batch"][n % 3], 100)
            assert conn.sync()
        for n in range(4):  # new connections, spread over both workers by the kernel
            served(service, 2000 + 10 * n)
        assert not any(conn.closed for conn in conns)
    finally:
        for conn in conns:
            conn.close()


def test_idle_streams_end_with_a_clear_status(started):
    service = started("--idle-seconds", "1")
    conn = RawConnection(service.address)
    try:
        streams = {v: hostile_streams(conn, v, 5) for v in ("headers_only", "ten_bytes_of_body", "empty_batch")}
        batch = hostile_streams(conn, "batch_item_then_silence", 5)
        every = [s for group in streams.values() for s in group] + batch
        assert conn.wait_ended(every, timeout=60)  # a hang guard; the idle limit is 1 s
        for s in every:
            assert conn.ended[s].grpc_status == DEADLINE_EXCEEDED
            assert "idle limit" in urllib.parse.unquote(conn.ended[s].grpc_message)
        for s in batch:  # the item sent was answered before the silence ended the stream
            assert len(conn.ended[s].data) > 5
    finally:
        conn.close()
    text = scrape(service)
    assert metric(text, "subsidy_grpc_requests_total", method="Evaluate", code="DEADLINE_EXCEEDED") == 10
    assert metric(text, "subsidy_grpc_requests_total", method="EvaluateBatch", code="DEADLINE_EXCEEDED") == 10


def test_a_caller_that_never_takes_its_replies_holds_nothing(started):
    """A batch stream whose replies are never read: the server stops waiting after the idle limit
    and ends the call (counted) while the caller still reads nothing; the status follows the
    replies once the caller takes them."""
    service = started("--idle-seconds", "1")
    item = grpc_frame(pb.EvaluateBatchRequest(ref="x", request=good_request()).SerializeToString())
    deaf = RawConnection(service.address, take_replies=False)
    try:
        sid = deaf.open(EVALUATE_BATCH, item * 200)  # replies far over the 64 KiB HTTP/2 window
        deadline = time.monotonic() + 30  # a hang guard; the wait is for the count
        while not metric(
            scrape(service), "subsidy_grpc_requests_total", method="EvaluateBatch", code="DEADLINE_EXCEEDED"
        ):
            assert time.monotonic() < deadline, "the server kept waiting for the caller"
            time.sleep(0.1)
        assert sid not in deaf.ended  # the caller has read nothing yet
        served(service, 4000)
        deaf.start_taking_replies()
        assert deaf.wait_ended([sid], timeout=30)
        assert deaf.ended[sid].grpc_status == DEADLINE_EXCEEDED
        assert "no reply taken" in urllib.parse.unquote(deaf.ended[sid].grpc_message)
    finally:
        deaf.close()


def test_every_call_has_a_time_limit_whatever_the_deadline(started):
    """A batch stream that is never idle and has no deadline still ends at --max-call-seconds."""
    service = started("--max-call-seconds", "2", "--idle-seconds", "1")
    stop = threading.Event()

    def trickle():
        for i in range(10_000):
            if stop.wait(0.2):
                return
            yield pb.EvaluateBatchRequest(ref=str(i), request=good_request(i))

    replies = []
    with pytest.raises(grpc.RpcError) as err:
        for reply in service.stub().EvaluateBatch(trickle()):  # no deadline
            replies.append(reply)
            assert len(replies) < 1000, "the stream was never ended"  # a hang guard: 200 s of trickle
    stop.set()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "time limit" in (err.value.details() or "")
    assert replies


def test_compressed_flag_without_encoding_is_refused_by_the_transport(server):
    """The README says so: gRPC's transport itself refuses the frame (INTERNAL) before the service
    sees it; the server stays healthy and goes on serving."""
    conn = RawConnection(server.address)
    try:
        sid = conn.open(EVALUATE, grpc_frame(good_request().SerializeToString(), compressed=True), end_stream=True)
        assert conn.wait_ended([sid], timeout=30)
        assert conn.ended[sid].grpc_status == grpc.StatusCode.INTERNAL.value[0]
        assert "compression" in urllib.parse.unquote(conn.ended[sid].grpc_message).lower()
    finally:
        conn.close()
    served(server, 3000)


def test_call_given_up_before_the_server_got_to_it_does_no_work(small_server):
    stub = small_server.stub()
    stub.Evaluate(good_request(199), timeout=10)  # the connection is up
    before = len(audit_lines(small_server, "Evaluate"))
    decided_before = metric(scrape(small_server), "subsidy_decisions_total")
    small_server.proc.send_signal(signal.SIGSTOP)  # the server cannot get to anything for a while
    try:
        calls = [stub.Evaluate.future(good_request(200 + i), timeout=0.3) for i in range(2)]
        for c in calls:
            assert c.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        small_server.proc.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    # The requests and the callers' cancellations arrive together: grpc drops the calls before a
    # handler runs (and a handler checks the deadline itself before any work).
    assert len(audit_lines(small_server, "Evaluate")) == before
    assert metric(scrape(small_server), "subsidy_decisions_total") == decided_before
    assert stub.Evaluate(good_request(202), timeout=10).decisions
    # A reply or status after the caller left is the caller's doing, not an error to log.
    assert "ExecuteBatchError" not in small_server.log_text()


ENDED = ("DEADLINE_EXCEEDED", "CANCELLED")


def test_batch_deadline_stops_the_work(server):
    stub = server.stub()
    produced: Counter[str] = Counter()

    def endless():
        for i in range(1_000_000):
            produced["n"] += 1
            yield pb.EvaluateBatchRequest(ref=str(i), request=good_request(i))

    before = len(audit_lines(server, "EvaluateBatch"))
    ended = sum(metric(scrape(server), "subsidy_grpc_requests_total", method="EvaluateBatch", code=c) for c in ENDED)
    with pytest.raises(grpc.RpcError) as err:
        for _ in stub.EvaluateBatch(endless(), timeout=1.0):
            pass
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The stream's handler has ended once the call is counted; no decision can come after that.
    deadline = time.monotonic() + 30  # a hang guard
    while (
        sum(metric(scrape(server), "subsidy_grpc_requests_total", method="EvaluateBatch", code=c) for c in ENDED)
        <= ended
    ):
        assert time.monotonic() < deadline, "the batch stream's end was never counted"
        time.sleep(0.05)
    done = len(audit_lines(server, "EvaluateBatch")) - before
    assert 0 < done < produced["n"] < 1_000_000


# --- SIGTERM ---------------------------------------------------------------------------------------


def watch_health(address: str, seen: list, stop: threading.Event) -> None:
    with grpc.insecure_channel(address) as channel:
        try:
            for reply in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30):
                seen.append(reply.status)
                if stop.is_set():
                    return
        except grpc.RpcError:
            pass


@pytest.mark.parametrize("drain_delay", ["0", "1"])
def test_sigterm_drains_in_flight_work_and_exits_0(started, drain_delay):
    service = started("--grace", "10", "--drain-delay", drain_delay)
    seen: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_health, args=(service.address, seen, stop), daemon=True)
    watcher.start()

    def slow_items():
        for i in range(150):
            time.sleep(0.01)
            yield pb.EvaluateBatchRequest(ref=f"r{i}", request=good_request(i))

    replies = []
    for reply in service.stub().EvaluateBatch(slow_items(), timeout=30):
        replies.append(reply)
        if len(replies) == 10:
            service.proc.send_signal(signal.SIGTERM)
            if drain_delay != "0":
                # Still accepting during the delay, and saying NOT_SERVING so balancers move away.
                with grpc.insecure_channel(service.address) as channel:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    # The stream in flight when SIGTERM came finished, every item decided.
    assert [r.ref for r in replies] == [f"r{i}" for i in range(150)]
    assert all(r.WhichOneof("result") == "response" for r in replies)
    assert service.proc.wait(15) == 0  # a hang guard: the stream had finished, nothing else to wait for
    stop.set()
    watcher.join(5)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in seen
    with pytest.raises(grpc.RpcError) as err:
        service.stub().Evaluate(good_request(), timeout=3)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    messages = [json.loads(line).get("message") for line in service.log_text().splitlines() if line.startswith("{")]
    assert messages.index("draining") < messages.index("stopped")


def test_sigterm_grace_period_bounds_the_shutdown(started):
    service = started("--grace", "1")

    def forever():
        for i in range(10_000):
            time.sleep(0.05)
            yield pb.EvaluateBatchRequest(ref=str(i), request=good_request(i))

    call = service.stub().EvaluateBatch(forever(), timeout=60)
    next(call)
    service.proc.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError):
        list(call)
    # The stream would go on for 500 s and is never idle: only the 1 s grace period can end it.
    assert service.proc.wait(30) == 0


def test_calls_just_after_sigterm_get_unavailable_not_cancelled(started):
    """While a stream in flight finishes, new calls are refused with UNAVAILABLE, which clients retry
    (elsewhere); none is CANCELLED."""
    service = started("--grace", "20")
    release = threading.Event()

    def items():
        yield pb.EvaluateBatchRequest(ref="first", request=good_request(1))
        release.wait(30)
        yield pb.EvaluateBatchRequest(ref="last", request=good_request(2))

    in_flight = service.stub().EvaluateBatch(items(), timeout=60)
    assert next(in_flight).ref == "first"
    service.proc.send_signal(signal.SIGTERM)
    with grpc.insecure_channel(service.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30  # a hang guard; the wait is for the event
        while (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stub = pb_grpc.EligibilityServiceStub(channel)
        codes: Counter[str] = Counter()
        for i in range(20):
            try:
                stub.Evaluate(good_request(10 + i), timeout=10)
                codes["OK"] += 1
            except grpc.RpcError as err:
                codes[err.code().name] += 1
        # Drain delay 0: the refusal starts right after health turns NOT_SERVING (a call racing
        # that instant may still be served).
        assert codes["CANCELLED"] == 0 and codes["UNAVAILABLE"] >= 19, codes
    release.set()
    assert [r.ref for r in in_flight] == ["last"]  # the stream in flight finished
    assert service.proc.wait(30) == 0
    assert "ExecuteBatchError" not in service.log_text()


def test_sigterm_with_worker_processes(started):
    service = started("--workers", "2", "--grace", "5")
    assert service.stub().Evaluate(good_request(), timeout=10).policy_version
    assert service.stop(timeout=20) == 0


# --- policy reload under load ---------------------------------------------------------------------


def test_reload_under_load_broken_then_good(tmp_path, started):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    dibao = policies / "parameters/common/dibao_standard.yaml"
    original = dibao.read_text()
    old_line = "{from: 2020-07-01, value: 1080, source: reference}"
    assert old_line in original
    service = started("--policies", str(policies), "--threads", "4")
    v1 = service.stub().Evaluate(good_request(), timeout=10).policy_version
    expect = {1080: (54000, 32400), 1100: (55000, 33000)}
    results: list[tuple[float, str, int, int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load(n: int) -> None:
        stub = service.stub()
        seq = n * 100_000
        while not stop.is_set():
            seq += 1
            try:
                reply = stub.Evaluate(good_request(seq % 997), timeout=10)
            except grpc.RpcError as err:
                failures.append(f"{err.code().name}: {err.details()}")
                continue
            d = {x.program_id: x.monthly_amount.fen for x in reply.decisions}
            standard = int(next(p.value for p in reply.parameters if p.parameter == "dibao_standard"))
            results.append((time.monotonic(), reply.policy_version, standard, d[NURSING], d[LIVING]))

    def write(text: str) -> None:
        tmp = dibao.with_name(".dibao.tmp")
        tmp.write_text(text)
        tmp.replace(dibao)

    def reload_and_wait(result: str) -> None:
        service.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while metric(scrape(service), "subsidy_policy_reloads_total", result=result) < 1:
            assert time.monotonic() < deadline, f"no reload {result} counted"
            time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        write(original.replace(old_line, "{from: 2020-07-01, value: not a number, source: reference}"))
        reload_and_wait("failure")
        time.sleep(1.0)
        write(original.replace(old_line, "{from: 2020-07-01, value: 1100, source: reference}"))
        reload_and_wait("success")
        switched = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == []
    versions = Counter(r[1] for r in results)
    assert len(versions) == 2 and versions[v1] > 0, versions
    v2 = next(v for v in versions if v != v1)
    for _, version, standard, nursing, living in results:
        # One version from start to end: the standard read and both amounts agree with the version named.
        assert standard == (1080 if version == v1 else 1100)
        assert (nursing, living) == expect[standard]
    assert all(r[1] == v2 for r in results if r[0] > switched + 0.2)
    assert "policy reload failed; the old version keeps serving" in service.log_text()
    assert service.stop() == 0


# --- the soak, short -------------------------------------------------------------------------------


def test_short_soak_with_redis_kills_reloads_and_sigterm():
    out = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", "25", "--procs", "2", "--threads", "4", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and summary["passed"], (summary.get("problems"), out.stderr[-3000:])
    outcomes = summary["outcomes"]
    assert outcomes.get("ok_evaluate", 0) + outcomes.get("ok_evaluate_cached", 0) > 500
    assert summary["unexpected"] == {}
    assert set(summary["replies_by_policy_version"]) == {"v1", "v2"}
    assert summary["service_exit_code"] == 0
    assert summary["id_numbers_in_logs_or_metrics"] == 0
