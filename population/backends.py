"""A decider for a policy directory: `decide(persons, on) -> decision table` and `version`.

The columnar backend is the one for populations; the online one (the service core, one person at a
time) is the reference it is held equal to.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal, Protocol

import polars as pl

Backend = Literal["columnar", "online"]


class Decider(Protocol):
    version: str
    programs: list[str]

    def decide(self, persons: pl.DataFrame, on: dt.date) -> pl.DataFrame: ...


def load_decider(policies: Path, backend: Backend = "columnar") -> Decider:
    if backend == "online":
        from .online import OnlineDecider

        return OnlineDecider.load(policies)
    from service.engine.columnar.engine import ColumnarDecider

    return ColumnarDecider.load(policies)
