"""Small changes to the policy files, one at a time, found by walking the YAML node trees.

Nothing here knows today's file layout: the operators look at the shape of the data (a mapping key
that is a comparison operator, a number, a date, a boolean, a sequence item, a table keyed by region
codes, a fact's default beside its enum values), so they keep working when the files change.
Each mutant is the whole text of one file, re-serialized from the changed node tree.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

INT, FLOAT, BOOL, DATE, STR = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "timestamp", "str"))
# Each operator's neighbours: the change a slip of the pen would make.
NEIGHBOURS = {"lt": ("le",), "le": ("lt",), "gt": ("ge",), "ge": ("gt",), "eq": ("ne",), "ne": ("eq",)}
COMBINATORS = {"all": "any", "any": "all"}
REGION_CODE = re.compile(r"^\d{6}$")
SET_OPERATORS = {"in"}  # the order of a set's items means nothing: never swapped


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the policy directory
    line: int
    kind: str  # operator, combinator, number, date, boolean, default, drop-item, drop-entry, swap
    where: str  # the path in the file, e.g. values/330100/3/value
    change: str  # what changed, e.g. "917 -> 918"
    text: str  # the file's whole text with the change

    @property
    def label(self) -> str:
        return f"{self.file}:{self.line} {self.where}: {self.change}"


def _load(text: str) -> yaml.Node | None:
    """The text's node tree; None for a file with no document."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _dump(node: yaml.Node) -> str:
    return yaml.serialize(node, Dumper=yaml.SafeDumper, allow_unicode=True, width=200)


