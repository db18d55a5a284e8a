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
from typing import Any

from . import logs
from .engine.decide import ELIGIBLE, INELIGIBLE, Decision, ProgramDecision
from .engine.memo import IdentityMemo

log = logging.getLogger("audit")


# A program's shared reasons tuple -> {outcome: the rule ids that decided it}
_deciding = IdentityMemo(20_000)


def _per_outcome(_reasons: object) -> dict[str, list[str]]:
    return {}


def deciding_rules(decision: ProgramDecision) -> list[str]:
    """The ids of the rules that decided a program (see above); the same reasons and outcome
    always give the same list, so it is worked out once for each."""
    known = _deciding.get(decision.reasons, _per_outcome)
    found = known.get(decision.outcome)
    if found is None:
        found = known[decision.outcome] = _deciding_rules(decision)
    return found


def _deciding_rules(decision: ProgramDecision) -> list[str]:
    passed = [r.rule for r in decision.reasons if r.result is True]
    failed = [r.rule for r in decision.reasons if r.result is False]
    if decision.outcome == ELIGIBLE:
        return [r.id for r in passed if r.kind in ("condition", "route", "adjustment")]
    if decision.outcome == INELIGIBLE:
        ids = [r.id for r in failed if r.kind == "condition"]
        ids += [r.id for r in passed if r.kind == "exclusion"]
        return ids or [r.id for r in failed if r.kind == "route"]
    return sorted({rule_id for _, rule_id in decision.missing}) or [
        r.rule.id for r in decision.reasons if r.result is None
    ]


def summary(decision: Decision) -> dict[str, Any]:
    """What the audit line says of a computed decision, per program."""
    return {
        d.program.id: {
            "outcome": d.outcome.lower(),
            "amount_fen": d.amount_fen,
            "rules": deciding_rules(d),
            **({"interactions": [i.id for i in d.interactions]} if d.interactions else {}),
        }
        for d in decision.programs
    }


def record(
    method: str,
    caller: str,
    policy_version: str,
    request_hash: str,
    programs: dict[str, Any] | None,
    batch_index: int | None = None,
) -> None:
    """Log the audit line for one decision. A cache hit (programs None) names the request hash and
    version of the computed decision it repeats, whose own line carries the rules."""
    if not log.isEnabledFor(logging.INFO):
        return
    extra: dict[str, Any] = {"request_hash": request_hash}
    if programs is not None:
        extra["programs"] = programs
    if batch_index is not None:  # never the caller's `ref`: free text the service cannot vouch for
        extra["batch_index"] = batch_index
    logs.info_line(
        log,
        "decision",
        extra,
        (
            ("event", "decision"),
            ("method", method),
            ("caller", caller),
            ("policy_version", policy_version),
            ("from_cache", programs is None),
        ),
    )
