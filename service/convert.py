"""Domain decisions to protobuf replies (the receipt), as serialized bytes.

The reply is built from parts: reason lines and parameter lists repeat across people, so each is
serialized once and cached (see wire.py); the per-person fields are serialized fresh.
"""

from __future__ import annotations

from typing import Any

from .api import eligibility_pb2 as pb
from .engine.caveats import Caveat
from .engine.decide import Decision, ProgramDecision, RuleOutcome
from .engine.memo import IdentityMemo, Memo
from .policy.fallbacks import region_fallbacks
from .policy.policyset import ParamValue, PolicySet, Rule
from .wire import embedded, integer

_RESULT = {True: pb.RULE_RESULT_PASSED, False: pb.RULE_RESULT_FAILED, None: pb.RULE_RESULT_UNKNOWN}
_F = pb.EvaluateResponse.DESCRIPTOR.fields_by_name
_DECISIONS, _PARAMETERS = _F["decisions"].number, _F["parameters"].number
_REQUEST_HASH, _TOTAL = _F["request_hash"].number, _F["total_monthly_amount"].number
_FEN = pb.Money.DESCRIPTOR.fields_by_name["fen"].number
_REASONS = pb.ProgramDecision.DESCRIPTOR.fields_by_name["reasons"].number
CACHE_SIZE = 20_000  # entries per memo table; a reason line is about half a kilobyte


def confidence(value: ParamValue, policy: PolicySet) -> str:
    """A value's confidence: as its file states it, or derived from its source (policy.yaml)."""
    row = policy.parameters[value.parameter].row(value)
    return row.confidence or policy.manifest.confidence_by_source[row.source]


def parameter(value: ParamValue, policy: PolicySet) -> pb.ParameterValue:
    return pb.ParameterValue(
        parameter=value.parameter,
        value=f"{value.written.normalize():f}",
        unit=value.unit,
        region_code=value.region,
        effective_from=value.effective_from.isoformat(),
        source=policy.sources.get(value.source, value.source),
        confidence=confidence(value, policy),
    )


def region_caveats(decision: Decision, policy: PolicySet) -> list[pb.Caveat]:
    """The county-set values that came from the city or the province (a function of region and date)."""
    found = region_fallbacks(policy, decision.region, decision.evaluation_date, decision.parameters)
    return [pb.Caveat(kind=c.kind, subject=c.subject, text_zh=c.text.zh, text_en=c.text.en) for c in found]


