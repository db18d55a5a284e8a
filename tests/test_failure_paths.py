"""Paths that run only when something is wrong: the engine and its explanation disagreeing, the
policy loader refusing a broken set, policy expressions that do not parse, and the canary turning
health to NOT_SERVING when the engine fails or freezes."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health, health_pb2
from prometheus_client import REGISTRY
from support import HANGZHOU_NURSING_CASE, POLICIES, request

from service.cache import LocalCache
from service.decisions import DecisionService, PolicyHolder
from service.engine.decide import EngineDisagreement
from service.engine.durable_backend import ENGINE_LOCK, DurableMatcher
from service.policy.expressions import ExpressionError, parse_condition, parse_operand
from service.policy.loader import load_policies
from service.policy.yamlio import PolicyFileError
from service.server import Canary, ServerConfig

# ----------------------------------------------------------------------------- engine disagreement


class DroppingMatcher:
    """The real durable-rules matcher with one fault: it never reports `dropped` as fired (the kind
    of bug the cross-check exists to catch)."""

    def __init__(self, real: DurableMatcher, dropped: str):
        self.real, self.dropped = real, dropped

    def match(self, *args: Any, **kwargs: Any) -> set[str]:
        return self.real.match(*args, **kwargs) - {self.dropped}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def disagreements() -> float:
    return REGISTRY.get_sample_value("subsidy_engine_disagreements_total") or 0


def test_an_engine_disagreement_is_counted_logged_and_never_a_decision(caplog):
    service = DecisionService(PolicyHolder(POLICIES), LocalCache(ttl=60), b"key")
    case = request("2020-08-01", **HANGZHOU_NURSING_CASE)
    good = service.evaluate(case)
    nursing = next(d for d in good.decisions if d.program_id == "disability_nursing_subsidy")
    deciding = "nursing.amount_fully_dependent"
    assert any(r.rule_id == deciding and r.result for r in nursing.reasons), "the case no longer uses the rule"

    engine = service.holder.engine
    real = engine.matcher
    engine.matcher = DroppingMatcher(real, deciding)  # type: ignore[assignment]  # the injected fault
    other = request("2020-08-01", **{**HANGZHOU_NURSING_CASE, "birth_date": "1971-06-06"})
    before = disagreements()
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(EngineDisagreement, match=deciding):
            service.evaluate(other)
    finally:
        engine.matcher = real
    assert disagreements() == before + 1
    logged = [r for r in caplog.records if r.getMessage() == "engine disagreement"]
    assert logged and logged[0].__dict__["rule_id"] == deciding
    # Nothing was cached for the request: decided again, correctly, once the fault is gone.
    again = service.evaluate(other)
    assert not again.from_cache
    assert {d.program_id: d.monthly_amount.fen for d in again.decisions}["disability_nursing_subsidy"] == 54000


# ----------------------------------------------------------------------------- policy loader


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _no_policy_yaml(root: Path) -> None:
    (root / "policy.yaml").unlink()


def _program_id_not_its_file_name(root: Path) -> None:
    (root / "programs/elderly_care_subsidy.yaml").rename(root / "programs/elderly_care.yaml")


def _region_code_of_five_digits(root: Path) -> None:
    _edit(root / "regions.yaml", '"330102":', '"33012":')


def _parameter_defined_twice(root: Path) -> None:
    first = next(iter(sorted((root / "parameters").rglob("*.yaml"))))
    other = next(d for d in sorted((root / "parameters").iterdir()) if d.is_dir() and d != first.parent)
    shutil.copy(first, other / first.name)


def _no_programs(root: Path) -> None:
    for path in (root / "programs").glob("*.yaml"):
        path.unlink()


def _duplicate_rule_id(root: Path) -> None:
    path = root / "programs/elderly_care_subsidy.yaml"
    ids = re.findall(r"- id: (\S+)", path.read_text(encoding="utf-8"))
    assert len(ids) >= 2
    _edit(path, f"- id: {ids[1]}\n", f"- id: {ids[0]}\n")


def _interaction_with_unknown_program(root: Path) -> None:
    _edit(root / "interactions.yaml", "excludes: disability_living_allowance", "excludes: disability_allowance")


def _interaction_with_unknown_route(root: Path) -> None:
    _edit(root / "interactions.yaml", "child.disabled_minor_low_income]", "child.no_such_route]")


def _combination_with_unknown_program(root: Path) -> None:
    _edit(root / "interactions.yaml", "programs: [elderly_care_subsidy,", "programs: [elderly_subsidy,")


def _unknown_fact_in_a_referral(root: Path) -> None:
    _edit(root / "interactions.yaml", "{fact: household_status, in: [ordinary", "{fact: household_state, in: [ordinary")


def _unknown_parameter_in_a_referral(root: Path) -> None:
    _edit(root / "interactions.yaml", "{param: adult_age}", "{param: adulthood_age}")


def _not_yaml(root: Path) -> None:
    _edit(root / "facts.yaml", "\n", "\n  - [unclosed\n")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_no_policy_yaml, "not a policy directory"),
        (_program_id_not_its_file_name, "must match its file name"),
        (_region_code_of_five_digits, "is not six digits"),
        (_parameter_defined_twice, "is defined twice"),
        (_no_programs, "no programs"),
        (_duplicate_rule_id, "rule id used twice"),
        (_interaction_with_unknown_program, "unknown program"),
        (_interaction_with_unknown_route, "unknown routes"),
        (_combination_with_unknown_program, "unknown program 'elderly_subsidy'"),
        (_unknown_fact_in_a_referral, "unknown fact 'household_state'"),
        (_unknown_parameter_in_a_referral, "unknown parameter 'adulthood_age'"),
        (_not_yaml, r"facts\.yaml"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_a_broken_policy_set_is_refused(broken: Path, breakage: Any, expected: str) -> None:
    load_policies(broken)  # the copy loads before it is broken
    breakage(broken)
    with pytest.raises(PolicyFileError, match=expected):
        load_policies(broken)


# ----------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([1, 2], "not an operand"),
        ({"fact": "a", "param": "b"}, "exactly one key"),
        ({"mul": [{"param": "a"}]}, "mul takes a list of two or more operands"),
        ({"mul": {"param": "a"}}, "mul takes a list of two or more operands"),
        ({"add_months": [{"fact": "a"}]}, r"add_months takes \[date, months\]"),
        ({"divide": [1, 2]}, "unknown operand 'divide'"),
    ],
)
def test_operands_that_do_not_parse(raw: Any, expected: str) -> None:
    with pytest.raises(ExpressionError, match=expected):
        parse_operand(raw, ("amount",))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("age_years >= 60", "a condition is a mapping"),
        ({"all": []}, "all takes a non-empty list"),
        ({"any": {"fact": "a", "eq": 1}}, "any takes a non-empty list"),
        ({"fact": "age_years", "about": 60}, "unknown comparison 'about'"),
        ({"fact": "household_status", "in": []}, "in takes a non-empty list of values"),
        ({"fact": "household_status", "in": "dibao"}, "in takes a non-empty list of values"),
    ],
)
def test_conditions_that_do_not_parse(raw: Any, expected: str) -> None:
    with pytest.raises(ExpressionError, match=expected):
        parse_condition(raw, ("when",))


# ----------------------------------------------------------------------------- canary


def test_the_canary_turns_health_to_not_serving_when_the_engine_fails_or_freezes() -> None:
    service = DecisionService(PolicyHolder(POLICIES), LocalCache(ttl=60), b"key")
    cfg = ServerConfig(canary_interval=0.02, canary_timeout=0.5)

    async def scenario() -> list[str]:
        servicer = health.aio.HealthServicer()
        for name in ("", "subsidy.v1.EligibilityService"):
            await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        canary = Canary(service, servicer, cfg)
        seen: list[str] = []

        async def wait_for(status: int) -> None:
            async with asyncio.timeout(60):  # a hang guard only
                while True:
                    reply = await servicer.Check(health_pb2.HealthCheckRequest(service=""), None)
                    if reply.status == status:
                        seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
                        return
                    await asyncio.sleep(0.01)

        canary.start()
        try:
            # A frozen engine: its lock held, so the probe cannot finish within canary_timeout.
            with ENGINE_LOCK:
                await wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
            await wait_for(health_pb2.HealthCheckResponse.SERVING)  # it recovers by itself
            # A failing engine: closed under the service, every probe raises.
            service.holder.engine.matcher.close()
            await wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
        finally:
            canary.stop()
        return seen

    assert asyncio.run(scenario()) == ["NOT_SERVING", "SERVING", "NOT_SERVING"]
