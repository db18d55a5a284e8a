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
    open_facts,
    operand_refs,
)
from ..policy.loader import rule_parameters
from ..policy.model import Period
from ..policy.policyset import ParameterNotInForce, ParamValue, PolicySet, Program, ResolvedRegion, Rule
from .caveats import Caveat, CaveatWriter
from .durable_backend import DurableMatcher, engine_value
from .memo import IdentityMemo, Memo
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
    # The result with every unstated fact unknown (defaults not applied): where it differs from
    # `result`, a default decided the rule, and `assumed` lists the defaults it read.
    unstated_result: bool | None = None
    assumed: tuple[tuple[str, Any], ...] = ()  # (fact, default value)
    # The unstated facts that leave `unstated_result` unknown (a conditional referral's conditions).
    open: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReferralOutcome:
    outcome: RuleOutcome
    conditions: tuple[str, ...]  # empty: the referral holds; else it holds if these are confirmed

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)


@dataclass
class InteractionOutcome:
    id: str
    kind: str  # exclusion, take_higher, both
    programs: list[str]
    amounts: list[int]
    kept: str
    text: dict[str, str]
    citation: str
    citation_zh: str = ""
    confidence: str = ""


@dataclass(frozen=True)
class ProgramResult:
    """What a program's rule outcomes decide before interactions: one shared object for every
    person whose rules came out the same (same results, same numbers in the texts)."""

    outcome: str
    amount_fen: int
    reasons: tuple[RuleOutcome, ...]
    missing: tuple[tuple[str, str], ...]  # (fact, rule id)
    passed_routes: tuple[str, ...]
    assumptions: tuple[tuple[str, Any, str], ...] = ()  # (fact, default value, rule id)


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
    assumptions: tuple[tuple[str, Any, str], ...] = ()  # (fact, default value, rule id)


@dataclass
class Decision:
    policy_version: str
    evaluation_date: dt.date
    region: ResolvedRegion
    parameters: dict[str, ParamValue]
    programs: list[ProgramDecision]
    referrals: list[ReferralOutcome]
    caveats: tuple[Caveat, ...] = ()

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


