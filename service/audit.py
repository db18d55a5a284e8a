"""One audit log line per decision: enough to trace it, nothing that identifies the person.

The line (logger `audit`, JSON on stderr like every log line) carries the caller system, the
policy version, the evaluation date, the keyed request hash (HMAC of the canonical request under
SUBSIDY_HMAC_KEY, as in the reply), whether the cache answered, and per program the outcome, the
amount in fen and the ids of the rules that decided it. With the same key and the caller's stored
request, the hash proves which request a line belongs to; the ID number itself is never written,
nor the birth date or region.

Which rules decided:
- ELIGIBLE: the conditions and routes that passed, and the adjustments that applied;
- INELIGIBLE: the conditions that failed and the exclusions that held (or, when no route held,
  the routes);
- UNDETERMINED: the rules that could not be evaluated for a missing fact.
"""
from __future__ import annotations

import logging

from .api import eligibility_pb2 as pb

log = logging.getLogger("audit")

_OUTCOME = {pb.OUTCOME_ELIGIBLE: "eligible", pb.OUTCOME_INELIGIBLE: "ineligible",
            pb.OUTCOME_UNDETERMINED: "undetermined"}


def deciding_rules(decision: pb.ProgramDecision) -> list[str]:
    passed = [r for r in decision.reasons if r.result == pb.RULE_RESULT_PASSED]
    failed = [r for r in decision.reasons if r.result == pb.RULE_RESULT_FAILED]
    if decision.outcome == pb.OUTCOME_ELIGIBLE:
        return [r.rule_id for r in passed if r.kind in ("condition", "route", "adjustment")]
    if decision.outcome == pb.OUTCOME_INELIGIBLE:
        ids = [r.rule_id for r in failed if r.kind == "condition"]
        ids += [r.rule_id for r in passed if r.kind == "exclusion"]
        if not ids:
            ids = [r.rule_id for r in failed if r.kind == "route"]
        return ids
    return sorted({m.rule_id for m in decision.missing_facts}) or [
        r.rule_id for r in decision.reasons if r.result == pb.RULE_RESULT_UNKNOWN]


def record(reply: pb.EvaluateResponse, method: str, caller: str, batch_index: int | None = None) -> None:
    """Log the audit line for one decision receipt."""
    if not log.isEnabledFor(logging.INFO):
        return
    programs = {}
    for d in reply.decisions:
        programs[d.program_id] = {
            "outcome": _OUTCOME.get(d.outcome, "unspecified"),
            "amount_fen": d.monthly_amount.fen,
            "rules": deciding_rules(d),
            **({"interactions": [i.rule_id for i in d.interactions]} if len(d.interactions) else {}),
        }
    extra = {"event": "decision", "method": method, "caller": caller, "policy_version": reply.policy_version,
             "evaluation_date": reply.evaluation_date, "request_hash": reply.request_hash,
             "from_cache": reply.from_cache, "total_fen": reply.total_monthly_amount.fen, "programs": programs}
    if batch_index is not None:  # never the caller's `ref`: free text the service cannot vouch for
        extra["batch_index"] = batch_index
    log.info("decision", extra=extra)
