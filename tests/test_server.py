"""The service over real gRPC: a real server process on a free port."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status
from support import HANGZHOU_NURSING_CASE, make_id, request

from service.api import eligibility_pb2 as pb


def decisions(reply):
    return {d.program_id: d for d in reply.decisions}


def field_violations(err: grpc.RpcError) -> dict[str, str]:
    assert isinstance(err, grpc.Call)  # an RpcError from a call is also the call
    status = rpc_status.from_call(err)
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def test_hangzhou_nursing_and_living_allowance_on_2020_08_01(stub):
    reply = stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
    d = decisions(reply)
    nursing, living = d["disability_nursing_subsidy"], d["disability_living_allowance"]
    assert nursing.outcome == pb.OUTCOME_ELIGIBLE and nursing.monthly_amount.fen == 54000
    assert living.outcome == pb.OUTCOME_ELIGIBLE and living.monthly_amount.fen == 32400
    passed = {r.rule_id: r for r in nursing.reasons if r.result == pb.RULE_RESULT_PASSED}
    assert "nursing.amount_fully_dependent" in passed
    assert "Zhejiang" in passed["nursing.amount_fully_dependent"].citation
    assert "1,080" in passed["nursing.amount_fully_dependent"].text_en or any(
        "1,080" in p.text_en for p in living.reasons
    )
    # The receipt: policy version, date, region as resolved, parameters with dates and sources.
    assert re.fullmatch(r"[0-9a-f]{16}", reply.policy_version)
    assert reply.evaluation_date == "2020-08-01"
    assert reply.region.code == "330102" and reply.region.level == "county"
    dibao = next(p for p in reply.parameters if p.parameter == "dibao_standard")
    assert (dibao.value, dibao.region_code, dibao.effective_from) == ("1080", "330102", "2020-07-01")
    assert reply.total_monthly_amount.fen == 54000 + 32400


def test_the_day_before_the_new_standard(stub):
    d = decisions(stub.Evaluate(request("2020-06-30", **HANGZHOU_NURSING_CASE)))
    assert d["disability_nursing_subsidy"].monthly_amount.fen == 50900
    assert d["disability_living_allowance"].monthly_amount.fen == 30500


def test_income_reason_is_filled_with_numbers(stub):
    reply = stub.Evaluate(
        request(
            "2020-08-01",
            **{**HANGZHOU_NURSING_CASE, "household_status": "ordinary", "household_income_per_head_fen": 150000},
        )
    )
    living = decisions(reply)["disability_living_allowance"]
    text = next(r.text_en for r in living.reasons if r.rule_id == "living.low_income_household")
    assert "household income per head 1,500 < dibao_standard 1,080 × low_income_multiplier 1.5 = 1,620" in text


def test_every_bad_field_at_once(stub):
    bad = pb.EvaluateRequest(
        as_of="2020-02-30",
        programs=["nope"],
        person=pb.Person(
            id_number="340524198001010013",
            birth_date="1980-01-01",
            region_code="33010X",
            disability=pb.Disability(grade=9),
        ),
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(err.value)
    assert set(violations) == {
        "as_of",
        "programs[0]",
        "person.id_number",
        "person.region_code",
        "person.disability.grade",
    }
    assert "check character" in violations["person.id_number"]


def test_old_15_digit_id_is_refused_with_a_message(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(
            pb.EvaluateRequest(
                as_of="2020-08-01",
                person=pb.Person(id_number="340524800101001", birth_date="1980-01-01", region_code="330102"),
            )
        )
    assert "15-digit" in field_violations(err.value)["person.id_number"]


def test_id_number_digits_are_ascii(stub):
    good = make_id("1970-05-05", seq=3)
    wide = good.translate(str.maketrans("0123456789", "０１２３４５６７８９"))  # full-width: int() reads them
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": wide}))
    assert "person.id_number" in field_violations(err.value)


def test_id_and_birth_date_must_agree(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "id_number": "34052419800101001X"}))
    assert "does not agree" in field_violations(err.value)["person.birth_date"]


def test_date_outside_the_policy_period(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request("2014-12-31", **HANGZHOU_NURSING_CASE))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "as_of" in field_violations(err.value)


def test_default_date_is_today(stub):
    """Today where the policies apply (policy.yaml: Asia/Shanghai), not the machine's UTC date."""
    shanghai = ZoneInfo("Asia/Shanghai")
    before = dt.datetime.now(shanghai).date()
    reply = stub.Evaluate(request("", **HANGZHOU_NURSING_CASE))
    after = dt.datetime.now(shanghai).date()
    assert reply.evaluation_date in {before.isoformat(), after.isoformat()}  # both: a call across midnight


