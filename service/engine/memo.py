"""Bounded memo tables for the hot path: each keeps memory flat by starting over when full.

Explanations are shared objects: one RuleOutcome per distinct set of values a rule reads, one
tuple of them per distinct way a program was decided. What is derived from such an object (its
reply bytes, its audit rule ids) is memoized by the object's identity; the entry holds the object,
so its id cannot be reused by another object while the entry exists.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Memo(dict[Hashable, Any]):
    """A dict that empties itself when it reaches `size` entries."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key: Hashable, value: T) -> T:
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value


class IdentityMemo:
    """`compute(obj)` once per object, by identity, at most `size` entries."""

    def __init__(self, size: int):
        self._entries: Memo = Memo(size)

    def get(self, obj: Any, compute: Callable[[Any], T]) -> T:
        found: tuple[Any, T] | None = self._entries.get(id(obj))
        if found is not None and found[0] is obj:
            return found[1]
        return self._entries.put(id(obj), (obj, compute(obj)))[1]