def _deciding(d: ProgramDecision) -> list[RuleOutcome]:
    """The rules a program's outcome rests on: for ELIGIBLE its conditions, exclusions, and the
    routes and adjustments that held; for INELIGIBLE the conditions that failed and exclusions that
    held, or else its routes (none held); for UNDETERMINED every rule."""
    if d.outcome == ELIGIBLE:
        return [r for r in d.reasons if r.rule.kind in ("condition", "exclusion") or r.result]
    if d.outcome == INELIGIBLE:
        found = [
            r
            for r in d.reasons
            if (r.rule.kind == "condition" and r.result is False) or (r.rule.kind == "exclusion" and r.result)
        ]
        return found or [r for r in d.reasons if r.rule.kind == "route"]
    return list(d.reasons)


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
        # Facts that are the value of a switch parameter for the region and date, not asked for.
        self.from_parameters = {n: str(f.from_parameter) for n, f in policy.facts.items() if f.from_parameter}
        self.disagreements = 0
        self._reads = {rule.id: _reads(rule) for rule in self.rules}
        # Per rule, the facts it reads that have a default: whether each was stated is part of
        # what its explanation depends on.
        self._defaultable = {
            rule.id: tuple(f for f in self._reads[rule.id][0] if f in self.defaults) for rule in self.rules
        }
        self._program_params = {pid: rule_parameters(p.rules, policy) for pid, p in policy.programs.items()}
        self._referral_params = rule_parameters(policy.referrals, policy)
        self.caveats = CaveatWriter(policy)
        # A program's shared reasons tuple -> {outcome: the parameters its decision rests on}
        self._used = IdentityMemo(PROGRAM_CACHE_SIZE)

        def params_of(refs: Iterable[Any]) -> frozenset[str]:
            return frozenset(
                r.name if not isinstance(r, Fact) else self.from_parameters[r.name]
                for r in refs
                if not isinstance(r, Fact) or r.name in self.from_parameters
            )

        self._when_params = {rule.id: params_of(condition_refs(rule.when)) for rule in self.rules}
        self._amount_params = {
            rule.id: params_of(operand_refs(rule.amount if rule.amount is not None else rule.multiply))
            for rule in self.rules
        }
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

    def period(self, program: Program) -> Period:
        return program.period or self.policy.manifest.period

    def in_force(self, on: dt.date) -> tuple[str, ...]:
        """The programs whose period covers the date."""
        return tuple(
            pid
            for pid, p in self.policy.programs.items()
            if self.period(p).effective_from <= on <= self.period(p).effective_until
        )

    def evaluate(
        self, facts: dict[str, Any], region: ResolvedRegion, on: dt.date, programs: Iterable[str] | None = None
    ) -> Decision:
        """Decide every program (interactions need them all) and return the ones asked for.

        Only programs in force on the date are decided: one asked for by name outside its period
        is an error (OutsidePolicyPeriod); when all are asked for, the others are left out."""
        self.check_date(on)
        in_force = self.in_force(on)
        if programs:
            wanted = tuple(programs)
            for pid in wanted:
                if pid not in in_force:
                    period = self.period(self.policy.programs[pid])
                    raise OutsidePolicyPeriod(
                        f"{on} is outside the period of {pid}: {period.effective_from} to {period.effective_until}"
                    )
        else:
            wanted = in_force
        param_values, params, fixed = self._parameters(region, on)
        stated = {k: v for k, v in facts.items() if v is not None}
        values = {**self.defaults, **stated}
        values["evaluation_date"] = date_to_yyyymmdd(on)
        values["in_zhejiang"] = region.in_zhejiang
        for fact, param in self.from_parameters.items():
            if param in params:
                values[fact] = params[param] != 0
        defaulted = frozenset(k for k in self.defaults if k not in stated)

        needed, reads, markers, affecting = self._closure(wanted, in_force)
        if region.in_zhejiang:
            self._require(affecting, params, region, on)
        fired = self.matcher.match(self._message(values, params), fixed, markers)
        # A rule's result and text are functions of the facts and parameters it reads alone (and of
        # which of those facts were stated), so both are computed once per distinct set of them.
        outcomes: dict[str, RuleOutcome] = {}
        explained = self._explained
        for rule, facts_read, params_read in reads:
            key = (
                rule.id,
                tuple(map(values.get, facts_read)),
                tuple(map(params.get, params_read)),
                defaulted if self._defaultable[rule.id] else None,  # a frozenset hashes once
            )
            known = explained.get(key)
            if known is None:
                known = explained.put(key, self._explain(rule, values, params, defaulted))
            if (known.result is True) != (rule.id in fired):
                self._disagree(rule, known, fired)
            outcomes[rule.id] = known

        decisions = {pid: self._program(self.policy.programs[pid], outcomes, params) for pid in needed}
        self._interactions(decisions)
        # A referral never rests on a default: it holds when the stated facts say so, and is
        # conditional when only unstated facts stand between the person and it.
        referrals = []
        for r in self.policy.referrals:
            outcome = outcomes[r.id]
            if outcome.unstated_result is True:
                referrals.append(ReferralOutcome(outcome, ()))
            elif outcome.unstated_result is None and outcome.open:
                referrals.append(ReferralOutcome(outcome, outcome.open))
        returned = [decisions[p] for p in wanted]
        caveats = self.caveats.for_decision(region.code, on, param_values, self._used_parameters(returned, referrals))
        return Decision(self.version, on, region, param_values, returned, referrals, caveats)

    def _require(self, needed: Iterable[str], params: dict[str, Decimal], region: ResolvedRegion, on: dt.date) -> None:
        """Every parameter the programs decided read is in force: a missing one is an error, not zero."""
        for pid in needed:
            for name in sorted(self._program_params[pid]):
                if name not in params:
                    raise ParameterNotInForce(
                        f"parameter {name} has no value in force for region {region.code} on {on}"
                    )

    def _used_parameters(self, programs: list[ProgramDecision], referrals: list[ReferralOutcome]) -> frozenset[str]:
        """The parameters the returned decisions rest on: those read by the rules that decided each
        (see `_deciding`), with the amounts of the routes and adjustments that paid."""
        used: set[str] = set()
        for d in programs:
            per_outcome: dict[str, frozenset[str]] = self._used.get(d.reasons, lambda _: {})
            found = per_outcome.get(d.outcome)
            if found is None:
                found = per_outcome[d.outcome] = self._program_used(d)
            used |= found
        for referral in referrals:
            used |= self._when_params[referral.outcome.rule.id]
        return frozenset(used)

    def _program_used(self, d: ProgramDecision) -> frozenset[str]:
        used: set[str] = set()
        for reason in _deciding(d):
            used |= self._when_params[reason.rule.id]
            if d.outcome == ELIGIBLE and reason.result and reason.rule.kind in ("route", "adjustment"):
                used |= self._amount_params[reason.rule.id]
        return frozenset(used)

    def _closure(
        self, wanted: tuple[str, ...], in_force: tuple[str, ...]
    ) -> tuple[list[str], list[tuple[Rule, tuple[str, ...], tuple[str, ...]]], str, list[str]]:
        """The programs to decide (those asked for and every program in force they interact with);
        their rules and the referrals, each with the facts and parameters it reads; the markers
        that let the engine match those rules alone; and the programs whose outcome can change
        one asked for (those must have every parameter they read: see `_require`)."""
        key = (frozenset(wanted), in_force)  # the order asked in does not change what is read
        found = self._closures.get(key)
        if found is None:
            links: dict[str, set[str]] = {}
            for ex in self.policy.exclusions:
                links.setdefault(ex.excludes, set()).add(ex.program)
                links.setdefault(ex.program, set()).add(ex.excludes)
            for combo in self.policy.combinations:
                for pid in combo.programs:
                    links.setdefault(pid, set()).update(combo.programs)
            needed: set[str] = set()
            todo = list(wanted)
            while todo:
                pid = todo.pop()
                if pid not in needed and pid in in_force:
                    needed.add(pid)
                    todo.extend(links.get(pid, ()))
            affecting = set(wanted)
            grown = True
            while grown:
                before = len(affecting)
                affecting |= {ex.program for ex in self.policy.exclusions if ex.excludes in affecting}
                for combo in self.policy.combinations:
                    if affecting & set(combo.programs):
                        affecting |= set(combo.programs)
                grown = len(affecting) != before
            programs = [p for p in self.policy.programs if p in needed]
            rules = [r for p in programs for r in self.policy.programs[p].rules] + list(self.policy.referrals)
            found = self._closures.put(
                key,
                (
                    programs,
                    [(r, *self._reads[r.id]) for r in rules],
                    self.matcher.markers((*programs, REFERRALS)),
                    [p for p in programs if p in affecting],
                ),
            )
        return found

    def parameters_in_force(self, region: ResolvedRegion, on: dt.date) -> dict[str, ParamValue]:
        """The parameters with a value in force for the region on the date (none outside Zhejiang)."""
        if not region.in_zhejiang:
            return {}
        found: dict[str, ParamValue] = {}
        for pid, param in self.policy.parameters.items():
            try:
                found[pid] = param.resolve(region, on)
            except ParameterNotInForce:
                continue  # an error only if a program decided reads it (see _require)
        return found

    def _parameters(self, region: ResolvedRegion, on: dt.date) -> tuple[dict[str, ParamValue], dict[str, Decimal], str]:
        """The parameters in force for a region on a date: as read (for the receipt), as values,
        and as the engine message's members (with every computed operand that reads no fact)."""
        key = (region.code, on)
        found = self._param_cache.get(key)
        if found is None:
            param_values = self.parameters_in_force(region, on)
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

    def _explain(
        self, rule: Rule, values: dict[str, Any], params: dict[str, Any], defaulted: frozenset[str]
    ) -> RuleOutcome:
        seen: list[tuple[Cmp, bool | None]] = []
        result = evaluate(rule.when, values, params, seen)
        absent: list[str] = []  # the facts its conditions read that the person lacks, in order
        for leaf in leaves(rule.when):
            names = [leaf.fact]
            if not isinstance(leaf.rhs, tuple):
                names += [r.name for r in operand_refs(leaf.rhs) if isinstance(r, Fact)]
            absent += [n for n in names if n not in values and n not in absent]
        text = self._render(rule, result, seen, values, params)
        used_defaults = [f for f in self._defaultable[rule.id] if f in defaulted]
        if not used_defaults:
            return RuleOutcome(
                rule, result, text, tuple(absent), result, (), tuple(open_facts(rule.when, values, params))
            )
        # The same rule with the unstated facts unknown: does a default decide it?
        unstated = {k: v for k, v in values.items() if k not in defaulted}
        unstated_result = evaluate(rule.when, unstated, params)
        assumed = tuple((f, values[f]) for f in used_defaults) if unstated_result != result else ()
        opened = tuple(open_facts(rule.when, unstated, params))
        return RuleOutcome(rule, result, text, tuple(absent), unstated_result, assumed, opened)

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
            assumptions=found.assumptions,
        )

    @staticmethod
    def _outcome(program: Program, results: dict[str, bool | None]) -> tuple[str, list[Rule]]:
        """The outcome the rule results give, and the routes that hold."""
        conditions = [results[r.id] for r in program.conditions]
        exclusions = [results[r.id] for r in program.exclusions]
        routes = [r for r in program.routes if results[r.id]]
        adjustments = [results[r.id] for r in program.adjustments]
        if False in conditions or True in exclusions:
            return INELIGIBLE, routes
        if None in conditions or None in exclusions or (not routes and None in [results[r.id] for r in program.routes]):
            return UNDETERMINED, routes
        if not routes:
            return INELIGIBLE, routes
        if None in adjustments:
            return UNDETERMINED, routes
        return ELIGIBLE, routes

    def _decide_program(
        self, program: Program, reasons: tuple[RuleOutcome, ...], params: dict[str, Any]
    ) -> ProgramResult:
        outcomes = {o.rule.id: o for o in reasons}
        unknown = [r for r in program.rules if outcomes[r.id].result is None]
        outcome, routes = self._outcome(program, {o.rule.id: o.result for o in reasons})
        # The defaults the decision used: those of the rules a default decided, when leaving the
        # unstated facts unknown would not give the same outcome and routes.
        assumptions: list[tuple[str, Any, str]] = []
        if any(o.assumed for o in reasons):
            unstated = {o.rule.id: o.unstated_result if o.assumed else o.result for o in reasons}
            if self._outcome(program, unstated) != (outcome, routes):
                assumptions = [(f, v, o.rule.id) for o in reasons for f, v in o.assumed]

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
        return ProgramResult(outcome, amount, reasons, tuple(missing), tuple(r.id for r in routes), tuple(assumptions))

    def _interactions(self, decisions: dict[str, ProgramDecision]) -> None:
        for ex in self.policy.exclusions:
            if ex.program not in decisions or ex.excludes not in decisions:
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
                    ex.citation_zh,
                    ex.confidence,
                )
                target.outcome, target.amount_fen = INELIGIBLE, 0
                target.interactions.append(item)
                source.interactions.append(item)
        for combo in self.policy.combinations:
            if not all(p in decisions for p in combo.programs):
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
                combo.citation_zh,
                combo.confidence,
            )
            for d in pair:
                d.interactions.append(item)
                if combo.mode == "take_higher" and d.program.id != kept:
                    d.amount_fen = 0
