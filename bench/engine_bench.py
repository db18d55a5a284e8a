"""Engine alone: evaluations per second of the policy engine against plain Python, and where the
time of one evaluation goes."""

from __future__ import annotations

import time
from pathlib import Path

from service.engine.decide import ELIGIBLE, Engine
from service.policy.expressions import evaluate
from service.policy.loader import load_policies
from service.request import to_case

from . import plain_rules
from .people import people

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def _rate(fn, items, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in items:
            fn(item)
        n += len(items)
    return n / (time.perf_counter() - start)


def prepare(n: int = 200, policies: Path = POLICIES):
    policy = load_policies(policies)
    engine = Engine(policy)
    cases = [to_case(r, policy) for r in people(n)]
    return engine, policy, cases


def run(seconds: float = 2.0) -> list[tuple[str, float]]:
    engine, policy, cases = prepare()
    prepared = []
    for case in cases:
        params = {k: v.value for k, v in policy.resolve_parameters(case.region, case.on).items()}
        values = {
            **engine.defaults,
            **{k: v for k, v in case.facts.items() if v is not None},
            "evaluation_date": case.on.year * 10000 + case.on.month * 100 + case.on.day,
            "in_zhejiang": case.region.in_zhejiang,
        }
        prepared.append((case, values, params, engine._message(values, params)))

    # The baseline is only fair if it decides the same: check on the sample first.
    mismatches = 0
    for case, values, params, _ in prepared:
        engine_out = {
            d.program.id: (d.outcome, d.amount_fen) for d in engine.evaluate(case.facts, case.region, case.on).programs
        }
        plain = plain_rules.decide(values, params)
        mismatches += sum(1 for k, (o, a) in engine_out.items() if o == ELIGIBLE and plain[k] != (o, a))

    rows = [
        (
            "engine: full decision (durable-rules + explanation + amounts)",
            _rate(lambda c: engine.evaluate(c[0].facts, c[0].region, c[0].on), prepared, seconds),
        ),
        (
            "  durable-rules match alone (assert, read firings, retract)",
            _rate(lambda c: engine.matcher.match(c[3]), prepared, seconds),
        ),
        (
            "  explanation alone (three-valued Python over the same trees)",
            _rate(lambda c: [evaluate(r.when, c[1], c[2], []) for r in engine.rules], prepared, seconds),
        ),
        (
            "  parameter resolution alone",
            _rate(lambda c: policy.resolve_parameters(c[0].region, c[0].on), prepared, seconds),
        ),
        ("  request validation to facts alone", _rate(lambda r: to_case(r, policy), people(200), seconds)),
        ("plain Python if/else, same rules", _rate(lambda c: plain_rules.decide(c[1], c[2]), prepared, seconds)),
    ]
    engine.close()
    rows.append(("(eligible decisions where plain Python disagrees; must be 0)", float(mismatches)))
    return rows
