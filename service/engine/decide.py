"""The decision for one person: facts in, per-program outcomes, amounts and reasons out.

This is the domain core: it knows nothing of gRPC. durable-rules decides which rules hold; the
same conditions evaluated here (three-valued) explain why the others failed or could not be
decided, and the two must agree.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..policy.expressions import (
    Cmp,
    Fact,
    condition_refs,
    date_to_yyyymmdd,
    evaluate,
    evaluate_operand,
    leaves,
    operand_refs,
)
from ..policy.policyset import ParamValue, PolicySet, Program, ResolvedRegion, Rule
from .durable_backend import DurableMatcher, engine_value
from .memo import Memo
from .render import Renderer

log = logging.getLogger(__name__)
ELIGIBLE, INELIGIBLE, UNDETERMINED = "ELIGIBLE", "INELIGIBLE", "UNDETERMINED"
REFERRALS = "referrals"  # the engine's rule group of the referral rules (programs have their ids)
FEN_PER_YUAN = Decimal(100)
AMOUNT_WORDS = {"zh": {"amount": "金额", "multiply": "乘以"}, "en": {"amount": "amount", "multiply": "times"}}


class EngineDisagreement(RuntimeError):
    """durable-rules and the explanation evaluator disagree: a bug, never a decision."""


class OutsidePolicyPeriod(ValueError):
    """The evaluation date is outside the policy set's period."""


@dataclass(eq=False)  # shared, and compared by identity (see memo.py)
class RuleOutcome:
    rule: Rule
    result: bool | None
    text: dict[str, str]  # zh, en: the rule's text and each test with its numbers
    absent: tuple[str, ...] = ()  # facts its conditions read that were missing


@dataclass
class InteractionOutcome:
    id: str
    kind: str  # exclusion, take_higher, both
    programs: list[str]
    amounts: list[int]
    kept: str
    text: dict[str, str]
    citation: str


@dataclass(frozen=True)
class ProgramResult:
    """What a program's rule outcomes decide before interactions: one shared object for every
    person whose rules came out the same (same results, same numbers in the texts)."""

    outcome: str
    amount_fen: int
    reasons: tuple[RuleOutcome, ...]
    missing: tuple[tuple[str, str], ...]  # (fact, rule id)
    passed_routes: tuple[str, ...]


@dataclass
class ProgramDecision:
    program: Program
    outcome: str
    amount_fen: int
    amount_before_interactions_fen: int
    reasons: tuple[RuleOutcome, ...]  # shared (ProgramResult): never mutate
    missing: tuple[tuple[str, str], ...]  # (fact, rule id)
    passed_routes: tuple[str, ...]
    interactions: list[InteractionOutcome] = field(default_factory=list)


@dataclass
class Decision:
    policy_version: str
    evaluation_date: dt.date
    region: ResolvedRegion
    parameters: dict[str, ParamValue]
    programs: list[ProgramDecision]
    referrals: list[RuleOutcome]

    @property
    def total_fen(self) -> int:
        return sum(p.amount_fen for p in self.programs)


# Bounds on the per-engine memo tables (about 1 KB an entry at most): memory stays flat.
EXPLAINED_CACHE_SIZE = 20_000
PROGRAM_CACHE_SIZE = 20_000
PARAM_CACHE_SIZE = 2_000
CLOSURE_CACHE_SIZE = 1_000


def _reads(rule: Rule) -> tuple[tuple[str, ...], tuple[str, ...]]:
    refs = set(condition_refs(rule.when))
    for formula in (rule.amount, rule.multiply):
        if formula is not None:
            refs |= set(operand_refs(formula))
    return (
        tuple(sorted(r.name for r in refs if isinstance(r, Fact))),
        tuple(sorted(r.name for r in refs if not isinstance(r, Fact))),
    )


def round_yuan_half_up(fen: Decimal) -> int:
    return int((fen / FEN_PER_YUAN).quantize(Decimal(1), rounding=ROUND_HALF_UP) * FEN_PER_YUAN)


