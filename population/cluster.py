"""The same per-chunk function on dask.distributed: a LocalCluster of N worker processes, or an
existing scheduler.

A Parquet input is split into pieces (row groups of one file, a chunk's rows or fewer) and each
task reads its own (the workers need the input's path: on a remote cluster, a shared file system)
and decides it with decide_batch, chunk by chunk; another input is read here and its chunks are
sent, already cast and without ID numbers. Results come back as Arrow and are written here in the
order the pieces were submitted, at most a few in flight per worker, so the output is the
single-process run's, row for row, and memory stays bounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from service.engine.columnar import schema as s

from .backends import Backend
from .io import JobError, ParquetDirectorySink, ParquetPiece, ParquetSource, Sink, Source, person_table
from .job import CHUNK, Stats, decide_batch, decide_each_date, decider_for, empty_batch, timed_next

_LOCAL = re.compile(r"^local:(\d+)$")


def check_cluster(spec: str) -> None:
    match = _LOCAL.match(spec)
    if match and int(match.group(1)) >= 1 or spec.startswith("tcp://"):
        return
    raise JobError(f"--cluster {spec}: give local:N (N worker processes) or tcp://HOST:PORT (a scheduler)")


@contextlib.contextmanager
def connect(spec: str) -> Iterator[Any]:
    """A dask.distributed Client for `local:N` (a LocalCluster of N single-threaded worker
    processes, stopped at the end) or `tcp://HOST:PORT` (an existing scheduler)."""
    from dask.distributed import Client, LocalCluster

    check_cluster(spec)
    match = _LOCAL.match(spec)
    if match:
        cluster = LocalCluster(
            n_workers=int(match.group(1)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(spec, timeout=30)
    except OSError as exc:
        raise JobError(f"--cluster {spec}: cannot reach the scheduler ({exc})") from None
    with client:
        yield client


@dataclass
class Done:
    """A task's result: its decisions (None when the task wrote them itself) and its seconds."""

    table: pa.Table | None
    rows: int
    read: float = 0.0
    decide: float = 0.0
    write: float = 0.0


def decide_piece(
    piece: ParquetPiece,
    dates: list[dt.date],
    policies: str,
    backend: Backend,
    reference: str,
    chunk_size: int,
    part: str | None = None,
) -> Done:
    """A worker's task: read one piece (row groups of one file) and decide it chunk by chunk and
    date by date (as the single-process runner does, so in the same order); the decisions are
    returned, or written to the Parquet file `part` when the output is a directory (then only one
    chunk's decisions on one date are held at a time)."""
    done = Done(None, 0)
    tables: list[pa.Table] = []
    writer: pq.ParquetWriter | None = None
    chunks = piece.batches(chunk_size)
    batches = 0
    while True:
        batch, seconds = timed_next(chunks)
        done.read += seconds
        if batch is None and batches:
            break
        batches += 1
        # A piece with no rows still gives its columns.
        decided = decide_each_date(
            empty_batch_of(piece) if batch is None else batch, dates, policies, backend, reference
        )
        while True:
            table, seconds = timed_next(decided)
            done.decide += seconds
            if table is None:
                break
            done.rows += table.num_rows
            if part is None:
                tables.append(table)
                continue
            started = time.perf_counter()
            writer = writer or pq.ParquetWriter(part, table.schema)
            writer.write_table(table.cast(writer.schema))
            done.write += time.perf_counter() - started
        if batch is None:
            break
    if writer is not None:
        writer.close()
    if part is None:
        done.table = pa.concat_tables(tables)
    return done


def empty_batch_of(piece: ParquetPiece) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in piece.columns})


def decide_persons(persons: pa.Table, dates: list[dt.date], policies: str, backend: Backend) -> Done:
    """A worker's task for a chunk read by the client (already a person table)."""
    started = time.perf_counter()
    table = decide_batch(persons, dates, policies, backend, s.REFERENCE)
    return Done(table, table.num_rows, decide=time.perf_counter() - started)