def test_list_programs(stub):
    reply = stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01", region_code="330122"))
    assert {p.program_id for p in reply.programs} == {
        "elderly_care_subsidy",
        "child_basic_living_allowance",
        "disability_living_allowance",
        "disability_nursing_subsidy",
    }
    params = {p.parameter: p for p in reply.parameters}
    assert params["dibao_standard"].value == "864" and params["dibao_standard"].region_code == "330122"


def test_evaluate_batch_answers_in_order_and_reports_bad_items(stub):
    good = request("2020-08-01", **HANGZHOU_NURSING_CASE)
    bad = pb.EvaluateRequest(as_of="2020-08-01", person=pb.Person(id_number="340524198001010013"))
    items = [pb.EvaluateBatchRequest(ref=f"r{i}", request=bad if i % 5 == 3 else good) for i in range(50)]
    replies = list(stub.EvaluateBatch(iter(items)))
    assert [r.index for r in replies] == list(range(50))
    assert [r.ref for r in replies] == [f"r{i}" for i in range(50)]
    for i, r in enumerate(replies):
        if i % 5 == 3:
            assert r.WhichOneof("result") == "error" and r.error.code == "INVALID_ARGUMENT"
            assert "person.id_number" in {f.field for f in r.error.field_errors}
        else:
            assert decisions(r.response)["disability_nursing_subsidy"].monthly_amount.fen == 54000


def test_health_service(server):
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "subsidy.v1.EligibilityService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        )


def test_reflection_client_calls_evaluate_without_our_protos(server):
    """A client that knows nothing but the service name, as buf curl or grpcurl would."""
    channel = grpc.insecure_channel(server.address)
    database = ProtoReflectionDescriptorDatabase(channel)
    assert "subsidy.v1.EligibilityService" in database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("subsidy.v1.EligibilityService").FindMethodByName("Evaluate")
    Request = message_factory.GetMessageClass(method.input_type)
    Response = message_factory.GetMessageClass(method.output_type)
    body = {
        "asOf": "2020-08-01",
        "person": {
            "idNumber": make_id("1970-05-05"),
            "birthDate": "1970-05-05",
            "regionCode": "330102",
            "householdStatus": "HOUSEHOLD_STATUS_DIBAO",
            "disability": {"grade": 1, "category": "DISABILITY_CATEGORY_PHYSICAL"},
            "longTermCareNeed": True,
            "selfCare": "SELF_CARE_FULLY_DEPENDENT",
        },
    }
    call: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        "/subsidy.v1.EligibilityService/Evaluate",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=Response.FromString,
    )
    reply = json_format.MessageToDict(call(json_format.ParseDict(body, Request())))
    amounts = {d["programId"]: d.get("monthlyAmount", {}).get("fen") for d in reply["decisions"]}
    assert amounts["disability_nursing_subsidy"] == "54000"


def test_logs_are_json_lines_without_id_numbers(server, stub):
    ident = make_id("1970-05-05")
    stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
    with pytest.raises(grpc.RpcError):
        stub.Evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "region_code": "999999x"}))
    text = server.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines if line.startswith("{"))
    assert ident not in text and "19700505" not in text
