"""Regions: the dated list of Zhejiang's county-level divisions, dated aliases, refusals of unknown
codes (Evaluate, EvaluateBatch items, ListPrograms), and the region_fallback caveat, over real gRPC."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from typing import cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support import HANGZHOU_NURSING_CASE, POLICIES, request

from service.api import eligibility_pb2 as pb
from service.policy.loader import load_policies
from service.policy.yamlio import PolicyFileError

DAY = dt.timedelta(days=1)
# (old code, new code, first day of the new code, renamed: the same area under a new code)
CHANGES = [
    ("330621", "330603", dt.date(2013, 10, 18), True),
    ("330682", "330604", dt.date(2013, 10, 18), True),
    ("330183", "330111", dt.date(2014, 12, 13), True),
    ("330322", "330305", dt.date(2015, 9, 1), True),
    ("330204", "330212", dt.date(2016, 9, 14), False),
    ("330283", "330213", dt.date(2016, 9, 14), True),
    ("331021", "331083", dt.date(2017, 4, 11), True),
    ("330185", "330112", dt.date(2017, 9, 15), True),
]
# County-level divisions per city at the end of 2015 and of 2020 (civil affairs ministry lists).
PER_CITY_2015 = {"3301": 13, "3302": 11, "3303": 11, "3304": 7, "3305": 5, "3306": 6, "3307": 9, "3308": 6,
                 "3309": 4, "3310": 9, "3311": 9}  # fmt: skip
PER_CITY_2020 = {**PER_CITY_2015, "3302": 10, "3303": 12}
TONGLU = {**HANGZHOU_NURSING_CASE, "region_code": "330122"}


@pytest.fixture(scope="module")
def regions():
    return load_policies(POLICIES).regions


def field_violations(err: grpc.RpcError) -> dict[str, str]:
    out = {}
    # A failed call's RpcError is also its grpc.Call (which has the trailing metadata), not typed so.
    for detail in rpc_status.from_call(cast(grpc.Call, err)).details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def in_use(regions, on: dt.date) -> set[str]:
    """The codes that resolve to themselves on a date."""
    return {c for c in regions.divisions if regions.resolve(c, on).code == c}


@pytest.mark.parametrize(("old", "new", "since", "renamed"), CHANGES, ids=[f"{o}->{n}" for o, n, _, _ in CHANGES])
def test_every_alias_before_and_after_its_date(regions, old, new, since, renamed):
    assert regions.resolve(old, since - DAY).code == old
    assert regions.resolve(old, since).code == new
    assert regions.resolve(new, since).code == new
    # Before a rename the new code stands for the same area under its old code; a merged-into
    # division existed before and stays itself.
    assert regions.resolve(new, since - DAY).code == (old if renamed else new)


def test_the_alias_table_is_exactly_the_known_changes(regions):
    assert {(o, a.to, a.since, a.kind == "renamed") for o, a in regions.aliases.items()} == set(CHANGES)


def test_longgang_is_cangnan_before_it_was_created(regions):
    assert regions.resolve("330383", dt.date(2019, 9, 24)).code == "330327"
    assert regions.resolve("330383", dt.date(2019, 9, 25)).name.en == "Longgang City"
    assert regions.resolve("330327", dt.date(2020, 1, 1)).code == "330327"  # Cangnan goes on


@pytest.mark.parametrize(
    ("on", "per_city"), [(dt.date(2015, 12, 31), PER_CITY_2015), (dt.date(2020, 12, 31), PER_CITY_2020)]
)
def test_the_list_has_every_county_of_each_year(regions, on, per_city):
    codes = in_use(regions, on)
    assert Counter(c[:4] for c in codes) == per_city
    assert len(codes) == sum(per_city.values()) == 90


def test_every_division_has_both_names_and_a_listed_city(regions):
    for code, division in regions.divisions.items():
        assert division.name.zh and division.name.en and code[:4] + "00" in regions.cities


def test_tonglu_on_2017_06_01_is_not_paid_from_the_urban_standard(stub):
    reply = stub.Evaluate(request("2017-06-01", **TONGLU))
    nursing = next(d for d in reply.decisions if d.program_id == "disability_nursing_subsidy")
    assert nursing.monthly_amount.fen == 35000  # 50% of the province's 700, not of Hangzhou's 819
    dibao = next(p for p in reply.parameters if p.parameter == "dibao_standard")
    assert (dibao.value, dibao.region_code) == ("700", "330000")
    assert (reply.region.code, reply.region.name_en, reply.region.name_zh) == ("330122", "Tonglu County", "桐庐县")
    [caveat] = [c for c in reply.caveats if c.kind == "region_fallback"]
    assert caveat.subject == "dibao_standard"
    assert "Tonglu County (330122)" in caveat.text_en and "Zhejiang (330000)" in caveat.text_en
    assert "700" in caveat.text_en and "2017-06-01" in caveat.text_en
    assert "桐庐县（330122）" in caveat.text_zh and "浙江省（330000）" in caveat.text_zh


def test_an_urban_district_has_no_fallback_caveat(stub):
    reply = stub.Evaluate(request("2017-06-01", **HANGZHOU_NURSING_CASE))
    assert not [c for c in reply.caveats if c.kind == "region_fallback"]
    dibao = next(p for p in reply.parameters if p.parameter == "dibao_standard")
    assert (dibao.value, dibao.region_code) == ("819", "330102")


def test_lin_an_city_on_2016_08_01(stub):
    reply = stub.Evaluate(request("2016-08-01", **{**HANGZHOU_NURSING_CASE, "region_code": "330185"}))
    assert (reply.region.code, reply.region.name_zh, reply.region.name_en) == ("330185", "临安市", "Lin'an City")
    assert reply.region.level == "county"


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("330199", "not a county-level division of Hangzhou (330100)"),
        ("330101", "not a county-level division of Hangzhou (330100)"),
        ("339901", "no such city"),
        ("000000", "not a province"),
        ("990101", "not a province"),
        ("３３０１０２", "six ASCII digits"),
        ("33010２", "six ASCII digits"),
        ("330102\n", "six ASCII digits"),
    ],
)
def test_unknown_codes_are_refused_naming_the_field(stub, code, says):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "region_code": code}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(err.value)
    assert set(violations) == {"person.region_code"} and says in violations["person.region_code"]


def test_an_unknown_code_in_a_batch_is_that_item_s_error(stub):
    good = request("2020-08-01", **HANGZHOU_NURSING_CASE)
    bad = request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "region_code": "330199"})
    replies = list(
        stub.EvaluateBatch(
            iter([pb.EvaluateBatchRequest(ref=str(i), request=r) for i, r in enumerate([good, bad, good])])
        )
    )
    assert [r.WhichOneof("result") for r in replies] == ["response", "error", "response"]
    assert replies[1].error.code == "INVALID_ARGUMENT"
    assert [f.field for f in replies[1].error.field_errors] == ["person.region_code"]
    assert "330199" in replies[1].error.field_errors[0].description


@pytest.mark.parametrize("code", ["330199", "３３０１０２", "000000"])
def test_list_programs_refuses_an_unknown_region_code(stub, code):
    with pytest.raises(grpc.RpcError) as err:
        stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01", region_code=code))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err.value)) == {"region_code"}


def test_list_programs_resolves_an_old_code_on_its_date(stub):
    params = {
        p.parameter: p
        for p in stub.ListPrograms(pb.ListProgramsRequest(as_of="2020-08-01", region_code="330185")).parameters
    }
    assert (params["dibao_standard"].value, params["dibao_standard"].region_code) == ("918", "330112")


def test_outside_zhejiang_is_named_by_its_province(stub):
    reply = stub.Evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "region_code": "110105"}))
    assert (reply.region.level, reply.region.in_zhejiang, reply.region.name_en) == (
        "outside",
        False,
        "Beijing (outside Zhejiang)",
    )
    assert all(d.outcome == pb.OUTCOME_INELIGIBLE for d in reply.decisions)


@pytest.fixture
def policy_copy(tmp_path):
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


@pytest.mark.parametrize(
    ("path", "old", "new", "expected"),
    [
        ("regions.yaml", '{to: "330112", since', '{to: "330119", since', "joins two different listed counties"),
        (
            "regions.yaml",
            '"330204":\n    {to: "330212"',
            '"330204":\n    {to: "330112"',
            "330112 is not in use on 2016-09-14",
        ),
        ("regions.yaml", '    part_of_before: "330327"\n', "", "`from` and `part_of_before` go together"),
        ("regions.yaml", '  "330122": {zh: 桐庐县', '  "330172": {zh: 桐庐县', "unknown region 330122"),
        ("regions.yaml", '"11": {zh: 北京市', '"33": {zh: 北京市', "'33' is not another province's prefix"),
        (
            "regions.yaml",
            'news report)"}\n',
            'news report)"}\n'
            '  "330112": {to: "330185", since: 2018-01-01, kind: renamed, confidence: inferred, basis: x}\n',
            "the code changes form a cycle",
        ),
        (
            "parameters/common/dibao_standard.yaml",
            '"330127": *hangzhou',
            '"330128": *hangzhou',
            "unknown region 330128",
        ),
    ],
)
def test_bad_region_data_is_refused_at_load(policy_copy, path, old, new, expected):
    target = policy_copy / path
    text = target.read_text()
    assert old in text, f"{old!r} not in {path}"
    target.write_text(text.replace(old, new, 1))
    with pytest.raises(PolicyFileError, match=expected):
        load_policies(policy_copy)
