"""Policy test cases: load them, run one against a decision service, and say what each asserts.

A case is a person, a date and the decisions expected (see policies/tests/*.yaml). `check` returns
the differences between a case and the service's reply, so the same cases serve pytest
(tests/test_policy_cases.py) and the mutation run (policycheck.mutate).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policycheck.requests import request
from service.api import eligibility_pb2 as pb
from service.decisions import DecisionService
from service.errors import to_status
from service.policy.policyset import PolicySet

RESULTS = {pb.RULE_RESULT_PASSED: "passed", pb.RULE_RESULT_FAILED: "failed", pb.RULE_RESULT_UNKNOWN: "unknown"}
REASON_RESULTS = ("passed", "failed", "unknown")
APPLIED, NOT_APPLIED = "applied", "not applied"  # for interactions, as a case asserts them


@dataclass(frozen=True)
class Case:
    file: str  # the case file's stem
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.file}:{self.data['name']}"


def load_cases(directory: Path) -> list[Case]:
    return [
        Case(path.stem, data)
        for path in sorted(directory.glob("*.yaml"))
        for data in yaml.safe_load(path.read_text(encoding="utf-8")) or []
    ]


def check(service: DecisionService, case: Case) -> list[str]:
    """What in the reply differs from what the case expects; empty when the case passes."""
    c = case.data
    req = request(c["as_of"], c.get("programs"), **c["person"])
    want_error = c.get("error")
    try:
        reply = service.evaluate(req)
    except Exception as exc:  # every refusal maps to a status (service.errors), as the gRPC layer sends it
        code, message, violations = to_status(exc)
        if not want_error:
            return [f"unexpected {code.name}: {message} {violations}"]
        refused = []
        if code.name != want_error["code"]:
            refused.append(f"error {code.name}, want {want_error['code']}")
        fields = sorted({f for f, _ in violations})
        if fields != sorted(want_error.get("fields", [])):
            refused.append(f"error fields {fields}, want {sorted(want_error.get('fields', []))}")
        return refused
    if want_error:
        return [f"expected {want_error}, got a decision"]

    problems: list[str] = []
    decisions = {d.program_id: d for d in reply.decisions}
    if c.get("programs") and sorted(decisions) != sorted(c["programs"]):
        problems.append(f"programs returned {sorted(decisions)}, asked for {sorted(c['programs'])}")
    for program_id, want in c.get("expect", {}).items():
        d = decisions.get(program_id)
        if d is None:
            problems.append(f"{program_id}: not in the reply")
            continue
        problems += [f"{program_id}: {p}" for p in _check_program(d, want)]
    if "referrals" in c:  # the referrals that hold outright (not the conditional ones)
        got_referrals = sorted(r.rule_id for r in reply.referrals if not r.conditional)
        if got_referrals != sorted(c["referrals"]):
            problems.append(f"referrals {got_referrals}, want {sorted(c['referrals'])}")
    if "conditional_referrals" in c:  # {rule id: the unstated facts it depends on}
        got_conditional = {r.rule_id: sorted(f.fact for f in r.conditions) for r in reply.referrals if r.conditional}
        want_conditional = {k: sorted(v) for k, v in c["conditional_referrals"].items()}
        if got_conditional != want_conditional:
            problems.append(f"conditional referrals {got_conditional}, want {want_conditional}")
    if "programs_decided" in c and sorted(decisions) != sorted(c["programs_decided"]):
        problems.append(f"programs decided {sorted(decisions)}, want {sorted(c['programs_decided'])}")
    if "region" in c and reply.region.code != c["region"]:
        problems.append(f"region {reply.region.code}, want {c['region']}")
    if "region_name" in c:
        got_name = {"zh": reply.region.name_zh, "en": reply.region.name_en}
        if got_name != c["region_name"]:
            problems.append(f"region name {got_name}, want {c['region_name']}")
    problems += _check_caveats(reply, c)
    params = {p.parameter: p for p in reply.parameters}
    for name in c.get("parameters_absent", []):  # not in force (or not read) for this decision
        if name in params:
            found = params[name]
            problems.append(f"parameter {name} in the receipt ({found.value} from {found.effective_from})")
    for name, want in c.get("parameters", {}).items():
        # `region` (where the value was found) is optional: a case may pin the value alone.
        p = params.get(name)
        got = None if p is None else {"value": p.value, "region": p.region_code}
        if got is None or got["value"] != str(want["value"]) or got["region"] != want.get("region", got["region"]):
            problems.append(f"parameter {name} {got}, want {want}")
            continue
        for key in ("confidence", "effective_from"):
            if key in want and getattr(p, key) != str(want[key]):
                problems.append(f"parameter {name}.{key} {getattr(p, key)}, want {want[key]}")
    return problems


def _check_program(d: pb.ProgramDecision, want: dict[str, Any]) -> list[str]:
    problems = []
    outcome = pb.Outcome.Name(d.outcome).removeprefix("OUTCOME_")
    if outcome != want["outcome"]:
        problems.append(f"outcome {outcome}, want {want['outcome']}")
    for key, got_fen in (("yuan", d.monthly_amount.fen), ("before_yuan", d.amount_before_interactions.fen)):
        if key in want and got_fen != round(want[key] * 100):
            problems.append(f"{key} {got_fen / 100}, want {want[key]}")
    got = {r.rule_id: RESULTS[r.result] for r in d.reasons}
    for result in REASON_RESULTS:
        for rule_id in want.get(result, []):
            if got.get(rule_id) != result:
                problems.append(f"{rule_id} {got.get(rule_id)}, want {result}")
    if "missing" in want and sorted({m.fact for m in d.missing_facts}) != sorted(want["missing"]):
        problems.append(f"missing {sorted({m.fact for m in d.missing_facts})}, want {sorted(want['missing'])}")
    if "interactions" in want and sorted(i.rule_id for i in d.interactions) != sorted(want["interactions"]):
        problems.append(
            f"interactions {sorted(i.rule_id for i in d.interactions)}, want {sorted(want['interactions'])}"
        )
    if "assumptions" in want:  # [fact, value, rule id] for every default the decision used
        got_assumed = sorted([a.fact, a.value, a.rule_id] for a in d.assumptions)
        want_assumed = sorted([str(x) for x in a] for a in want["assumptions"])
        if got_assumed != want_assumed:
            problems.append(f"assumptions {got_assumed}, want {want_assumed}")
    confidence = {r.rule_id: r.confidence for r in d.reasons}
    for rule_id, level in want.get("confidence", {}).items():
        if confidence.get(rule_id) != level:
            problems.append(f"{rule_id} confidence {confidence.get(rule_id)}, want {level}")
    for reason in d.reasons:  # every reason is explained and cited in both languages
        if not (reason.text_zh and reason.text_en and reason.citation):
            problems.append(f"{reason.rule_id}: text or citation missing")
    return problems


def _check_caveats(reply: pb.EvaluateResponse, c: dict[str, Any]) -> list[str]:
    """`caveats` as a mapping {kind: [subjects]} asserts exactly those subjects for each kind listed;
    as a list of [kind, subject] pairs, that each is present. `caveats_absent`: pairs never present."""
    problems = []
    present = {(v.kind, v.subject) for v in reply.caveats}
    want = c.get("caveats", [])
    if isinstance(want, dict):
        used = {p.parameter: p.region_code for p in reply.parameters}
        for kind, subjects in want.items():
            of_kind = [v for v in reply.caveats if v.kind == kind]
            if sorted(v.subject for v in of_kind) != sorted(subjects):
                problems.append(f"{kind} caveats {sorted(v.subject for v in of_kind)}, want {sorted(subjects)}")
            for caveat in of_kind:
                if not (caveat.text_zh and caveat.text_en):
                    problems.append(f"{kind} caveat about {caveat.subject} lacks a text")
                region = used.get(caveat.subject, "")
                if kind == "region_fallback" and not (f"({region})" in caveat.text_en and region in caveat.text_zh):
                    problems.append(f"region_fallback caveat about {caveat.subject} does not name {region}")
    else:
        for kind, subject in want:
            if (kind, subject) not in present:
                problems.append(f"no {kind} caveat about {subject}: {sorted(present)}")
    for kind, subject in c.get("caveats_absent", []):
        if (kind, subject) in present:
            problems.append(f"unexpected {kind} caveat about {subject}")
    return problems


def asserted(cases: Iterable[Case], policy: PolicySet) -> dict[str, set[str]]:
    """Per rule or interaction id, the results the cases assert for it (not what replies showed).

    Counted: the reasons a case lists as passed/failed/unknown; an ELIGIBLE outcome, which asserts
    that every condition passed and every exclusion failed; the interactions a case lists for a
    program (applied), and with them every other interaction of that program (not applied); the
    referrals a case lists (passed) and, when it lists them, every referral it leaves out (failed).
    """
    seen: dict[str, set[str]] = defaultdict(set)
    involves: dict[str, set[str]] = defaultdict(set)
    for ex in policy.exclusions:
        involves[ex.program].add(ex.id)
        involves[ex.excludes].add(ex.id)
    for combo in policy.combinations:
        for pid in combo.programs:
            involves[pid].add(combo.id)
    for case in cases:
        c = case.data
        if "error" in c:
            continue
        for program_id, want in c.get("expect", {}).items():
            for result in REASON_RESULTS:
                for rule_id in want.get(result, []):
                    seen[rule_id].add(result)
            program = policy.programs.get(program_id)
            if want["outcome"] == "ELIGIBLE" and program is not None:
                for rule in program.conditions:
                    seen[rule.id].add("passed")
                for rule in program.exclusions:
                    seen[rule.id].add("failed")
            if "interactions" in want:
                for interaction_id in involves[program_id]:
                    seen[interaction_id].add(APPLIED if interaction_id in want["interactions"] else NOT_APPLIED)
        if "referrals" in c:
            for rule in policy.referrals:
                seen[rule.id].add("passed" if rule.id in c["referrals"] else "failed")
    return seen


def lacking(cases: Iterable[Case], policy: PolicySet) -> list[str]:
    """Each rule, interaction and referral that the cases never assert both ways where it has two."""
    seen = asserted(cases, policy)
    gaps = []
    for rule in policy.rules:
        got = seen.get(rule.id, set())
        if "passed" not in got:
            gaps.append(f"{rule.id}: never asserted passed")
        if rule.kind in ("condition", "route", "exclusion", "referral") and "failed" not in got:
            gaps.append(f"{rule.id}: never asserted failed")
    for interaction in (*policy.exclusions, *policy.combinations):
        got = seen.get(interaction.id, set())
        for result in (APPLIED, NOT_APPLIED):
            if result not in got:
                gaps.append(f"{interaction.id}: never asserted {result}")
    return gaps
