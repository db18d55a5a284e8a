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
from .overlay import OVERLAY_DIR, apply, file_digest, load_overlay, overlaid_version
from .policyset import Division, Parameter, PolicySet, Program, RegionError, Regions, Rule
from .yamlio import PolicyFileError, YamlDoc

M = TypeVar("M", bound=BaseModel)
_REGION = re.compile(r"^\d{6}$")
# Limits of the durable-rules engine that crash or hang it (see the design notes); the
# 256-rules-per-condition limit is handled by the backend, which spreads rules over groups.
MAX_TESTS_PER_ATTRIBUTE = 511


def policy_version(root: Path) -> str:
    """Content hash of the policy files that decide (test cases excluded), with the overlays in
    `overlays/` folded in after it (overlay.overlaid_version)."""
    digest = hashlib.sha256()
    skip = {"tests", OVERLAY_DIR}
    for path in sorted(p for p in root.rglob("*.yaml") if not skip & set(p.relative_to(root).parts)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    overlays = root / OVERLAY_DIR
    proposals = sorted(overlays.rglob("*.yaml")) if overlays.is_dir() else []
    return overlaid_version(digest.hexdigest()[:16], [file_digest(p) for p in proposals])


def _validate(doc: YamlDoc, cls: type[M]) -> M:
    try:
        return cls.model_validate(doc.data)
    except ValidationError as exc:
        problems = [f"{doc.where(tuple(e['loc']))}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise PolicyFileError("invalid policy file:\n  " + "\n  ".join(problems)) from None


Groups = dict[str, dict[str, list[str]]]  # fact -> group name -> enum values


def _rule(
    doc: YamlDoc, raw: model.Rule, kind: str, program: str | None, loc: tuple[str | int, ...], groups: Groups
) -> Rule:
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


def _load_regions(doc: YamlDoc) -> Regions:
    """The regions file, with each county's days of use derived from the aliases and checked."""
    rf = _validate(doc, model.RegionsFile)
    problems: list[str] = []
    codes = [rf.province.code, *rf.cities, *rf.counties, *rf.aliases, *(a.to for a in rf.aliases.values())]
    for code in codes:
        if not _REGION.fullmatch(code):
            problems.append(f"{doc.where()}: region code {code!r} is not six digits")
    for prefix in rf.other_provinces:
        if not re.fullmatch(r"[0-9]{2}", prefix) or prefix == rf.province.code[:2]:
            problems.append(f"{doc.where(('other_provinces', prefix))}: {prefix!r} is not another province's prefix")
    for city in rf.cities:
        if city[:2] != rf.province.code[:2] or city[4:] != "00":
            problems.append(f"{doc.where(('cities', city))}: {city} is not a city code of the province")
    valid_from: dict[str, dt.date] = {}
    before: dict[str, str] = {}
    for code, county in rf.counties.items():
        where = doc.where(("counties", code))
        if code[:4] + "00" not in rf.cities or code[4:] == "00":
            problems.append(f"{where}: {code} is not a county of a listed city")
        if (county.from_ is None) != (county.part_of_before is None):
            problems.append(f"{where}: `from` and `part_of_before` go together")
        elif county.from_ is not None and county.part_of_before is not None:
            valid_from[code], before[code] = county.from_, county.part_of_before
    for old, alias in rf.aliases.items():
        where = doc.where(("aliases", old))
        if old not in rf.counties or alias.to not in rf.counties or old == alias.to:
            problems.append(f"{where}: an alias joins two different listed counties")
        elif alias.kind == "renamed":
            if alias.to in valid_from:
                problems.append(f"{where}: {alias.to} already has a first day")
            valid_from[alias.to], before[alias.to] = alias.since, old
    for code in valid_from:
        if before[code] not in rf.counties:
            problems.append(f"{doc.where(('counties', code))}: {before[code]} is not a listed county")
    for old, alias in rf.aliases.items():  # a code must be in use on the day it takes over
        if alias.kind == "merged" and valid_from.get(alias.to, alias.since) > alias.since:
            problems.append(f"{doc.where(('aliases', old))}: {alias.to} is not in use on {alias.since}")
    if problems:
        raise PolicyFileError("invalid regions file:\n  " + "\n  ".join(problems))
    divisions = {
        code: Division(
            code,
            model.Region(zh=county.zh, en=county.en),
            valid_from.get(code),
            rf.aliases[code].since - dt.timedelta(days=1) if code in rf.aliases else None,
            before.get(code),
        )
        for code, county in rf.counties.items()
    }
    province = model.Region(zh=rf.province.zh, en=rf.province.en)
    regions = Regions(
        rf.province.code, province, dict(rf.cities), divisions, dict(rf.aliases), dict(rf.other_provinces)
    )
    # Every code resolves on each side of every change (the changes form no cycle).
    changes = set(valid_from.values()) | {a.since for a in rf.aliases.values()}
    for code in divisions:
        for day in sorted(changes | {c - dt.timedelta(days=1) for c in changes}):
            try:
                regions.resolve(code, day)
            except RegionError as exc:
                raise PolicyFileError(f"{doc.where(('counties', code))}: {exc}") from None
    return regions


def load_policies(root: str | Path, overlay: str | Path | None = None) -> PolicySet:
    """The policy set in `root`, with its own `overlays/` applied, then `overlay` (a proposal: a YAML
    file or directory, overlay.py) whose hash then joins the version."""
    root = Path(root)
    if not (root / "policy.yaml").is_file():
        raise PolicyFileError(f"{root}: not a policy directory (no policy.yaml)")
    manifest = _validate(YamlDoc(root / "policy.yaml"), model.Manifest)
    facts = _validate(YamlDoc(root / "facts.yaml"), model.FactsFile).facts
    groups: Groups = {name: fact.groups for name, fact in facts.items() if fact.groups}
    regions = _load_regions(YamlDoc(root / "regions.yaml"))

    parameters: dict[str, Parameter] = {}
    param_docs: dict[str, YamlDoc] = {}
    for path in sorted((root / "parameters").rglob("*.yaml")):
        doc = YamlDoc(path)
        if path.stem in parameters:
            raise PolicyFileError(f"{path}: parameter {path.stem} is defined twice ({param_docs[path.stem].path})")
        parameters[path.stem] = Parameter(path.stem, _validate(doc, model.ParameterFile))
        param_docs[path.stem] = doc
    own = root / OVERLAY_DIR  # a proposed set written out as a directory (overlay.materialize)
    if own.is_dir() and any(own.rglob("*.yaml")):
        parameters = apply(load_overlay(own), parameters, regions, manifest.period)
    proposal = load_overlay(overlay) if overlay else None
    if proposal:
        parameters = apply(proposal, parameters, regions, manifest.period)

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

    version = policy_version(root)
    policy = PolicySet(
        overlaid_version(version, proposal.digests) if proposal else version,
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
        for pid, param in policy.parameters.items():
            try:
                param.resolve(policy.regions.resolve(code, required[pid]), required[pid])
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
    known = set(policy.regions.all_codes())
    for pid, param in policy.parameters.items():
        for code in param.file.values:
            if code not in known:
                problems.append(f"{param_docs[pid].where(('values', code))}: unknown region {code} (regions.yaml)")
    problems += _check_facts(policy)
    problems += _check_periods(policy, param_docs)
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