def spelled(value: Any) -> str:
    """A fact's value as the policy files spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ReplyBuilder:
    """Builds serialized EvaluateResponse bytes for one policy set."""

    def __init__(self, policy: PolicySet):
        self.policy = policy
        self._reasons = IdentityMemo(CACHE_SIZE)  # RuleOutcome -> its Reason field
        self._reason_lists = IdentityMemo(CACHE_SIZE)  # a program's shared reasons tuple -> its Reason fields
        self._parameters = Memo(CACHE_SIZE)
        self._heads = Memo(CACHE_SIZE)
        self._programs = Memo(CACHE_SIZE)
        self._referrals = Memo(CACHE_SIZE)
        self._caveats = IdentityMemo(CACHE_SIZE)  # a decision's shared caveats tuple -> its fields

    def _reason(self, outcome: RuleOutcome) -> bytes:
        reason = pb.Reason(
            rule_id=outcome.rule.id,
            result=_RESULT[outcome.result],
            text_zh=outcome.text["zh"],
            text_en=outcome.text["en"],
            citation=outcome.rule.citation,
            kind=outcome.rule.kind,
            citation_zh=outcome.rule.citation_zh,
            confidence=outcome.rule.confidence,
        )
        return embedded(_REASONS, reason.SerializeToString())

    @staticmethod
    def _caveat_list(caveats: tuple[Caveat, ...]) -> bytes:
        return pb.EvaluateResponse(
            caveats=[pb.Caveat(kind=c.kind, subject=c.subject, text_zh=c.text_zh, text_en=c.text_en) for c in caveats]
        ).SerializeToString()

    def _referral(self, rule: Rule, conditions: tuple[str, ...]) -> pb.Referral:
        facts = self.policy.facts
        text = {"zh": rule.text.zh, "en": rule.text.en}
        if conditions:
            # Conditional: say which unstated facts it depends on, before the referral itself.
            text["zh"] = f"如经核实（{'、'.join(facts[f].label.zh for f in conditions)}）：{text['zh']}"
            text["en"] = f"If confirmed ({', '.join(facts[f].label.en for f in conditions)}): {text['en']}"
        return pb.Referral(
            rule_id=rule.id,
            text_zh=text["zh"],
            text_en=text["en"],
            citation=rule.citation,
            citation_zh=rule.citation_zh,
            conditional=bool(conditions),
            conditions=[
                pb.MissingFact(fact=f, rule_id=rule.id, label_zh=facts[f].label.zh, label_en=facts[f].label.en)
                for f in conditions
            ],
        )

    def _reason_list(self, reasons: tuple[RuleOutcome, ...]) -> bytes:
        return b"".join([self._reasons.get(r, self._reason) for r in reasons])

    def _parameter_list(self, decision: Decision) -> bytes:
        key = (decision.region.code, decision.evaluation_date)
        found = self._parameters.get(key)
        if found is None:
            found = self._parameters.put(
                key,
                b"".join(
                    embedded(_PARAMETERS, parameter(v, self.policy).SerializeToString())
                    for v in decision.parameters.values()
                ),
            )
        return found

    def _program_head(self, d: ProgramDecision) -> bytes:
        """A program's decision without its reasons: few distinct values, so cached."""
        key = (
            d.program.id,
            d.outcome,
            d.amount_fen,
            d.amount_before_interactions_fen,
            d.missing,
            tuple((i.id, tuple(i.amounts), i.kept) for i in d.interactions),
            d.assumptions,
        )
        found = self._programs.get(key)
        if found is None:
            facts = self.policy.facts
            found = self._programs.put(
                key,
                pb.ProgramDecision(
                    program_id=d.program.id,
                    name_zh=d.program.name.zh,
                    name_en=d.program.name.en,
                    outcome="OUTCOME_" + d.outcome,  # protobuf takes the enum value by name
                    monthly_amount=pb.Money(fen=d.amount_fen),
                    amount_before_interactions=pb.Money(fen=d.amount_before_interactions_fen),
                    missing_facts=[
                        pb.MissingFact(fact=f, rule_id=r, label_zh=facts[f].label.zh, label_en=facts[f].label.en)
                        for f, r in d.missing
                    ],
                    interactions=[
                        pb.Interaction(
                            rule_id=i.id,
                            kind=i.kind,
                            programs=i.programs,
                            amounts=[pb.Money(fen=a) for a in i.amounts],
                            kept_program=i.kept,
                            text_zh=i.text["zh"],
                            text_en=i.text["en"],
                            citation=i.citation,
                            citation_zh=i.citation_zh,
                        )
                        for i in d.interactions
                    ],
                    assumptions=[
                        pb.Assumption(
                            fact=f,
                            value=spelled(v),
                            rule_id=r,
                            label_zh=facts[f].label.zh,
                            label_en=facts[f].label.en,
                        )
                        for f, v, r in d.assumptions
                    ],
                ).SerializeToString(),
            )
        return found

    def _head(self, decision: Decision) -> bytes:
        """The fields every reply for a region and date shares (the region, its fallback caveats)."""
        region = decision.region
        key = (region.code, decision.evaluation_date)
        found = self._heads.get(key)
        if found is None:
            found = self._heads.put(
                key,
                pb.EvaluateResponse(
                    policy_version=decision.policy_version,
                    evaluation_date=decision.evaluation_date.isoformat(),
                    region=pb.ResolvedRegion(
                        code=region.code,
                        name_zh=region.name.zh,
                        name_en=region.name.en,
                        level=region.level,
                        in_zhejiang=region.in_zhejiang,
                    ),
                    caveats=region_caveats(decision, self.policy),
                ).SerializeToString(),
            )
        return found

    def response(self, decision: Decision, request_hash: str) -> bytes:
        parts = [
            self._head(decision),
            embedded(_REQUEST_HASH, request_hash.encode()),
            embedded(_TOTAL, integer(_FEN, decision.total_fen)),
        ]
        if decision.referrals:
            key = tuple((r.outcome.rule.id, r.conditions) for r in decision.referrals)
            found = self._referrals.get(key)
            if found is None:
                found = self._referrals.put(
                    key,
                    pb.EvaluateResponse(
                        referrals=[self._referral(r.outcome.rule, r.conditions) for r in decision.referrals]
                    ).SerializeToString(),
                )
            parts.append(found)
        if decision.caveats:  # one shared tuple per region, date and parameters used (caveats.py)
            parts.append(self._caveats.get(decision.caveats, self._caveat_list))
        for d in decision.programs:
            program = self._program_head(d) + self._reason_lists.get(d.reasons, self._reason_list)
            parts.append(embedded(_DECISIONS, program))
        parts.append(self._parameter_list(decision))
        return b"".join(parts)
