"""The policy test cases kept beside the policies (policies/tests/*.yaml), run through the real
validation and engine (policycheck.cases); a check that the cases assert every rule both ways; and
the take-the-higher tie, which the shipped figures never produce, on edited copies of the policies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from support import HANGZHOU_NURSING_CASE, POLICIES, request

from policycheck.cases import check, lacking, load_cases
from service.api import eligibility_pb2 as pb
from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder

CASES = load_cases(POLICIES / "tests")


@pytest.fixture(scope="module")
def service():
    return DecisionService(PolicyHolder(POLICIES), LocalCache(ttl=1), b"k")


def test_there_are_enough_cases():
    assert len(CASES) >= 120


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(service, case):
    problems = check(service, case)
    assert not problems, "\n".join(problems)


def test_every_rule_is_exercised(service):
    """Counted from what the cases assert, not from replies, so it holds alone and in any order: each
    rule is asserted passed in some case, and each condition, route, exclusion and referral also
    failed (a referral asserted absent); each interaction asserted applied and not applied."""
    policy = service.holder.engine.policy
    assert lacking([], policy), "with no cases every rule must count as never asserted"
    gaps = lacking(CASES, policy)
    assert not gaps, "\n".join(gaps)


# The tie: Hangzhou (330102) on 2020-08-01, a dibao elder with severe loss of capacity (elderly
# subsidy 400) who is also grade 1, fully dependent (nursing 50% of 1,080 = 540). The copy raises the
# elderly amount to 540, so both programs come to 540.
OLD_AND_DISABLED = dict(
    HANGZHOU_NURSING_CASE,
    birth_date="1940-01-01",
    capacity_assessment={"level": "severe_loss", "assessed_on": "2020-06-01"},
)


def _edited_copy(tmp: Path, *, reverse_take_higher: bool = False) -> Path:
    root = tmp / "policies"
    shutil.copytree(POLICIES, root)
    path = root / "parameters" / "elderly" / "elderly_amount_severe.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for rows in data["values"].values():
        for row in rows:
            row["value"] = 540
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    if reverse_take_higher:
        path = root / "interactions.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for combo in data["combinations"]:
            if combo["mode"] == "take_higher":
                combo["programs"].reverse()
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return root


def _tie(root: Path) -> dict[str, pb.ProgramDecision]:
    service = DecisionService(PolicyHolder(root), LocalCache(ttl=0), b"k")
    try:
        reply = service.evaluate(request("2020-08-01", None, **OLD_AND_DISABLED))
    finally:
        service.holder.engine.close()
    return {d.program_id: d for d in reply.decisions}


@pytest.mark.parametrize(
    ("reverse", "kept", "dropped"),
    [
        (False, "elderly_care_subsidy", "disability_nursing_subsidy"),
        (True, "disability_nursing_subsidy", "elderly_care_subsidy"),
    ],
    ids=["as shipped: elderly listed first", "order reversed: nursing listed first"],
)
def test_a_tie_keeps_the_first_listed(tmp_path, reverse, kept, dropped):
    decisions = _tie(_edited_copy(tmp_path, reverse_take_higher=reverse))
    for pid in (kept, dropped):  # a real tie: both came to 540 before the interaction
        assert decisions[pid].outcome == pb.OUTCOME_ELIGIBLE
        assert decisions[pid].amount_before_interactions.fen == 54000
    assert decisions[kept].monthly_amount.fen == 54000
    assert decisions[dropped].monthly_amount.fen == 0
    (take_higher,) = [
        i for i in decisions[kept].interactions if i.rule_id == "interaction.elderly_care_or_nursing_higher"
    ]
    assert take_higher.kept_program == kept
