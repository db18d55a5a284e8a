"""Policy fidelity over real gRPC and on edited copies of the policies: assumptions, conditional
referrals, confidence and caveats, program periods, and the judgements the brief leaves open made
data (each switched both ways)."""

from __future__ import annotations

import shutil
from typing import Any

import grpc
import pytest
from support import HANGZHOU_NURSING_CASE, POLICIES, request

from service.api import eligibility_pb2 as pb
from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder
from service.policy.loader import load_policies
from service.policy.yamlio import PolicyFileError

CONFIDENCES = {"confirmed", "secondary", "inferred", "reference"}
# Person fields for request(**...): values of several types, so typed as request's **person_data is.
GRADE_1_ADULT: dict[str, Any] = dict(
    birth_date="1980-01-01",
    region_code="330102",
    household_status="ordinary",
    household_income_per_head_fen=500000,
    own_income_fen=500000,
    disability={"grade": 1, "category": "physical"},
    long_term_care_need=True,
    self_care="fully_dependent",
)


def decisions(reply: pb.EvaluateResponse) -> dict[str, pb.ProgramDecision]:
    return {d.program_id: d for d in reply.decisions}


def test_grade_1_adult_without_family_support_stated_gets_a_conditional_referral_and_assumptions(stub):
    reply = stub.Evaluate(request("2020-08-01", **GRADE_1_ADULT))
    (referral,) = reply.referrals
    assert referral.rule_id == "referral.dibao_as_single_person_household"
    assert referral.conditional
    assert [(c.fact, c.rule_id) for c in referral.conditions] == [
        ("depends_on_family_support", "referral.dibao_as_single_person_household")
    ]
    assert referral.conditions[0].label_zh == "依靠家庭供养" and referral.conditions[0].label_en
    assert referral.text_en.startswith("If confirmed (depends on family support)")
    assert referral.text_zh.startswith("如经核实（依靠家庭供养）")
    assert "规划" in referral.citation_zh
    nursing = decisions(reply)["disability_nursing_subsidy"]
    assert nursing.outcome == pb.OUTCOME_ELIGIBLE and nursing.monthly_amount.fen == 54000
    assumed = {(a.fact, a.value, a.rule_id) for a in nursing.assumptions}
    assert assumed == {
        ("work_injury_nursing_allowance", "false", "nursing.excluded_work_injury_nursing"),
        ("in_institutional_care", "false", "nursing.institutional_care_multiplier"),
    }
    assert all(a.label_zh and a.label_en for a in nursing.assumptions)

    stated = stub.Evaluate(request("2020-08-01", **GRADE_1_ADULT, depends_on_family_support=True))
    (referral,) = stated.referrals
    assert not referral.conditional and not referral.conditions
    assert referral.text_en.startswith("An adult with a severe disability")
    assert not stub.Evaluate(request("2020-08-01", **GRADE_1_ADULT, depends_on_family_support=False)).referrals


def test_caveats_for_a_value_carried_forward_and_for_reference_values(stub):
    reply = stub.Evaluate(
        request("2026-11-30", birth_date="2015-01-01", region_code="330106", child_status="institutional_orphan")
    )
    assert decisions(reply)["child_basic_living_allowance"].monthly_amount.fen == 210000
    by_kind = {(c.kind, c.subject): c for c in reply.caveats}
    carried = by_kind[("carried_forward", "child_standard_institution")]
    assert "2,100" in carried.text_en and "since 2021-01-01" in carried.text_en and "2026-11-30" in carried.text_en
    assert "2021-01-01" in carried.text_zh and "沿用" in carried.text_zh
    reference = by_kind[("unconfirmed_value", "child_standard_institution")]
    assert "reference value" in reference.text_en and "参考值" in reference.text_zh
    # Within the years its source states, the same value is not carried forward.
    earlier = stub.Evaluate(
        request("2020-08-01", birth_date="2015-01-01", region_code="330106", child_status="institutional_orphan")
    )
    assert {c.kind for c in earlier.caveats if c.subject == "child_standard_institution"} == {"unconfirmed_value"}


