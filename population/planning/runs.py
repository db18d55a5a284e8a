"""Deciders for a policy set and a proposed one, and runs of a population over dates."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl

from population.backends import Backend, Decider, load_decider
from service.policy.loader import load_policies
from service.policy.overlay import materialize

# The one place the backend is chosen: columnar (the online decider, exact and slow, is the
# reference it is held equal to in tests/test_columnar.py).
BACKEND: Backend = "columnar"

PersonsFor = Callable[[dt.date], pl.DataFrame]


def decider(
    policies: Path,
    overlay: Path | None = None,
    workdir: Path | None = None,
    backend: Backend | None = None,
    client: Any = None,
) -> Decider:
    """The decider of `policies`, or of `policies` with `overlay` applied (written out as a policy
    directory with the overlay in it, so any backend loads it; its version hashes the overlay in).
    With a Dask `client`, the cluster's workers decide (population.cluster.ClusterDecider)."""
    if overlay is not None:
        load_policies(policies, overlay)  # a bad overlay is refused naming its own file, not the copy
        root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="proposed-policies-"))
        policies = materialize(policies, overlay, root / "policies")
    if client is not None:
        from population.cluster import ClusterDecider

        return ClusterDecider(client, policies, backend or BACKEND)
    return load_decider(policies, backend or BACKEND)


def decide_dates(decider: Decider, persons_for: PersonsFor, dates: Iterable[dt.date]) -> pl.DataFrame:
    """The decision tables of each date's population, one after another."""
    return pl.concat([decider.decide(persons_for(on), on) for on in dates], how="vertical_relaxed")


def year_end(year: int) -> dt.date:
    """The date that stands for a year: its last day (population/data/plan_indicators.yaml)."""
    return dt.date(year, 12, 31)


def year_ends(first: int, last: int) -> list[dt.date]:
    return [year_end(year) for year in range(first, last + 1)]


def month_starts(year: int) -> list[dt.date]:
    return [dt.date(year, month, 1) for month in range(1, 13)]