def _scalar_text(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else f"<{type(node).__name__}>"


def _step(text: str, tag: str) -> list[str]:
    """A number one unit up and down in its last written digit (917: 916, 918; 1.5: 1.4, 1.6)."""
    if tag == INT:
        n = int(text.replace("_", ""))
        return [str(n - 1), str(n + 1)]
    d = Decimal(text.replace("_", ""))
    unit = Decimal(1).scaleb(d.as_tuple().exponent)  # type: ignore[arg-type]
    return [str(d - unit), str(d + unit)]


# An edit finds its node again in a freshly composed tree (by its path) and changes it.
Edit = Callable[[yaml.Node], None]


def _at(root: yaml.Node, path: tuple) -> yaml.Node:
    node = root
    for step in path:
        node = node.value[step][1] if isinstance(node, yaml.MappingNode) else node.value[step]
    return node


def mutants(root: Path, skip: tuple[str, ...] = ("tests",)) -> Iterator[Mutant]:
    """Every mutant of every YAML file under root (files under `skip` directories are not policy)."""
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        yield from file_mutants(path.read_text(encoding="utf-8"), rel.as_posix())


def file_mutants(text: str, name: str) -> Iterator[Mutant]:
    tree = _load(text)
    if tree is None:
        return
    seen: set[int] = set()  # an anchored node shared by aliases is one place in the text: mutated once
    edits: list[tuple[int, str, str, str, tuple, Edit]] = []

    def add(node: yaml.Node, kind: str, where: list[str], change: str, path: tuple, edit: Edit) -> None:
        edits.append((node.start_mark.line + 1, kind, "/".join(where), change, path, edit))

    def walk(node: yaml.Node, path: tuple, where: list[str], key: str | None) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            _scalar(node, path, where, add)
        elif isinstance(node, yaml.SequenceNode):
            _sequence(node, path, where, key, add)
            for i, item in enumerate(node.value):
                walk(item, path + (i,), where + [str(i)], None)
        elif isinstance(node, yaml.MappingNode):
            _mapping(node, path, where, add)
            for i, (k, v) in enumerate(node.value):
                walk(v, path + (i,), where + [_scalar_text(k)], _scalar_text(k))

    walk(tree, (), [], None)
    for line, kind, where, change, path, edit in edits:
        fresh = _load(text)
        assert fresh is not None  # the same text gave `tree`
        edit(_at(fresh, path))
        yield Mutant(name, line, kind, where, change, _dump(fresh))


def _scalar(node: yaml.ScalarNode, path: tuple, where: list[str], add) -> None:
    def set_value(value: str, tag: str | None = None) -> Edit:
        def edit(n: yaml.Node) -> None:
            n.value = value
            if tag:
                n.tag = tag

        return edit

    if node.tag in (INT, FLOAT):
        for value in _step(node.value, node.tag):
            add(node, "number", where, f"{node.value} -> {value}", path, set_value(value))
    elif node.tag == DATE and re.match(r"^\d{4}-\d{2}-\d{2}$", node.value):
        day = dt.date.fromisoformat(node.value)
        for delta in (-1, 1):
            value = (day + dt.timedelta(days=delta)).isoformat()
            add(node, "date", where, f"{node.value} -> {value}", path, set_value(value))
    elif node.tag == BOOL:
        value = "false" if node.value.lower() == "true" else "true"
        add(node, "boolean", where, f"{node.value} -> {value}", path, set_value(value))


def _describe(item: yaml.Node, i: int) -> str:
    """A sequence item as a reader finds it: a scalar as written, a rule by its id, a clause by its fact."""
    if isinstance(item, yaml.ScalarNode):
        return item.value
    if isinstance(item, yaml.MappingNode):
        fields = {_scalar_text(k): v for k, v in item.value}
        for key in ("id", "fact", "param", "from"):
            if isinstance(fields.get(key), yaml.ScalarNode):
                return f"{key} {fields[key].value}"
        return "clause " + "/".join(fields)
    return f"item {i}"


def _sequence(node: yaml.SequenceNode, path: tuple, where: list[str], key: str | None, add) -> None:
    for i, item in enumerate(node.value):

        def drop(n: yaml.Node, i: int = i) -> None:
            del n.value[i]

        shown = _describe(item, i)
        add(item, "drop-item", where, f"drop {shown}", path, drop)
    scalars = all(isinstance(item, yaml.ScalarNode) for item in node.value)
    if scalars and key not in SET_OPERATORS:
        for i in range(len(node.value) - 1):

            def swap(n: yaml.Node, i: int = i) -> None:
                n.value[i], n.value[i + 1] = n.value[i + 1], n.value[i]

            a, b = node.value[i].value, node.value[i + 1].value
            add(node.value[i], "swap", where, f"swap {a} and {b}", path, swap)


def _mapping(node: yaml.MappingNode, path: tuple, where: list[str], add) -> None:
    keys = [_scalar_text(k) for k, _ in node.value]
    for i, (k, v) in enumerate(node.value):
        name = _scalar_text(k)

        def rename(n: yaml.Node, i: int = i, to: str = "") -> None:
            n.value[i][0].value = to

        for to in NEIGHBOURS.get(name, ()):
            add(k, "operator", where, f"{name} -> {to}", path, functools.partial(rename, i=i, to=to))
        if name in COMBINATORS:
            to = COMBINATORS[name]
            add(k, "combinator", where, f"{name} -> {to}", path, functools.partial(rename, i=i, to=to))

        def drop(n: yaml.Node, i: int = i) -> None:
            del n.value[i]

        # A fact's default: taken away (the fact becomes unstated), and for an enum each other value.
        if name == "default" and isinstance(v, yaml.ScalarNode):
            add(k, "default", where, "drop the default", path, drop)
            values = next((vv for kk, vv in node.value if _scalar_text(kk) == "values"), None)
            if isinstance(values, yaml.MappingNode):
                for other in (_scalar_text(x) for x, _ in values.value):
                    if other != v.value:

                        def set_default(n: yaml.Node, i: int = i, other: str = other) -> None:
                            n.value[i][1].value = other

                        add(v, "default", where + ["default"], f"{v.value} -> {other}", path, set_default)
        # A region's own entry in a table keyed by region codes (dated values, an alias): dropped,
        # the region falls back to its city or the province, or the old code stops resolving.
        if REGION_CODE.match(name) and all(REGION_CODE.match(x) for x in keys):
            own_values = isinstance(v, yaml.SequenceNode)
            alias = isinstance(v, yaml.MappingNode) and any(_scalar_text(x) == "to" for x, _ in v.value)
            if own_values or alias:
                add(k, "drop-entry", where, f"drop {name}", path, drop)