@pytest.mark.parametrize(
    "child_status, fen, parameter",
    [
        ("institutional_orphan", 137800, "child_standard_institution"),
        ("community_orphan", 84800, "child_standard_community"),
    ],
)
def test_childrens_allowance_in_2015_at_the_plans_figures(stub, child_status, fen, parameter):
    reply = stub.Evaluate(
        request("2015-06-01", birth_date="2010-01-01", region_code="330302", child_status=child_status)
    )
    assert [d.program_id for d in reply.decisions] == ["child_basic_living_allowance"]
    assert reply.decisions[0].outcome == pb.OUTCOME_ELIGIBLE and reply.decisions[0].monthly_amount.fen == fen
    value = next(p for p in reply.parameters if p.parameter == parameter)
    assert (value.effective_from, value.confidence) == ("2015-01-01", "confirmed")
    assert "plan" in value.source.lower()
    note = next(c for c in reply.caveats if (c.kind, c.subject) == ("value_note", parameter))
    assert "provincial average" in note.text_en and "全省平均" in note.text_zh


def test_disability_subsidies_decided_in_the_first_half_of_2016(stub):
    reply = stub.Evaluate(request("2016-03-01", **HANGZHOU_NURSING_CASE))
    d = decisions(reply)
    assert d["disability_living_allowance"].monthly_amount.fen == 22300  # 30% of 744 = 223.2
    assert d["disability_nursing_subsidy"].monthly_amount.fen == 37200  # 50% of 744
    dibao = next(p for p in reply.parameters if p.parameter == "dibao_standard")
    assert (dibao.value, dibao.effective_from, dibao.confidence) == ("744", "2015-11-01", "secondary")
    share = next(p for p in reply.parameters if p.parameter == "living_allowance_share")
    assert share.confidence == "inferred" and share.source != share.confidence
    notes = {c.subject for c in reply.caveats if c.kind == "value_note"}
    assert {"living_allowance_share", "low_income_multiplier"} <= notes


def test_a_program_asked_for_outside_its_period_is_out_of_range(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request("2015-12-31", ["disability_nursing_subsidy"], **HANGZHOU_NURSING_CASE))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "disability_nursing_subsidy" in (err.value.details() or "")
    listed = stub.ListPrograms(pb.ListProgramsRequest(as_of="2015-06-01", region_code="330302"))
    assert [p.program_id for p in listed.programs] == ["child_basic_living_allowance"]


def test_citations_in_both_languages_with_confidence(stub):
    reply = stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
    reasons = [r for d in reply.decisions for r in d.reasons]
    assert reasons and all(r.citation and r.citation_zh and r.confidence in CONFIDENCES for r in reasons)
    assert not [r.citation for r in reasons if "art." in r.citation]  # no paragraph the brief does not give
    excluded = next(r for r in reasons if r.rule_id == "nursing.excluded_destitute_support")
    assert "国发〔2015〕52号" in excluded.citation_zh and "Guofa [2015] No. 52" in excluded.citation
    assert excluded.confidence == "confirmed"
    certificate = next(r for r in reasons if r.rule_id == "living.holds_disability_certificate")
    assert "残疾人证" in certificate.text_zh and "第二代" not in certificate.text_zh
    assert "disability certificate" in certificate.text_en
    both = next(i for i in decisions(reply)["disability_nursing_subsidy"].interactions)
    assert both.citation_zh.endswith("（国发〔2015〕52号）")
    for p in reply.parameters:
        assert p.confidence in CONFIDENCES and p.source not in CONFIDENCES


# Edited copies of the policies --------------------------------------------------------------------


@pytest.fixture
def policy_copy(tmp_path):
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def evaluate(policies, as_of: str, programs: list[str] | None = None, **person) -> pb.EvaluateResponse:
    service = DecisionService(PolicyHolder(policies), LocalCache(ttl=60), b"k")
    return service.evaluate(request(as_of, programs, **person))


