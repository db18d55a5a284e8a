"""The reference decider: each row through the service core (durable-rules), as a caller's request.

Slow (a few thousand people a second) and exact by construction: it is what the columnar backend
is held equal to, and what explains one person's decision.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import polars as pl

from service.api import eligibility_pb2 as pb
from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder
from service.engine.columnar import schema as s
from service.engine.columnar.persons import error_text, to_request

OUTCOMES = {
    pb.OUTCOME_ELIGIBLE: "ELIGIBLE",
    pb.OUTCOME_INELIGIBLE: "INELIGIBLE",
    pb.OUTCOME_UNDETERMINED: "UNDETERMINED",
}


class OnlineDecider:
    def __init__(self, holder: PolicyHolder):
        self.holder = holder
        self.service = DecisionService(holder, LocalCache(ttl=0), secrets.token_bytes(32))
        self.version = holder.engine.version
        self.programs = list(holder.engine.policy.programs)

    @classmethod
    def load(cls, policies: Path) -> OnlineDecider:
        return cls(PolicyHolder(policies))

    def decide(self, persons: pl.DataFrame, on: dt.date) -> pl.DataFrame:
        """The decision table (schema.decision_schema) for every row on one date."""
        carried = [c for c in (s.REFERENCE, s.WEIGHT) if c in persons.columns]
        out_schema = {**{c: persons.schema[c] for c in carried}, **s.decision_schema(self.programs)}
        rows = [self.decide_row(row, on, carried) for row in persons.iter_rows(named=True)]
        return pl.DataFrame(rows, schema=out_schema, orient="row")

    def decide_row(self, row: dict[str, Any], on: dt.date, carried: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {c: row[c] for c in carried}
        out.update({s.AS_OF: on, s.POLICY_VERSION: self.version})
        try:
            reply = self.service.evaluate(to_request(row, on))
        except Exception as exc:  # a refusal is a decision table row too: every status, as text
            out[s.ERROR] = error_text(exc)
            return out
        region = reply.region
        out[s.REGION] = region.code
        out[s.IN_ZHEJIANG] = region.in_zhejiang
        out[s.CITY] = region.code[:4] + "00" if region.in_zhejiang and region.level != "province" else None
        for d in reply.decisions:
            outcome = OUTCOMES[d.outcome]
            taken = any(i.kind == "take_higher" and i.kept_program != d.program_id for i in d.interactions)
            values = {
                s.OUTCOME: outcome,
                s.AMOUNT: d.monthly_amount.fen,
                s.AMOUNT_BEFORE: d.amount_before_interactions.fen,
                s.KEPT: (not taken) if outcome == "ELIGIBLE" else None,
                s.INTERACTIONS: sorted({i.rule_id for i in d.interactions}),
                s.MISSING: sorted({f"{m.rule_id}:{m.fact}" for m in d.missing_facts}),
                s.ASSUMPTIONS: sorted({f"{a.rule_id}:{a.fact}={a.value}" for a in d.assumptions}),
            }
            out.update({s.column(d.program_id, k): v for k, v in values.items()})
        out[s.REFERRALS] = sorted(r.rule_id for r in reply.referrals if not r.conditional)
        out[s.CONDITIONAL_REFERRALS] = sorted(
            f"{r.rule_id}:{','.join(sorted(c.fact for c in r.conditions))}" for r in reply.referrals if r.conditional
        )
        return out