ROUNDING = {"yuan_half_up": round_yuan_half_up}


class Engine:
    """A policy set compiled for evaluation. Thread-safe; build a new one to change policies."""

    def __init__(self, policy: PolicySet):
        self.policy = policy
        self.version = policy.version
        self.rules = policy.rules
        self.matcher = DurableMatcher(
            [*((pid, p.rules) for pid, p in policy.programs.items()), (REFERRALS, policy.referrals)],
            f"policy@{policy.version}",
        )
        self.renderer = Renderer(policy)
        self.defaults = {name: f.default for name, f in policy.facts.items() if f.default is not None}
        self.disagreements = 0
        self._reads = {rule.id: _reads(rule) for rule in self.rules}
        self._explained = Memo(EXPLAINED_CACHE_SIZE)  # (rule id, values read) -> RuleOutcome
        self._programs = Memo(PROGRAM_CACHE_SIZE)  # (program id, its RuleOutcomes' ids) -> ProgramResult
        self._closures = Memo(CLOSURE_CACHE_SIZE)  # the programs asked for -> what deciding them reads
        self._param_cache = Memo(PARAM_CACHE_SIZE)  # (region, date) -> as read, values, engine members
        computed = self.matcher.slots.computed.items()
        self._fact_ops = [(op, name) for op, name in computed if any(isinstance(r, Fact) for r in operand_refs(op))]
        self._param_only_ops = [(op, name) for op, name in computed if (op, name) not in self._fact_ops]

    def close(self) -> None:
        self.matcher.close()

    def check_date(self, on: dt.date) -> None:
        period = self.policy.manifest.period
        if not period.effective_from <= on <= period.effective_until:
            raise OutsidePolicyPeriod(
                f"{on} is outside the policy period {period.effective_from} to {period.effective_until}"
            )

    def evaluate(
        self, facts: dict[str, Any], region: ResolvedRegion, on: dt.date, programs: Iterable[str] | None = None
    ) -> Decision:
        """Decide every program (interactions need them all) and return the ones asked for."""
        self.check_date(on)
        param_values, params, fixed = self._parameters(region, on)
        values = {**self.defaults, **{k: v for k, v in facts.items() if v is not None}}
        values["evaluation_date"] = date_to_yyyymmdd(on)
        values["in_zhejiang"] = region.in_zhejiang

        wanted = tuple(programs) if programs else tuple(self.policy.programs)
        needed, reads, markers = self._closure(wanted)
        fired = self.matcher.match(self._message(values, params), fixed, markers)
        # A rule's result and text are functions of the facts and parameters it reads alone, so
        # both are computed once per distinct set of those values (most people share most of them).
        outcomes: dict[str, RuleOutcome] = {}
        explained = self._explained
        for rule, facts_read, params_read in reads:
            key = (rule.id, tuple(map(values.get, facts_read)), tuple(map(params.get, params_read)))
            known = explained.get(key)
            if known is None:
                known = explained.put(key, self._explain(rule, values, params))
            if (known.result is True) != (rule.id in fired):
                self._disagree(rule, known, fired)
            outcomes[rule.id] = known

        decisions = {pid: self._program(self.policy.programs[pid], outcomes, params) for pid in needed}
        self._interactions(decisions)
        referrals = [outcomes[r.id] for r in self.policy.referrals if outcomes[r.id].result]
        return Decision(self.version, on, region, param_values, [decisions[p] for p in wanted], referrals)

    def _closure(
        self, wanted: tuple[str, ...]
    ) -> tuple[list[str], list[tuple[Rule, tuple[str, ...], tuple[str, ...]]], str]:
        """The programs to decide (those asked for and every program they interact with); their
        rules and the referrals, each with the facts and parameters it reads; and the markers that
        let the engine match those rules alone."""
        key = frozenset(wanted)  # the order asked in does not change what is read
        found = self._closures.get(key)
        if found is None:
            links: dict[str, set[str]] = {}
            for ex in self.policy.exclusions:
                links.setdefault(ex.excludes, set()).add(ex.program)
                links.setdefault(ex.program, set()).add(ex.excludes)
            for combo in self.policy.combinations:
                for pid in combo.programs:
                    links.setdefault(pid, set()).update(combo.programs)
            needed, todo = set(), list(wanted)
            while todo:
                pid = todo.pop()
                if pid not in needed:
                    needed.add(pid)
                    todo.extend(links.get(pid, ()))
            programs = [p for p in self.policy.programs if p in needed]
            rules = [r for p in programs for r in self.policy.programs[p].rules] + list(self.policy.referrals)
            found = self._closures.put(
                key, (programs, [(r, *self._reads[r.id]) for r in rules], self.matcher.markers((*programs, REFERRALS)))
            )
        return found

    def _parameters(self, region: ResolvedRegion, on: dt.date) -> tuple[dict[str, ParamValue], dict[str, Decimal], str]:
        """The parameters in force for a region on a date: as read (for the receipt), as values,
        and as the engine message's members (with every computed operand that reads no fact)."""
        key = (region.code, on)
        found = self._param_cache.get(key)
        if found is None:
            param_values = self.policy.resolve_parameters(region, on)
            params = {k: v.value for k, v in param_values.items()}
            shared = {"p__" + k: engine_value(v) for k, v in params.items()}
            for op, name in self._param_only_ops:
                value = evaluate_operand(op, {}, params)
                if value is not None:
                    shared[name] = engine_value(value)
            found = self._param_cache.put(key, (param_values, params, self.matcher.fixed_part(shared)))
        return found

    def _message(self, values: dict[str, Any], params: dict[str, Decimal]) -> dict[str, Any]:
        """The person's part of the engine message: facts, and the computed operands that read them."""
        message = {k: engine_value(v) for k, v in values.items()}
        for op, name in self._fact_ops:
            value = evaluate_operand(op, values, params)
            if value is not None:
                message[name] = engine_value(value)
        return message

    def _explain(self, rule: Rule, values: dict[str, Any], params: dict[str, Any]) -> RuleOutcome:
        seen: list[tuple[Cmp, bool | None]] = []
        result = evaluate(rule.when, values, params, seen)
        absent: list[str] = []  # the facts its conditions read that the person lacks, in order
        for leaf in leaves(rule.when):
            names = [leaf.fact]
            if not isinstance(leaf.rhs, tuple):
                names += [r.name for r in operand_refs(leaf.rhs) if isinstance(r, Fact)]
            absent += [n for n in names if n not in values and n not in absent]
        return RuleOutcome(rule, result, self._render(rule, result, seen, values, params), tuple(absent))

    def _disagree(self, rule: Rule, known: RuleOutcome, fired: set[str]) -> None:
        self.disagreements += 1
        log.error(
            "engine disagreement", extra={"rule_id": rule.id, "engine": rule.id in fired, "explained": known.result}
        )
        raise EngineDisagreement(
            f"rule {rule.id}: engine {'fired' if rule.id in fired else 'did not fire'}, explanation says {known.result}"
        )

    def _render(
        self,
        rule: Rule,
        result: bool | None,
        seen: list[tuple[Cmp, bool | None]],
        values: dict[str, Any],
        params: dict[str, Any],
    ) -> dict[str, str]:
        text = {}
        for lang in ("zh", "en"):
            tests = "; ".join(self.renderer.leaf(leaf, r, values, params, lang) for leaf, r in seen)
            text[lang] = f"{getattr(rule.text, lang)} — {tests}"
            formula = rule.amount if rule.amount is not None else rule.multiply
            if result and formula is not None:
                word = AMOUNT_WORDS[lang]["amount" if rule.amount is not None else "multiply"]
                text[lang] += f"; {word} {self.renderer.operand(formula, values, params, lang)}"
        return text

    def _program(self, program: Program, outcomes: dict[str, RuleOutcome], params: dict[str, Any]) -> ProgramDecision:
        reasons = tuple([outcomes[r.id] for r in program.rules])
        # The entry holds the RuleOutcomes (in `reasons`), so their ids stay theirs while it lives.
        key = (program.id, *map(id, reasons))
        found = self._programs.get(key)
        if found is None:
            found = self._programs.put(key, self._decide_program(program, reasons, params))
        return ProgramDecision(
            program,
            found.outcome,
            found.amount_fen,
            found.amount_fen,
            found.reasons,
            found.missing,
            found.passed_routes,
        )

    def _decide_program(
        self, program: Program, reasons: tuple[RuleOutcome, ...], params: dict[str, Any]
    ) -> ProgramResult:
        outcomes = {o.rule.id: o for o in reasons}
        conditions = [outcomes[r.id].result for r in program.conditions]
        exclusions = [outcomes[r.id].result for r in program.exclusions]
        routes = [r for r in program.routes if outcomes[r.id].result]
        adjustments = [outcomes[r.id].result for r in program.adjustments]
        unknown = [r for r in program.rules if outcomes[r.id].result is None]

        if False in conditions or True in exclusions:
            outcome = INELIGIBLE
        elif (
            None in conditions
            or None in exclusions
            or (not routes and None in [outcomes[r.id].result for r in program.routes])
        ):
            outcome = UNDETERMINED
        elif not routes:
            outcome = INELIGIBLE
        elif None in adjustments:
            outcome = UNDETERMINED
        else:
            outcome = ELIGIBLE

        amount = 0
        if outcome == ELIGIBLE:
            best = max(evaluate_operand(r.amount, {}, params) for r in routes if r.amount is not None)
            for rule in program.adjustments:
                if outcomes[rule.id].result and rule.multiply is not None:
                    best *= evaluate_operand(rule.multiply, {}, params)
            amount = ROUNDING[program.rounding](best)
        missing: list[tuple[str, str]] = []
        if outcome == UNDETERMINED:
            # The facts each unknown rule lacks, as its outcome recorded them.
            for rule in unknown:
                missing += [(n, rule.id) for n in outcomes[rule.id].absent if (n, rule.id) not in missing]
        return ProgramResult(outcome, amount, reasons, tuple(missing), tuple(r.id for r in routes))

    def _interactions(self, decisions: dict[str, ProgramDecision]) -> None:
        for ex in self.policy.exclusions:
            if ex.program not in decisions:
                continue
            source, target = decisions[ex.program], decisions[ex.excludes]
            if source.outcome == ELIGIBLE and set(source.passed_routes) & set(ex.routes) and target.outcome == ELIGIBLE:
                item = InteractionOutcome(
                    ex.id,
                    "exclusion",
                    [ex.program, ex.excludes],
                    [source.amount_fen, target.amount_fen],
                    ex.program,
                    ex.text.model_dump(),
                    ex.citation,
                )
                target.outcome, target.amount_fen = INELIGIBLE, 0
                target.interactions.append(item)
                source.interactions.append(item)
        for combo in self.policy.combinations:
            if combo.programs[0] not in decisions:
                continue
            pair = [decisions[p] for p in combo.programs]
            if not all(d.outcome == ELIGIBLE for d in pair):
                continue
            amounts = [d.amount_fen for d in pair]
            kept = combo.programs[0] if amounts[0] >= amounts[1] else combo.programs[1]
            item = InteractionOutcome(
                combo.id,
                combo.mode,
                list(combo.programs),
                amounts,
                kept if combo.mode == "take_higher" else "",
                combo.text.model_dump(),
                combo.citation,
            )
            for d in pair:
                d.interactions.append(item)
                if combo.mode == "take_higher" and d.program.id != kept:
                    d.amount_fen = 0
