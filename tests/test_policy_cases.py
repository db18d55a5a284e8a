"""The policy test cases kept beside the policies (policies/tests/*.yaml), run through the real
validation and engine; and a check that the cases exercise every rule."""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml
from support import POLICIES, request

from service.api import eligibility_pb2 as pb
from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder
from service.errors import to_status

CASE_FILES = sorted((POLICIES / "tests").glob("*.yaml"))
CASES = [(path.stem, case) for path in CASE_FILES for case in yaml.safe_load(path.read_text())]
RESULTS = {pb.RULE_RESULT_PASSED: "passed", pb.RULE_RESULT_FAILED: "failed", pb.RULE_RESULT_UNKNOWN: "unknown"}
EXERCISED: dict[str, set[str]] = defaultdict(set)


@pytest.fixture(scope="module")
def service():
    return DecisionService(PolicyHolder(POLICIES), LocalCache(ttl=1), b"k")


def test_there_are_enough_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[f"{f}:{c['name']}" for f, c in CASES])
def test_case(service, case):
    req = request(case["as_of"], case.get("programs"), **case["person"])
    expect_error = case.get("error")
    try:
        reply = service.evaluate(req)
    except Exception as exc:
        code, message, violations = to_status(exc)
        assert expect_error, f"unexpected {code.name}: {message} {violations}"
        assert code.name == expect_error["code"]
        assert sorted({f for f, _ in violations}) == sorted(expect_error.get("fields", []))
        return
    assert not expect_error, f"expected {expect_error}, got a decision"
    decisions = {d.program_id: d for d in reply.decisions}
    for program_id, want in case["expect"].items():
        d = decisions[program_id]
        got = {r.rule_id: RESULTS[r.result] for r in d.reasons}
        for rule_id, result in got.items():
            EXERCISED[rule_id].add(result)
        assert pb.Outcome.Name(d.outcome) == "OUTCOME_" + want["outcome"], program_id
        if "yuan" in want:
            assert d.monthly_amount.fen == round(want["yuan"] * 100), program_id
        if "before_yuan" in want:
            assert d.amount_before_interactions.fen == round(want["before_yuan"] * 100), program_id
        for result in ("passed", "failed", "unknown"):
            for rule_id in want.get(result, []):
                assert got[rule_id] == result, f"{program_id}: {rule_id} {got[rule_id]}, want {result}"
        if "missing" in want:
            assert sorted({m.fact for m in d.missing_facts}) == sorted(want["missing"])
        if "interactions" in want:
            assert sorted(i.rule_id for i in d.interactions) == sorted(want["interactions"])
        if "assumptions" in want:  # [fact, value, rule id] for every default the decision used
            got_assumed = sorted([a.fact, a.value, a.rule_id] for a in d.assumptions)
            assert got_assumed == sorted([str(x) for x in a] for a in want["assumptions"]), program_id
        for rule_id, confidence in want.get("confidence", {}).items():
            assert next(r.confidence for r in d.reasons if r.rule_id == rule_id) == confidence, rule_id
        for reason in d.reasons:  # every reason is explained and cited in both languages
            assert reason.text_zh and reason.text_en and reason.citation
    if "referrals" in case:  # the referrals that hold (not the conditional ones)
        assert sorted(r.rule_id for r in reply.referrals if not r.conditional) == sorted(case["referrals"])
        for rule_id in case["referrals"]:
            EXERCISED[rule_id].add("passed")
    if "conditional_referrals" in case:  # {rule id: the unstated facts it depends on}
        got_conditional = {r.rule_id: sorted(c.fact for c in r.conditions) for r in reply.referrals if r.conditional}
        assert got_conditional == {k: sorted(v) for k, v in case["conditional_referrals"].items()}
    caveats = {(c.kind, c.subject) for c in reply.caveats}
    for kind, subject in case.get("caveats", []):
        assert (kind, subject) in caveats, f"no {kind} caveat about {subject}: {sorted(caveats)}"
    for kind, subject in case.get("caveats_absent", []):
        assert (kind, subject) not in caveats, f"unexpected {kind} caveat about {subject}"
    if "programs_decided" in case:  # exactly these programs are in the reply
        assert sorted(decisions) == sorted(case["programs_decided"])
    if "region" in case:
        assert reply.region.code == case["region"]
    if "region_name" in case:
        assert (reply.region.name_zh, reply.region.name_en) == (case["region_name"]["zh"], case["region_name"]["en"])
    for kind, subjects in case.get("caveats", {}).items():  # per kind listed: exactly these subjects
        caveats = [c for c in reply.caveats if c.kind == kind]
        assert sorted(c.subject for c in caveats) == sorted(subjects), kind
        used = {p.parameter: p.region_code for p in reply.parameters}
        for caveat in caveats:
            assert caveat.text_zh and caveat.text_en
            if kind == "region_fallback":  # names the region whose value stood in
                assert f"({used[caveat.subject]})" in caveat.text_en and used[caveat.subject] in caveat.text_zh
    if "parameters" in case:
        params = {p.parameter: p for p in reply.parameters}
        for name, want in case["parameters"].items():
            assert params[name].value == str(want["value"]) and params[name].region_code == want["region"]
            for key in ("confidence", "effective_from"):
                if key in want:
                    assert getattr(params[name], key) == str(want[key]), f"{name}.{key}"


def test_every_rule_is_exercised(service):
    """Runs last in this module: each rule has passed in some case, and each condition, route and
    exclusion has also failed in some case."""
    policy = service.holder.engine.policy
    lacking = []
    for rule in policy.rules:
        seen = EXERCISED.get(rule.id, set())
        if "passed" not in seen:
            lacking.append(f"{rule.id}: never passed")
        if rule.kind in ("condition", "route", "exclusion") and "failed" not in seen:
            lacking.append(f"{rule.id}: never failed")
    print(f"\n{len(EXERCISED)} of {len(policy.rules)} rules exercised by {len(CASES)} cases")
    assert not lacking, "\n".join(lacking)
