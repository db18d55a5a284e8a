"""The engine under threads and reloads: durable-rules is process-global and not thread-safe,
so every call goes through one lock; answers must be exactly those of a sequential run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import POLICIES

from bench.people import people
from service.cache import NoCache
from service.decisions import DecisionService, PolicyHolder
from service.engine.decide import Engine
from service.engine.durable_backend import EngineClosed
from service.policy.loader import load_policies
from service.request import to_case


def _answers(service, requests):
    out = []
    for r in requests:
        reply = service.evaluate(r)
        out.append(tuple((d.program_id, d.outcome, d.monthly_amount.fen) for d in reply.decisions))
    return out


def test_threads_give_the_sequential_answers():
    service = DecisionService(PolicyHolder(POLICIES), NoCache(), b"k")
    requests = people(300)
    expected = _answers(service, requests)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda chunk: _answers(service, chunk), [requests] * 8))
    assert all(r == expected for r in results)
    assert service.holder.engine.disagreements == 0


def test_reloads_under_threads_never_fail_or_mix_versions():
    service = DecisionService(PolicyHolder(POLICIES), NoCache(), b"k")
    requests = people(100)
    expected = _answers(service, requests)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work():
        while not stop.is_set():
            try:
                assert _answers(service, requests) == expected
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(8):
        assert service.holder.reload()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]


def test_many_engines_can_live_and_close():
    """Each reload compiles a new ruleset under a new name; closing frees it for good."""
    policy = load_policies(POLICIES)
    case = to_case(people(1)[0], policy)
    first = Engine(policy)
    expected = first.evaluate(case.facts, case.region, case.on)
    first.close()
    for _ in range(30):
        engine = Engine(policy)
        decision = engine.evaluate(case.facts, case.region, case.on)
        assert [(d.program.id, d.outcome, d.amount_fen) for d in decision.programs] == [
            (d.program.id, d.outcome, d.amount_fen) for d in expected.programs
        ]
        engine.close()
        with pytest.raises(EngineClosed):  # closed for good: its ruleset is gone
            engine.evaluate(case.facts, case.region, case.on)
        engine.close()  # idempotent
