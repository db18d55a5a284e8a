"""Domain decisions to protobuf replies (the receipt)."""
from __future__ import annotations

from .api import eligibility_pb2 as pb
from .engine.decide import Decision, RuleOutcome
from .policy.policyset import ParamValue, PolicySet

_RESULT = {True: pb.RULE_RESULT_PASSED, False: pb.RULE_RESULT_FAILED, None: pb.RULE_RESULT_UNKNOWN}


def parameter(value: ParamValue, policy: PolicySet) -> pb.ParameterValue:
    return pb.ParameterValue(parameter=value.parameter, value=f"{value.written.normalize():f}", unit=value.unit,
                             region_code=value.region, effective_from=value.effective_from.isoformat(),
                             source=policy.sources.get(value.source, value.source), confidence=value.source)


def _reason(outcome: RuleOutcome) -> pb.Reason:
    return pb.Reason(rule_id=outcome.rule.id, result=_RESULT[outcome.result], text_zh=outcome.text["zh"],
                     text_en=outcome.text["en"], citation=outcome.rule.citation, kind=outcome.rule.kind)


def response(decision: Decision, policy: PolicySet, request_hash: str) -> pb.EvaluateResponse:
    region = decision.region
    reply = pb.EvaluateResponse(
        policy_version=decision.policy_version,
        evaluation_date=decision.evaluation_date.isoformat(),
        region=pb.ResolvedRegion(code=region.code, name_zh=region.name.zh, name_en=region.name.en,
                                 level=region.level, in_zhejiang=region.in_zhejiang),
        request_hash=request_hash,
        total_monthly_amount=pb.Money(fen=decision.total_fen),
    )
    for d in decision.programs:
        facts = policy.facts
        reply.decisions.append(pb.ProgramDecision(
            program_id=d.program.id, name_zh=d.program.name.zh, name_en=d.program.name.en,
            outcome=pb.Outcome.Value("OUTCOME_" + d.outcome),
            monthly_amount=pb.Money(fen=d.amount_fen),
            amount_before_interactions=pb.Money(fen=d.amount_before_interactions_fen),
            reasons=[_reason(r) for r in d.reasons],
            missing_facts=[pb.MissingFact(fact=f, rule_id=r, label_zh=facts[f].label.zh, label_en=facts[f].label.en)
                           for f, r in d.missing],
            interactions=[pb.Interaction(rule_id=i.id, kind=i.kind, programs=i.programs,
                                         amounts=[pb.Money(fen=a) for a in i.amounts], kept_program=i.kept,
                                         text_zh=i.text["zh"], text_en=i.text["en"], citation=i.citation)
                          for i in d.interactions],
        ))
    for r in decision.referrals:
        reply.referrals.append(pb.Referral(rule_id=r.rule.id, text_zh=r.rule.text.zh, text_en=r.rule.text.en,
                                           citation=r.rule.citation))
    reply.parameters.extend(parameter(v, policy) for v in decision.parameters.values())
    return reply