def run_cluster(
    client: Any,
    source: Source,
    sink: Sink,
    dates: list[dt.date],
    policies: str,
    backend: Backend,
    reference: str,
    chunk_size: int,
    advance: Callable[[int], None] = lambda rows: None,
) -> Stats:
    stats = Stats()
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = 2 * workers
    pending: deque[tuple[Any, int]] = deque()
    policies = str(Path(policies).resolve())

    def collect() -> None:
        future, persons = pending.popleft()
        started = time.perf_counter()
        done: Done = future.result()
        stats.wait += time.perf_counter() - started
        stats.read += done.read
        stats.decide += done.decide
        stats.write += done.write
        if done.table is not None:
            table = done.table
            if reference != s.REFERENCE and s.REFERENCE in table.column_names:
                table = table.rename_columns([reference if c == s.REFERENCE else c for c in table.column_names])
            started = time.perf_counter()
            sink.write(table)
            stats.write += time.perf_counter() - started
        stats.persons += persons
        stats.rows += done.rows
        advance(persons)

    submitted = 0
    for future, persons in _submit(client, source, sink, dates, policies, backend, reference, chunk_size, stats):
        submitted += 1
        pending.append((future, persons))
        while len(pending) >= limit:
            collect()
    while pending:
        collect()
    if not submitted:  # no rows at all: the output still gets its columns
        sink.write(decide_batch(empty_batch(source), dates, policies, backend, reference))
    return stats


def _submit(
    client: Any,
    source: Source,
    sink: Sink,
    dates: list[dt.date],
    policies: str,
    backend: Backend,
    reference: str,
    chunk_size: int,
    stats: Stats,
) -> Iterator[tuple[Any, int]]:
    if isinstance(source, ParquetSource):
        # A directory output is written by the workers, each its own part (they need its path).
        writes = isinstance(sink, ParquetDirectorySink)
        for i, piece in enumerate(source.pieces(chunk_size)):
            part = str(sink.part(i)) if isinstance(sink, ParquetDirectorySink) else None
            args = (piece, dates, policies, backend, reference, chunk_size, part if writes else None)
            yield client.submit(decide_piece, *args, pure=False), piece.rows
        return
    chunks = source.chunks(chunk_size)
    while True:
        batch, seconds = timed_next(chunks)
        stats.read += seconds
        if batch is None:
            return
        started = time.perf_counter()
        # Cast here, so the ID number stays in this process (never in a task's arguments).
        persons = person_table(batch, reference).to_arrow(compat_level=pl.CompatLevel.oldest())
        stats.read += time.perf_counter() - started
        [data] = client.scatter([persons])
        yield client.submit(decide_persons, data, dates, policies, backend, pure=False), batch.num_rows


class ClusterDecider:
    """The Decider protocol (population.backends) on a Dask cluster, for the planning commands:
    decide() splits the persons into chunks that the workers decide with decide_persons (the policy
    set loaded once per worker process) and puts the results together in order. Workers must read
    `policies` at the same path (on a remote cluster, a shared file system)."""

    def __init__(self, client: Any, policies: str | Path, backend: Backend, chunk_size: int = CHUNK):
        here = decider_for(policies, backend)  # checks the policies load, and gives their version
        self.version, self.programs = here.version, here.programs
        self.client, self.backend, self.chunk_size = client, backend, chunk_size
        self.policies = str(Path(policies).resolve())

    def decide(self, persons: pl.DataFrame, on: dt.date) -> pl.DataFrame:
        if not persons.height:
            return decider_for(self.policies, self.backend).decide(persons, on)
        chunks = [persons.slice(i, self.chunk_size).to_arrow() for i in range(0, persons.height, self.chunk_size)]
        futures = self.client.map(
            decide_persons, chunks, dates=[on], policies=self.policies, backend=self.backend, pure=False
        )
        frames = [pl.from_arrow(done.table) for done in self.client.gather(futures)]
        return pl.concat([f for f in frames if isinstance(f, pl.DataFrame)])
