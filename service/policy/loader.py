"""Load a policy directory: validate every file, parse rules, check the whole set, hash it.

Nothing here knows a program: everything comes from the files. Any problem raises
PolicyFileError naming the file and line, and nothing half-loaded is ever returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from . import model
from .expressions import (
    All,
    Cmp,
    ExpressionError,
    Fact,
    Lit,
    Param,
    condition_refs,
    leaves,
    operand_refs,
    parse_condition,
    parse_operand,
)
from .policyset import Parameter, PolicySet, Program, Regions, Rule
from .yamlio import PolicyFileError, YamlDoc

M = TypeVar("M", bound=BaseModel)
_REGION = re.compile(r"^\d{6}$")
# Limits of the durable-rules engine that crash or hang it (see the design notes); the
# 256-rules-per-condition limit is handled by the backend, which spreads rules over groups.
MAX_TESTS_PER_ATTRIBUTE = 511


def policy_version(root: Path) -> str:
    """Content hash of the policy files that decide (test cases excluded)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.yaml") if "tests" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _validate(doc: YamlDoc, cls: type[M]) -> M:
    try:
        return cls.model_validate(doc.data)
    except ValidationError as exc:
        problems = [f"{doc.where(tuple(e['loc']))}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise PolicyFileError("invalid policy file:\n  " + "\n  ".join(problems)) from None


Groups = dict[str, dict[str, list[str]]]  # fact -> group name -> enum values


def _rule(doc: YamlDoc, raw: model.Rule, kind: str, program: str | None, loc: tuple, groups: Groups) -> Rule:
    try:
        when = parse_condition(raw.when, loc + ("when",), groups)
        amount = parse_operand(raw.amount, loc + ("amount",)) if isinstance(raw, model.Route) else None
        multiply = parse_operand(raw.multiply, loc + ("multiply",)) if isinstance(raw, model.Adjustment) else None
    except ExpressionError as exc:
        raise PolicyFileError(f"{doc.where(exc.loc)}: rule {raw.id}: {exc}") from None
    return Rule(raw.id, kind, program, raw.text, raw.citation, when, amount, multiply, raw.citation_zh, raw.confidence)


def _load_program(doc: YamlDoc, groups: Groups) -> Program:
    f = _validate(doc, model.ProgramFile)
    if doc.path.stem != f.id:
        raise PolicyFileError(f"{doc.where(('id',))}: program id {f.id!r} must match its file name")

    def rules(raws: Iterable[model.Rule], section: str, kind: str) -> tuple[Rule, ...]:
        return tuple(_rule(doc, r, kind, f.id, (section, i), groups) for i, r in enumerate(raws))

    return Program(
        f.id,
        f.name,
        f.citation,
        f.rounding,
        rules(f.conditions, "conditions", "condition"),
        rules(f.exclusions, "exclusions", "exclusion"),
        rules(f.routes, "routes", "route"),
        rules(f.adjustments, "adjustments", "adjustment"),
        f.period,
    )


def load_policies(root: str | Path) -> PolicySet:
    root = Path(root)
    if not (root / "policy.yaml").is_file():
        raise PolicyFileError(f"{root}: not a policy directory (no policy.yaml)")
    manifest = _validate(YamlDoc(root / "policy.yaml"), model.Manifest)
    facts = _validate(YamlDoc(root / "facts.yaml"), model.FactsFile).facts
    groups: Groups = {name: fact.groups for name, fact in facts.items() if fact.groups}
    regions_doc = YamlDoc(root / "regions.yaml")
    rf = _validate(regions_doc, model.RegionsFile)
    for code in [rf.province.code, *rf.cities, *rf.counties, *rf.aliases, *(a.to for a in rf.aliases.values())]:
        if not _REGION.match(code):
            raise PolicyFileError(f"{regions_doc.where()}: region code {code!r} is not six digits")
    regions = Regions(rf.province.code, rf.province, dict(rf.cities), dict(rf.counties), dict(rf.aliases))

    parameters: dict[str, Parameter] = {}
    param_docs: dict[str, YamlDoc] = {}
    for path in sorted((root / "parameters").rglob("*.yaml")):
        doc = YamlDoc(path)
        if path.stem in parameters:
            raise PolicyFileError(f"{path}: parameter {path.stem} is defined twice ({param_docs[path.stem].path})")
        parameters[path.stem] = Parameter(path.stem, _validate(doc, model.ParameterFile))
        param_docs[path.stem] = doc

    programs: dict[str, Program] = {}
    docs: dict[str, YamlDoc] = {}
    for path in sorted((root / "programs").glob("*.yaml")):
        doc = YamlDoc(path)
        program = _load_program(doc, groups)
        programs[program.id] = program
        docs[program.id] = doc
    if not programs:
        raise PolicyFileError(f"{root / 'programs'}: no programs")

    inter_doc = YamlDoc(root / "interactions.yaml")
    inter = _validate(inter_doc, model.InteractionsFile)
    referrals = tuple(
        _rule(inter_doc, r, "referral", None, ("referrals", i), groups) for i, r in enumerate(inter.referrals)
    )

    policy = PolicySet(
        policy_version(root),
        manifest,
        dict(facts),
        regions,
        parameters,
        programs,
        referrals,
        tuple(inter.exclusions),
        tuple(inter.combinations),
        dict(manifest.sources),
    )
    _check(policy, root, param_docs, inter_doc)
    return policy


def _contradictions(cond) -> list[str]:
    """Conjunctions of literal comparisons that no value satisfies (a rule that can never hold)."""
    found: list[str] = []
    if isinstance(cond, Cmp):
        return found
    for item in cond.items:
        found += _contradictions(item)
    if not isinstance(cond, All):
        return found
    allowed: dict[str, set] = {}
    low: dict[str, tuple] = {}
    high: dict[str, tuple] = {}
    for leaf in (c for c in cond.items if isinstance(c, Cmp)):
        if leaf.op in ("eq", "in"):
            values = set(leaf.rhs) if leaf.op == "in" else ({leaf.rhs.value} if isinstance(leaf.rhs, Lit) else None)
            if values is not None:
                allowed[leaf.fact] = allowed.get(leaf.fact, values) & values
        elif isinstance(leaf.rhs, Lit) and leaf.op in ("lt", "le", "gt", "ge"):
            bound = (leaf.rhs.value, leaf.op in ("le", "ge"))
            side = low if leaf.op in ("gt", "ge") else high
            current = side.get(leaf.fact)
            tighter = current is None or (bound[0] > current[0] if side is low else bound[0] < current[0])
            side[leaf.fact] = bound if tighter else current
    for fact, values in allowed.items():
        if not values:
            found.append(f"{fact} cannot take two different values at once")
    for fact in set(low) & set(high):
        (lo, lo_incl), (hi, hi_incl) = low[fact], high[fact]
        if lo > hi or (lo == hi and not (lo_incl and hi_incl)):
            found.append(f"no {fact} is both above {lo} and below {hi}")
    return found


def _check_facts(policy: PolicySet) -> list[str]:
    problems: list[str] = []
    for name, fact in policy.facts.items():
        for group, members in fact.groups.items():
            unknown = sorted(set(members) - set(fact.values or {}))
            if unknown:
                problems.append(f"fact {name}: group {group} has values the fact never takes: {unknown}")
        if fact.from_parameter is not None:
            param = policy.parameters.get(fact.from_parameter)
            if param is None or param.file.unit != "switch" or fact.type != "boolean":
                problems.append(f"fact {name}: from_parameter needs a boolean fact and a parameter of unit switch")
            elif fact.default is not None:
                problems.append(f"fact {name}: a fact read from a parameter has no default")
    return problems


def rule_parameters(rules: Iterable[Rule], policy: PolicySet) -> set[str]:
    """The parameters rules read, directly or through a fact read from a parameter."""
    names: set[str] = set()
    for rule in rules:
        refs = list(condition_refs(rule.when))
        for extra in (rule.amount, rule.multiply):
            if extra is not None:
                refs += list(operand_refs(extra))
        for ref in refs:
            if isinstance(ref, Param):
                names.add(ref.name)
            elif ref.name in policy.facts and policy.facts[ref.name].from_parameter:
                names.add(str(policy.facts[ref.name].from_parameter))
    return names


def _check_periods(policy: PolicySet, param_docs: dict[str, YamlDoc]) -> list[str]:
    """Each program's period lies in the policy's; every parameter is in force for every region
    from the policy's `complete_from`, or from the later start of a program that reads it; and on
    a program's first day each parameter it reads has a value somewhere (so the program can be
    decided from then where its values are known; elsewhere it is FAILED_PRECONDITION)."""
    problems: list[str] = []
    period = policy.manifest.period
    complete_from = period.complete_from or period.effective_from
    reading: dict[str, list[dt.date]] = {}  # parameter -> the starts of the programs that read it
    for program in policy.programs.values():
        own = program.period or period
        if not period.effective_from <= own.effective_from <= own.effective_until <= period.effective_until:
            problems.append(
                f"program {program.id}: period {own.effective_from} to {own.effective_until} "
                "is not inside the policy period"
            )
        for pid in sorted(n for n in rule_parameters(program.rules, policy) if n in policy.parameters):
            param = policy.parameters[pid]
            if not any(r.from_ <= own.effective_from for rows in param.file.values.values() for r in rows):
                problems.append(
                    f"{param_docs[pid].where()}: no value in any region on {own.effective_from}, "
                    f"the start of program {program.id}"
                )
            reading.setdefault(pid, []).append(max(own.effective_from, complete_from))
    required = {pid: min(reading.get(pid, [complete_from])) for pid in policy.parameters}
    for code in policy.regions.all_codes():
        region = policy.regions.resolve(code)
        for pid, param in policy.parameters.items():
            try:
                param.resolve(region, required[pid])
            except LookupError:
                problems.append(f"{param_docs[pid].where()}: no value in force for region {code} on {required[pid]}")
    return problems


def _check(policy: PolicySet, root: Path, param_docs: dict[str, YamlDoc], inter_doc: YamlDoc) -> None:
    """Whole-set checks: references, reachability, parameters in force, engine limits."""
    problems: list[str] = []
    seen_ids: set[str] = set()
    route_ids: dict[str, set[str]] = {p.id: {r.id for r in p.routes} for p in policy.programs.values()}
    for rule in policy.rules:
        where = f"rule {rule.id} ({rule.program or 'interactions'})"
        if rule.id in seen_ids:
            problems.append(f"{where}: rule id used twice")
        seen_ids.add(rule.id)
        refs = list(condition_refs(rule.when))
        for extra in (rule.amount, rule.multiply):
            if extra is not None:
                refs += list(operand_refs(extra))
        for ref in refs:
            if isinstance(ref, Fact) and ref.name not in policy.facts:
                problems.append(f"{where}: unknown fact {ref.name!r} (facts.yaml)")
            if isinstance(ref, Param) and ref.name not in policy.parameters:
                problems.append(f"{where}: unknown parameter {ref.name!r} (parameters/)")
        for leaf in leaves(rule.when):
            fact = policy.facts.get(leaf.fact)
            if fact is None or fact.type != "enum":
                continue
            literals = (
                leaf.rhs if isinstance(leaf.rhs, tuple) else ((leaf.rhs.value,) if isinstance(leaf.rhs, Lit) else ())
            )
            for value in literals:
                if value not in (fact.values or []):
                    # A comparison with a value the fact never takes makes the rule unreachable.
                    problems.append(
                        f"{where}: {leaf.fact} never equals {value!r} (values: {sorted(fact.values or {})})"
                    )
        for contradiction in _contradictions(rule.when):
            problems.append(f"{where}: can never hold: {contradiction}")
    for ex in policy.exclusions:
        if ex.program not in policy.programs or ex.excludes not in policy.programs:
            problems.append(f"interaction {ex.id}: unknown program")
        elif not set(ex.routes) <= route_ids[ex.program]:
            problems.append(f"interaction {ex.id}: unknown routes {sorted(set(ex.routes) - route_ids[ex.program])}")
    for combo in policy.combinations:
        for pid in combo.programs:
            if pid not in policy.programs:
                problems.append(f"interaction {combo.id}: unknown program {pid!r}")
    problems += _check_facts(policy)
    problems += _check_periods(policy, param_docs)
    tests_per_attr: dict[str, set] = {}
    for rule in policy.rules:
        for leaf in leaves(rule.when):
            tests_per_attr.setdefault(leaf.fact, set()).add((leaf.op, repr(leaf.rhs)))
    for attr, tests in tests_per_attr.items():
        if len(tests) > MAX_TESTS_PER_ATTRIBUTE:
            problems.append(
                f"fact {attr}: {len(tests)} distinct tests; the engine takes at most {MAX_TESTS_PER_ATTRIBUTE}"
            )
    if problems:
        raise PolicyFileError(f"policy set {root} is inconsistent:\n  " + "\n  ".join(problems))
