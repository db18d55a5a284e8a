"""Load a policy directory: validate every file, parse rules, check the whole set, hash it.

Nothing here knows a program: everything comes from the files. Any problem raises
PolicyFileError naming the file and line, and nothing half-loaded is ever returned.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import model
from .expressions import (
    All,
    Cmp,
    Cond,
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


def _rule(doc: YamlDoc, raw: model.Rule, kind: str, program: str | None, loc: tuple[str | int, ...]) -> Rule:
    try:
        when = parse_condition(raw.when, loc + ("when",))
        amount = parse_operand(raw.amount, loc + ("amount",)) if isinstance(raw, model.Route) else None
        multiply = parse_operand(raw.multiply, loc + ("multiply",)) if isinstance(raw, model.Adjustment) else None
    except ExpressionError as exc:
        raise PolicyFileError(f"{doc.where(exc.loc)}: rule {raw.id}: {exc}") from None
    return Rule(raw.id, kind, program, raw.text, raw.citation, when, amount, multiply)


def _load_program(doc: YamlDoc) -> Program:
    f = _validate(doc, model.ProgramFile)
    if doc.path.stem != f.id:
        raise PolicyFileError(f"{doc.where(('id',))}: program id {f.id!r} must match its file name")

    def rules(raws: Iterable[model.Rule], section: str, kind: str) -> tuple[Rule, ...]:
        return tuple(_rule(doc, r, kind, f.id, (section, i)) for i, r in enumerate(raws))

    return Program(
        f.id,
        f.name,
        f.citation,
        f.rounding,
        rules(f.conditions, "conditions", "condition"),
        rules(f.exclusions, "exclusions", "exclusion"),
        rules(f.routes, "routes", "route"),
        rules(f.adjustments, "adjustments", "adjustment"),
    )


def load_policies(root: str | Path) -> PolicySet:
    root = Path(root)
    if not (root / "policy.yaml").is_file():
        raise PolicyFileError(f"{root}: not a policy directory (no policy.yaml)")
    manifest = _validate(YamlDoc(root / "policy.yaml"), model.Manifest)
    facts = _validate(YamlDoc(root / "facts.yaml"), model.FactsFile).facts
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
        program = _load_program(doc)
        programs[program.id] = program
        docs[program.id] = doc
    if not programs:
        raise PolicyFileError(f"{root / 'programs'}: no programs")

    inter_doc = YamlDoc(root / "interactions.yaml")
    inter = _validate(inter_doc, model.InteractionsFile)
    referrals = tuple(_rule(inter_doc, r, "referral", None, ("referrals", i)) for i, r in enumerate(inter.referrals))

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
        {source: text for source, text in manifest.sources.items()},  # Literal keys, read as str
    )
    _check(policy, root, param_docs, inter_doc)
    return policy


def _contradictions(cond: Cond) -> list[str]:
    """Conjunctions of literal comparisons that no value satisfies (a rule that can never hold)."""
    found: list[str] = []
    if isinstance(cond, Cmp):
        return found
    for item in cond.items:
        found += _contradictions(item)
    if not isinstance(cond, All):
        return found
    allowed: dict[str, set[Any]] = {}
    low: dict[str, tuple[Any, bool]] = {}
    high: dict[str, tuple[Any, bool]] = {}
    for leaf in (c for c in cond.items if isinstance(c, Cmp)):
        if leaf.op in ("eq", "in"):
            values = (
                set(leaf.rhs)
                if isinstance(leaf.rhs, tuple)
                else ({leaf.rhs.value} if isinstance(leaf.rhs, Lit) else None)
            )
            if values is not None:
                allowed[leaf.fact] = allowed.get(leaf.fact, values) & values
        elif isinstance(leaf.rhs, Lit) and leaf.op in ("lt", "le", "gt", "ge"):
            bound = (leaf.rhs.value, leaf.op in ("le", "ge"))
            side = low if leaf.op in ("gt", "ge") else high
            current = side.get(leaf.fact)
            tighter = current is None or (bound[0] > current[0] if side is low else bound[0] < current[0])
            if tighter:
                side[leaf.fact] = bound
    for fact, values in allowed.items():
        if not values:
            found.append(f"{fact} cannot take two different values at once")
    for fact in set(low) & set(high):
        (lo, lo_incl), (hi, hi_incl) = low[fact], high[fact]
        if lo > hi or (lo == hi and not (lo_incl and hi_incl)):
            found.append(f"no {fact} is both above {lo} and below {hi}")
    return found


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
    start = policy.manifest.period.effective_from
    for code in policy.regions.all_codes():
        region = policy.regions.resolve(code)
        for pid, param in policy.parameters.items():
            try:
                param.resolve(region, start)
            except LookupError:
                problems.append(f"{param_docs[pid].where()}: no value in force for region {code} on {start}")
    tests_per_attr: dict[str, set[tuple[str, str]]] = {}
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
