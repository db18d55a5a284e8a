"""The per-chunk function of a population run, and the single-process runner around it.

`decide_batch(batch, dates, policies, backend)` takes an Arrow batch (or table) of persons as any
source gives them and returns an Arrow table of decisions (schema.decision_schema, the caller's
reference column first), one row per person and date. It needs nothing but its arguments: the
decider is loaded once per process and kept, so the same function runs here, on Dask workers, or
inside Spark's mapInArrow and Ray Data's map_batches.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow as pa

from service.engine.columnar import schema as s
from service.policy.loader import load_policies, policy_version

from .backends import Backend, Decider, load_decider
from .io import JobError, Sink, Source, person_table

BACKENDS: tuple[Backend, ...] = ("columnar", "online")
# Output columns the caller's reference column may not be named as (it would clash with them).
RESERVED = {s.WEIGHT, *s.decision_schema([])}

# Persons decided at a time by default: each call pays a set-up whatever its size (deciding the
# distinct combinations; the expressions are built once and kept): 0.025-0.1 s, by machine.
# Measured on a slower machine, one date: chunks of 100,000 decided 590,000 persons/s, of 250,000
# 760,000, of a million 890,000; a run of a million in chunks of 250,000 peaked at about 500 MB.
CHUNK = 250_000

_deciders: dict[tuple[str, str, str], Decider] = {}
T = TypeVar("T")


def decider_for(policies: str | Path, backend: Backend) -> Decider:
    """The decider for a policy directory, loaded once per process (and again when its files
    change: the key holds the policy version, the content hash of its files)."""
    if backend not in BACKENDS:
        raise JobError(f"--backend {backend}: unknown backend (columnar or online)")
    root = Path(policies).resolve()
    key = (str(root), policy_version(root), backend)
    if key not in _deciders:
        _deciders.clear()
        _deciders[key] = load_decider(root, backend)
    return _deciders[key]


def timed_next(items: Iterator[T]) -> tuple[T | None, float]:
    """The next item (None at the end) and the seconds it took to come (a run's read and decide
    times are the waits for its chunks and its tables)."""
    started = time.perf_counter()
    item = next(items, None)
    return item, time.perf_counter() - started


def check_reference(reference: str) -> None:
    if reference in RESERVED or "." in reference:
        raise JobError(f"--reference {reference}: an output column has that name; rename the key column")


def decide_batch(
    batch: pa.RecordBatch | pa.Table,
    dates: Iterable[dt.date],
    policies: str | Path,
    backend: Backend = "columnar",
    reference: str = s.REFERENCE,
) -> pa.Table:
    """The decisions for a batch of persons on each date (date after date): the caller's
    `reference` column carried through under its own name, the ID number never."""
    return pa.concat_tables(decide_each_date(batch, dates, policies, backend, reference))


def decide_each_date(
    batch: pa.RecordBatch | pa.Table,
    dates: Iterable[dt.date],
    policies: str | Path,
    backend: Backend = "columnar",
    reference: str = s.REFERENCE,
) -> Iterator[pa.Table]:
    """decide_batch's table date by date (the persons cast once), so that a run over many dates
    holds one chunk's decisions on one date at a time."""
    check_reference(reference)
    decider = decider_for(policies, backend)
    persons = person_table(batch, reference)
    if not persons.height:
        carried = {c: persons.schema[c] for c in (s.REFERENCE, s.WEIGHT) if c in persons.columns}
        yield _arrow(pl.DataFrame(schema={**carried, **s.decision_schema(decider.programs)}), reference)
        return
    # A decider that shares the date-independent work across dates (the columnar one) says so
    # with decide_each; any other is asked date by date.
    each = getattr(decider, "decide_each", None)
    frames = each(persons, dates) if each is not None else (decider.decide(persons, on) for on in dates)
    for frame in frames:
        yield _arrow(frame, reference)


def _arrow(decided: pl.DataFrame, reference: str) -> pa.Table:
    if reference != s.REFERENCE:
        decided = decided.rename({s.REFERENCE: reference})
    # Polars' own string and list types, as they are (string views): casting them to the older
    # offset ones costs a third of the decision time (io.plain does it for a consumer that needs them).
    return decided.to_arrow(compat_level=pl.CompatLevel.newest())


def policy_period(policies: str | Path) -> tuple[dt.date, dt.date]:
    try:
        period = load_policies(policies).manifest.period
    except Exception as exc:
        raise JobError(f"--policies {policies}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return period.effective_from, period.effective_until


def check_dates(dates: list[dt.date], policies: str | Path) -> None:
    first, last = policy_period(policies)
    outside = [d for d in dates if not first <= d <= last]
    if outside:
        raise JobError(
            f"{outside[0].isoformat()} is outside the policy period {first.isoformat()} to {last.isoformat()}; "
            "give dates inside it"
        )


@dataclass
class Stats:
    """What a run did and where its time went (seconds; on a cluster, read and decide are summed
    over the workers' tasks and `wait` is the client's time waiting for them)."""

    persons: int = 0
    rows: int = 0
    read: float = 0.0
    decide: float = 0.0
    write: float = 0.0
    wait: float = 0.0
    start_cluster: float = 0.0
    total: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"read {self.read:.1f} s", f"decide {self.decide:.1f} s", f"write {self.write:.1f} s"]
        if self.start_cluster:
            parts += [f"cluster start {self.start_cluster:.1f} s", f"waiting for workers {self.wait:.1f} s"]
        return f"{self.persons:,} persons, {self.rows:,} decision rows in {self.total:.1f} s ({', '.join(parts)})"


def run_local(
    source: Source,
    sink: Sink,
    dates: list[dt.date],
    policies: str | Path,
    backend: Backend,
    reference: str,
    chunk_size: int,
    advance: Callable[[int], None] = lambda rows: None,
) -> Stats:
    """Stream the source through decide_batch into the sink, one chunk in memory at a time."""
    stats = Stats()
    chunks = source.chunks(chunk_size)
    any_batch = False
    while True:
        batch, seconds = timed_next(chunks)
        stats.read += seconds
        if batch is None:
            break
        any_batch = True
        tables = decide_each_date(batch, dates, policies, backend, reference)
        while True:
            table, seconds = timed_next(tables)
            stats.decide += seconds
            if table is None:
                break
            written_at = time.perf_counter()
            sink.write(table)
            stats.write += time.perf_counter() - written_at
            stats.rows += table.num_rows
        stats.persons += batch.num_rows
        advance(batch.num_rows)
    if not any_batch:  # no rows at all: the output still gets its columns
        sink.write(decide_batch(empty_batch(source), dates, policies, backend, reference))
    return stats


def empty_batch(source: Source) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in source.columns})