DIBAO_EDGE_ELDER = dict(
    birth_date="1945-02-14",
    region_code="330302",
    household_status="dibao_edge",
    capacity_assessment={"level": "severe_loss", "assessed_on": "2020-05-01"},
)


def test_a_county_with_the_dibao_edge_extension_off_makes_a_dibao_edge_elder_ineligible(policy_copy):
    switch = policy_copy / "parameters/elderly/elderly_dibao_edge_extension.yaml"
    edit(
        switch,
        "    - {from: 2016-01-01, value: 1, source: reference}\n",
        "    - {from: 2016-01-01, value: 1, source: reference}\n"
        '  "330302":\n    - {from: 2019-01-01, value: 0, source: reference}\n',
    )
    on = decisions(
        evaluate(
            policy_copy,
            "2018-12-31",
            ["elderly_care_subsidy"],
            **DIBAO_EDGE_ELDER | {"capacity_assessment": {"level": "severe_loss", "assessed_on": "2018-10-01"}},
        )
    )
    assert on["elderly_care_subsidy"].outcome == pb.OUTCOME_ELIGIBLE
    assert on["elderly_care_subsidy"].monthly_amount.fen == 20000
    reply = evaluate(policy_copy, "2020-08-01", ["elderly_care_subsidy"], **DIBAO_EDGE_ELDER)
    off = decisions(reply)["elderly_care_subsidy"]
    assert off.outcome == pb.OUTCOME_INELIGIBLE and off.monthly_amount.fen == 0
    failed = [r.rule_id for r in off.reasons if r.result == pb.RULE_RESULT_FAILED]
    assert "elderly.dibao_or_dibao_edge_household" in failed
    switch_value = next(p for p in reply.parameters if p.parameter == "elderly_dibao_edge_extension")
    assert (switch_value.value, switch_value.region_code) == ("0", "330302")
    # Another county keeps the province's value; a dibao elder in the switched-off county is paid.
    other = evaluate(
        policy_copy, "2020-08-01", ["elderly_care_subsidy"], **DIBAO_EDGE_ELDER | {"region_code": "330102"}
    )
    assert decisions(other)["elderly_care_subsidy"].monthly_amount.fen == 20000
    dibao = evaluate(
        policy_copy, "2020-08-01", ["elderly_care_subsidy"], **DIBAO_EDGE_ELDER | {"household_status": "dibao"}
    )
    assert decisions(dibao)["elderly_care_subsidy"].monthly_amount.fen == 40000


@pytest.mark.parametrize("covers_multiple", [True, False])
def test_the_grade_3_4_branches_read_multiple_from_the_category_group(policy_copy, covers_multiple):
    if not covers_multiple:  # the literal reading: intellectual and mental only
        edit(
            policy_copy / "facts.yaml",
            "intellectual_or_mental: [intellectual, mental, multiple]",
            "intellectual_or_mental: [intellectual, mental]",
        )
    expected = pb.OUTCOME_ELIGIBLE if covers_multiple else pb.OUTCOME_INELIGIBLE
    minor = evaluate(
        policy_copy,
        "2020-08-01",
        ["child_basic_living_allowance"],
        birth_date="2012-04-20",
        region_code="330302",
        household_status="dibao",
        disability={"grade": 3, "category": "multiple"},
    )
    assert decisions(minor)["child_basic_living_allowance"].outcome == expected
    adult = evaluate(
        policy_copy,
        "2020-08-01",
        ["disability_nursing_subsidy"],
        **HANGZHOU_NURSING_CASE | {"disability": {"grade": 3, "category": "multiple"}},
    )
    assert decisions(adult)["disability_nursing_subsidy"].outcome == expected
    referral = evaluate(
        policy_copy,
        "2020-08-01",
        ["disability_living_allowance"],
        birth_date="1990-03-03",
        region_code="330102",
        household_status="dibao_edge",
        disability={"grade": 4, "category": "multiple"},
        depends_on_family_support=True,
    )
    assert bool(referral.referrals) is covers_multiple
    # Intellectual and mental are covered either way.
    mental = evaluate(
        policy_copy,
        "2020-08-01",
        ["disability_nursing_subsidy"],
        **HANGZHOU_NURSING_CASE | {"disability": {"grade": 3, "category": "mental"}},
    )
    assert decisions(mental)["disability_nursing_subsidy"].outcome == pb.OUTCOME_ELIGIBLE


