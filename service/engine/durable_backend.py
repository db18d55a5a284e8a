"""Compile the backend-neutral rules to a durable-rules ruleset and match facts against it.

durable-rules is used as a stateless matcher through its C module (`durable_rules_engine`):
the default Host runs background timer threads that crash or steal firings under threads (see
the design notes). The C module is process-global and never releases the GIL, so one lock guards
every call; the service scales with worker processes, not threads.

Each evaluation asserts the person as one fact on one reused session, reads every rule that
fired, and retracts the fact. A catch-all rule makes every fact fire something (a fact that fires
nothing can corrupt a later state delete).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import durable_rules_engine as dre

from ..policy.expressions import AddMonths, All, AnyOf, Cond, Fact, Lit, Mul, Operand, Param, leaves
from ..policy.policyset import Rule

ENGINE_LOCK = threading.Lock()
# Every rule tests a marker attribute, so rules only ever match our facts (a rule of "absent"
# tests alone would match the engine's own state). durable-rules fails with more than 256 rules
# on one condition, so rules are spread over several marker attributes of at most RULES_PER_MARKER.
MARKER_PREFIX = "rule_group_"
ALWAYS = MARKER_PREFIX + "always"  # on every message: the catch-all rule's marker
RULES_PER_MARKER = 200
CATCH_ALL = "catch_all"
_SID = "0"
_names = itertools.count()

_CMP = {"lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte", "ne": "$neq"}


class EngineError(RuntimeError):
    """durable-rules failed; the state has been reset."""


class EngineClosed(EngineError):
    """The ruleset was replaced by a reload; evaluate again with the current one."""


def engine_value(value: Any) -> Any:
    """A value as the C engine compares it: integers stay integers (fen, yyyymmdd)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Slots:
    """Names in the message for parameters and computed operands (products, date shifts)."""

    def __init__(self) -> None:
        self.computed: dict[Operand, str] = {}

    def ref(self, op: Operand) -> Any:
        if isinstance(op, Lit):
            return engine_value(op.value)
        if isinstance(op, Fact):
            return {"$m": op.name}
        if isinstance(op, Param):
            return {"$m": "p__" + op.name}
        assert isinstance(op, (Mul, AddMonths))
        name = self.computed.setdefault(op, f"x__{len(self.computed)}")
        return {"$m": name}


