"""Policy as data: an edit to a policy file changes the decision, with no change to Python;
bad policy files are refused with file and line; reloads are atomic."""

from __future__ import annotations

import shutil
import signal

import pytest
from support import HANGZHOU_NURSING_CASE, POLICIES, metric_value, request, start_service, wait_for_metric

from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder
from service.policy.loader import load_policies
from service.policy.yamlio import PolicyFileError


@pytest.fixture
def policy_copy(tmp_path):
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def nursing_fen(policies, as_of="2020-08-01", **overrides) -> int:
    service = DecisionService(PolicyHolder(policies), LocalCache(ttl=60), b"k")
    reply = service.evaluate(request(as_of, **{**HANGZHOU_NURSING_CASE, **overrides}))
    return next(d.monthly_amount.fen for d in reply.decisions if d.program_id == "disability_nursing_subsidy")


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_changing_a_percentage_changes_the_amount(policy_copy):
    assert nursing_fen(policy_copy) == 54000
    edit(policy_copy / "parameters/disability/nursing_share_fully_dependent.yaml", "value: 0.5", "value: 0.6")
    assert nursing_fen(policy_copy) == 64800


def test_changing_a_standard_and_its_date_changes_the_amount(policy_copy):
    edit(
        policy_copy / "parameters/common/dibao_standard.yaml",
        "{from: 2020-07-01, value: 1080, source: reference}",
        "{from: 2020-08-02, value: 1100, source: reference}",
    )
    assert nursing_fen(policy_copy, "2020-08-01") == 50900  # the 1,017 standard still in force
    assert nursing_fen(policy_copy, "2020-08-02") == 55000


def test_switching_take_the_higher_to_both(policy_copy):
    old_disabled = dict(
        birth_date="1940-01-01", capacity_assessment={"level": "severe_loss", "assessed_on": "2020-06-01"}
    )

    def elderly_fen(policies):
        service = DecisionService(PolicyHolder(policies), LocalCache(ttl=60), b"k")
        reply = service.evaluate(request("2020-08-01", **{**HANGZHOU_NURSING_CASE, **old_disabled}))
        return {d.program_id: d.monthly_amount.fen for d in reply.decisions}

    assert elderly_fen(policy_copy)["elderly_care_subsidy"] == 0
    edit(policy_copy / "interactions.yaml", "mode: take_higher", "mode: both")
    both = elderly_fen(policy_copy)
    assert both["elderly_care_subsidy"] == 40000 and both["disability_nursing_subsidy"] == 54000


def test_the_version_is_the_content_hash(policy_copy):
    before = load_policies(policy_copy).version
    assert load_policies(POLICIES).version == before
    edit(policy_copy / "parameters/disability/living_allowance_share.yaml", "value: 0.3", "value: 0.35")
    assert load_policies(policy_copy).version != before


@pytest.mark.parametrize(
    "path, old, new, expected",
    [
        (
            "programs/disability_nursing_subsidy.yaml",
            "rounding: yuan_half_up",
            "rounding: nearest_jiao",
            r"disability_nursing_subsidy.yaml:\d+: rounding",
        ),
        (
            "programs/elderly_care_subsidy.yaml",
            "{fact: age_years, ge:",
            "{fact: agee_years, ge:",
            "unknown fact 'agee_years'",
        ),
        (
            "programs/elderly_care_subsidy.yaml",
            "in: [mild_loss, moderate_loss, severe_loss]",
            "in: [mild, moderate_loss]",
            "never equals 'mild'",
        ),
        (
            "programs/child_basic_living_allowance.yaml",
            "amount: {param: child_standard_community}",
            "amount: {param: child_standard_comunity}",
            "unknown parameter 'child_standard_comunity'",
        ),
        (
            "parameters/common/dibao_standard.yaml",
            '"330000":\n    - {from: 2016-07-01',
            '"330000":\n    - {from: 2016-07-02',
            "no value in force for region 330000 on 2016-07-01",
        ),
        (
            "programs/disability_living_allowance.yaml",
            'citation: "Zhejiang implementing measures for the living allowance, known from a secondary source (zj)"\n'
            "    when: {fact: in_zhejiang",
            "when: {fact: in_zhejiang",
            r"disability_living_allowance.yaml:\d+: conditions.0.citation: Field required",
        ),
        (
            "programs/disability_nursing_subsidy.yaml",
            "- {fact: disability_grade, ge: 3}",
            "- {fact: disability_grade, ge: 3}\n                - {fact: disability_grade, lt: 2}",
            "nursing.severe_or_intellectual_mental_with_care_need .*can never hold: "
            "no disability_grade is both above 3",
        ),
        (
            "programs/disability_nursing_subsidy.yaml",
            "when: {fact: self_care, eq: fully_dependent}",
            "when: {fact: self_care, eq: fully_dependent, lt: 3}",
            r"disability_nursing_subsidy.yaml:\d+: rule nursing.amount_fully_dependent",
        ),
    ],
)
def test_bad_policy_files_are_refused_naming_file_and_line(policy_copy, path, old, new, expected):
    edit(policy_copy / path, old, new)
    with pytest.raises(PolicyFileError, match=expected):
        load_policies(policy_copy)


def test_sighup_reload_switches_version_and_a_broken_file_keeps_the_old(policy_copy, tmp_path):
    service = start_service(tmp_path, "--policies", str(policy_copy))
    try:
        stub = service.stub()
        first = stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
        edit(policy_copy / "programs/elderly_care_subsidy.yaml", "rounding: yuan_half_up", "rounding: [broken")
        service.proc.send_signal(signal.SIGHUP)
        # The reload ran and was refused: its own counter says so, however long it took.
        wait_for_metric(service, "subsidy_policy_reloads_total", 1, result="failure")
        still = stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
        assert still.policy_version == first.policy_version
        assert "policy reload failed" in service.log_text()
        assert metric_value(service, "subsidy_policy_reloads_total", result="success") == 0
        edit(policy_copy / "programs/elderly_care_subsidy.yaml", "rounding: [broken", "rounding: yuan_half_up")
        edit(policy_copy / "parameters/disability/nursing_share_fully_dependent.yaml", "value: 0.5", "value: 0.6")
        service.proc.send_signal(signal.SIGHUP)
        wait_for_metric(service, "subsidy_policy_reloads_total", 1, result="success")
        reply = stub.Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE))
        assert reply.policy_version != first.policy_version
        assert not reply.from_cache  # a new version never serves the old decision
        nursing = next(d for d in reply.decisions if d.program_id == "disability_nursing_subsidy")
        assert nursing.monthly_amount.fen == 64800
    finally:
        assert service.stop() == 0