def test_confidence_is_derived_from_the_source_unless_stated(policy_copy):
    def multiplier(reply: pb.EvaluateResponse) -> tuple[str, set[str]]:
        value = next(p for p in reply.parameters if p.parameter == "low_income_multiplier")
        texts = {c.text_en for c in reply.caveats if c.subject == "low_income_multiplier"}
        return value.confidence, texts

    person = HANGZHOU_NURSING_CASE | {"household_status": "ordinary", "household_income_per_head_fen": 100000}
    confidence, texts = multiplier(evaluate(policy_copy, "2020-08-01", ["disability_living_allowance"], **person))
    assert confidence == "inferred" and any("is inferred" in t for t in texts)
    path = policy_copy / "parameters/common/low_income_multiplier.yaml"
    edit(path, "      confidence: inferred\n", "")  # source zj and no confidence: secondary
    confidence, texts = multiplier(evaluate(policy_copy, "2020-08-01", ["disability_living_allowance"], **person))
    assert confidence == "secondary" and any("secondary source (zj)" in t for t in texts)
    edit(path, "      source: zj\n", "      source: zj\n      confidence: confirmed\n")
    confidence, texts = multiplier(evaluate(policy_copy, "2020-08-01", ["disability_living_allowance"], **person))
    assert confidence == "confirmed" and not any("to be confirmed" in t for t in texts)


def test_a_programs_period_is_data(policy_copy):
    edit(
        policy_copy / "programs/child_basic_living_allowance.yaml",
        "period: {effective_from: 2015-01-01",
        "period: {effective_from: 2016-01-01",
    )
    with pytest.raises(Exception, match="outside the period of child_basic_living_allowance"):
        evaluate(
            policy_copy,
            "2015-06-01",
            ["child_basic_living_allowance"],
            birth_date="2010-01-01",
            region_code="330302",
            child_status="community_orphan",
        )


@pytest.mark.parametrize(
    "path, old, new, expected",
    [
        (
            "programs/disability_nursing_subsidy.yaml",
            "    citation_zh: ",
            "    citation_zhx: ",
            r"disability_nursing_subsidy.yaml:\d+: conditions.0.citation_zh: Field required",
        ),
        (
            "programs/disability_nursing_subsidy.yaml",
            "confidence: secondary",
            "confidence: likely",
            r"disability_nursing_subsidy.yaml:\d+: conditions.0.confidence",
        ),
        (
            "programs/disability_nursing_subsidy.yaml",
            "in: {group: intellectual_or_mental}",
            "in: {group: mentall}",
            "has no group 'mentall'",
        ),
        (
            "facts.yaml",
            "[intellectual, mental, multiple]",
            "[intellectual, mental, several]",
            "group intellectual_or_mental has values the fact never takes: \\['several'\\]",
        ),
        (
            "parameters/children/child_standard_community.yaml",
            "- from: 2015-01-01",
            "- from: 2015-02-01",
            "no value in any region on 2015-01-01, the start of program child_basic_living_allowance",
        ),
        (
            "programs/child_basic_living_allowance.yaml",
            "period: {effective_from: 2015-01-01",
            "period: {effective_from: 2014-01-01",
            "child_basic_living_allowance: period 2014-01-01",
        ),
    ],
)
def test_bad_semantics_are_refused_at_load(policy_copy, path, old, new, expected):
    edit(policy_copy / path, old, new)
    with pytest.raises(PolicyFileError, match=expected):
        load_policies(policy_copy)
