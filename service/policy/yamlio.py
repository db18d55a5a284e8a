"""YAML reading for policy files: exact decimals, and a line number for every path.

Floats are read as Decimal from their text so that a written ratio keeps its exact value (money is exact), and each
mapping key and sequence item remembers its line so that validation errors name file and line.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

# A path into a YAML document: mapping keys and sequence indexes.
Loc = tuple[str | int, ...]


class PolicyFileError(ValueError):
    """A policy file is unreadable or invalid; the message names file and line."""


# libyaml's loader when PyYAML has it (5x faster), else the pure-Python one: the base is chosen at import.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # (a dynamic base)
    pass


def _decimal(loader: yaml.BaseLoader, node: yaml.ScalarNode) -> Decimal:
    return Decimal(loader.construct_scalar(node).replace("_", ""))


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def _paths(node: yaml.Node, path: Loc, out: dict[Loc, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            out[child] = key.start_mark.line + 1
            _paths(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _paths(item, path + (i,), out)


class YamlDoc:
    """A parsed YAML file with the line of every path in it."""

    def __init__(self, path: Path):
        self.path = path
        text = path.read_text(encoding="utf-8")
        try:
            node = yaml.compose(text, Loader=_Loader)
            self.data: Any = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise PolicyFileError(f"{path}: {exc}") from exc
        self.lines: dict[Loc, int] = {}
        if node is not None:
            _paths(node, (), self.lines)

    def line_of(self, loc: Loc) -> int:
        loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def where(self, loc: Loc = ()) -> str:
        return f"{self.path}:{self.line_of(loc)}"


def to_date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
