"""The same per-chunk function on dask.distributed: a LocalCluster of N worker processes, or an
existing scheduler.

A Parquet input is split into row groups and each task reads its own (the workers need the input's
path: on a remote cluster, a shared file system) and decides it with decide_batch, chunk by chunk;
another input is read here and its chunks are sent, already cast and without ID numbers. Results
come back as Arrow and are written here in the order the pieces were submitted, at most a few in
flight per worker, so the output is the single-process run's, row for row, and memory stays bounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from service.engine.columnar import schema as s

from .backends import Backend
from .io import JobError, ParquetPiece, ParquetSource, Sink, Source, person_table, plain
from .job import Stats, decide_batch, empty_batch

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


def decide_piece(
    piece: ParquetPiece, dates: list[dt.date], policies: str, backend: Backend, reference: str, chunk_size: int
) -> tuple[pa.Table, float, float]:
    """A worker's task: read one row group and decide it chunk by chunk (as the single-process
    runner does, so the same chunks); returns the decisions and the seconds spent reading and
    deciding."""
    read = decide = 0.0
    tables = []
    chunks = piece.batches(chunk_size)
    while True:
        started = time.perf_counter()
        batch = next(chunks, None)
        read += time.perf_counter() - started
        if batch is None:
            break
        started = time.perf_counter()
        tables.append(decide_batch(batch, dates, policies, backend, reference))
        decide += time.perf_counter() - started
    if not tables:
        return decide_batch(empty_batch_of(piece), dates, policies, backend, reference), read, decide
    return pa.concat_tables(tables), read, decide


def empty_batch_of(piece: ParquetPiece) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in piece.columns})


def decide_persons(
    persons: pa.Table, dates: list[dt.date], policies: str, backend: Backend
) -> tuple[pa.Table, float, float]:
    """A worker's task for a chunk read by the client (already a person table)."""
    started = time.perf_counter()
    table = decide_batch(persons, dates, policies, backend, s.REFERENCE)
    return table, 0.0, time.perf_counter() - started


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
        table, read, decide = future.result()
        stats.wait += time.perf_counter() - started
        if reference != s.REFERENCE and s.REFERENCE in table.column_names:
            table = table.rename_columns([reference if c == s.REFERENCE else c for c in table.column_names])
        started = time.perf_counter()
        sink.write(table)
        stats.write += time.perf_counter() - started
        stats.read += read
        stats.decide += decide
        stats.persons += persons
        stats.rows += table.num_rows
        advance(persons)

    for future, persons in _submit(client, source, dates, policies, backend, reference, chunk_size, stats):
        pending.append((future, persons))
        while len(pending) >= limit:
            collect()
    while pending:
        collect()
    if stats.persons == 0 and stats.rows == 0:
        sink.write(decide_batch(empty_batch(source), dates, policies, backend, reference))
    return stats


def _submit(
    client: Any,
    source: Source,
    dates: list[dt.date],
    policies: str,
    backend: Backend,
    reference: str,
    chunk_size: int,
    stats: Stats,
) -> Iterator[tuple[Any, int]]:
    if isinstance(source, ParquetSource):
        for piece in source.pieces:
            args = (piece, dates, policies, backend, reference, chunk_size)
            yield client.submit(decide_piece, *args, pure=False), piece.rows
        return
    chunks = source.chunks(chunk_size)
    while True:
        started = time.perf_counter()
        batch = next(chunks, None)
        if batch is None:
            stats.read += time.perf_counter() - started
            return
        # Cast here, so the ID number stays in this process (never in a task's arguments).
        persons = plain(person_table(batch, reference).to_arrow())
        stats.read += time.perf_counter() - started
        [data] = client.scatter([persons])
        yield client.submit(decide_persons, data, dates, policies, backend, pure=False), batch.num_rows