def _compile(cond: Cond, slots: Slots) -> dict[str, Any]:
    if isinstance(cond, All):
        return {"$and": [_compile(c, slots) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"$or": [_compile(c, slots) for c in cond.items]}
    if isinstance(cond.rhs, tuple):  # op "in": a tuple of literals
        tests = [{cond.fact: engine_value(v)} for v in cond.rhs]
        return tests[0] if len(tests) == 1 else {"$or": tests}
    rhs = slots.ref(cond.rhs)
    test = {cond.fact: rhs} if cond.op == "eq" else {_CMP[cond.op]: {cond.fact: rhs}}
    if isinstance(rhs, dict):
        # A reference to an absent attribute does not fail a test in durable-rules: guard it, so
        # that a missing fact or parameter leaves the rule unmatched (unknown, never true).
        return {"$and": [{"$ex": {rhs["$m"]: 1}}, test]}
    return test


def compile_ruleset(
    groups: Iterable[tuple[str, Iterable[Rule]]],
) -> tuple[dict[str, Any], dict[str, str], Slots, dict[str, list[str]]]:
    """The durable-rules definition, the engine name -> rule id table, the slot table, and each
    group's marker attributes. Every rule tests its group's marker first, so a message without a
    group's markers skips that group's rules at their first test."""
    slots = Slots()
    definition: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    markers: dict[str, list[str]] = {}
    count = itertools.count()
    for group, rules in groups:
        rules = list(rules)
        if group in markers:
            raise EngineError(f"two rule groups are named {group!r}")
        markers[group] = []
        for start in range(0, len(rules), RULES_PER_MARKER):
            marker = f"{MARKER_PREFIX}{len(markers) - 1}_{start // RULES_PER_MARKER}"
            markers[group].append(marker)
            for rule in rules[start : start + RULES_PER_MARKER]:
                name = f"r{next(count)}"
                names[name] = rule.id
                definition[name] = {"all": [{"m": {"$and": [{marker: 1}, _compile(rule.when, slots)]}}]}
    definition[CATCH_ALL] = {"all": [{"m": {ALWAYS: 1}}]}
    return definition, names, slots, markers


class DurableMatcher:
    """One compiled ruleset; `match` says which rules a message satisfies.

    Rules come in named groups (one per program, and the referrals): a match can be asked for some
    groups only, and the engine then spends nothing on the others' rules."""

    def __init__(self, groups: Iterable[tuple[str, Iterable[Rule]]], label: str):
        groups = [(group, list(rules)) for group, rules in groups]
        facts = {leaf.fact for _, rules in groups for rule in rules for leaf in leaves(rule.when)}
        if any(f.startswith(MARKER_PREFIX) for f in facts):
            raise EngineError(f"fact names starting {MARKER_PREFIX!r} are reserved")
        self.definition, self._names, self.slots, self._group_markers = compile_ruleset(groups)
        self._markers: dict[tuple[str, ...], str] = {}
        self._all_groups = tuple(self._group_markers)
        # A unique ruleset name per compile, so a reload never collides with the version serving.
        self.name = f"{label}#{next(_names)}"
        self._closed = False
        with ENGINE_LOCK:
            self._handle = dre.create_ruleset(self.name, json.dumps(self.definition, ensure_ascii=False))

    def fixed_part(self, message: dict[str, Any]) -> str:
        """The JSON members of a message part that many people share (a region's parameters on a
        date), with the ids every fact carries: encoded once, reused by `match`."""
        return json.dumps({**message, "sid": _SID, "id": "person"}, ensure_ascii=False)[1:-1]

    def markers(self, groups: tuple[str, ...] | None = None) -> str:
        """The JSON members that let the named groups' rules (all groups by default) match."""
        groups = self._all_groups if groups is None else groups
        found = self._markers.get(groups)
        if found is None:
            members = {ALWAYS: 1, **{m: 1 for group in groups for m in self._group_markers[group]}}
            found = self._markers[groups] = json.dumps(members)[1:-1]
        return found

    def match(self, message: dict[str, Any], fixed: str | None = None, markers: str | None = None) -> set[str]:
        """The rules that `message`, with the `fixed_part` members, satisfies, among the groups
        whose `markers` it carries (all groups by default)."""
        fixed = self.fixed_part({}) if fixed is None else fixed
        markers = self.markers() if markers is None else markers
        head = json.dumps(message, ensure_ascii=False)[:-1] if message else "{"
        payload = f"{head}, {fixed}, {markers}}}" if message else f"{{{fixed}, {markers}}}"
        fired: set[str] = set()
        with ENGINE_LOCK:
            if self._closed:
                raise EngineClosed(self.name)
            try:
                result = dre.assert_fact(self._handle, payload)
                state = result[1]
                action = dre.start_action_for_state(self._handle, state)
                text = action[1] if action else None
                while text:
                    fired.add(self._rule_name(text))
                    text = dre.complete_and_start_action(self._handle, state)
                dre.retract_fact(self._handle, payload)
            except BaseException as exc:
                self._reset()
                raise EngineError(f"durable-rules failed: {exc}") from exc
        if CATCH_ALL not in fired:
            raise EngineError("the catch-all rule did not fire")
        return {self._names[n] for n in fired if n != CATCH_ALL}

    def _rule_name(self, text: str) -> str:
        # An action message is {"<rule>": {"m": <the whole fact>}}: read the name without
        # decoding the fact again (that decode was most of the engine's time).
        if text.startswith('{"'):
            name = text[2 : text.find('"', 2)]
            if name in self._names or name == CATCH_ALL:
                return name
        (name,) = json.loads(text)
        return str(name)

    def _reset(self) -> None:
        with contextlib.suppress(BaseException):  # the state may not exist; nothing more to clean
            dre.delete_state(self._handle, _SID)

    def close(self) -> None:
        with ENGINE_LOCK:
            if self._closed:
                return
            self._closed = True
            self._reset()
            dre.delete_ruleset(self._handle)
