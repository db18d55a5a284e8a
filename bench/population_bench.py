"""The population job end to end: peak memory as the population grows, and a LocalCluster of two
workers against one process.

Each run is `subsidy-population run` in a child process (Parquet in, Parquet out, one date), its
peak RSS from the kernel's accounting of that child alone (os.wait4), its time split from the
job's own stats (read, decide, write; on the cluster, read and decide are the workers' summed
seconds and "waiting" the client's time blocked on them).

Persons are a varied base table (bench.people: every household status, disabilities, incomes,
children and elders) resampled with polars to the size wanted, written as a directory of Parquet
files of a million rows (row groups of 100,000).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from service.engine.columnar.persons import from_request
from service.engine.columnar.schema import PERSON_SCHEMA

from .peak import measured
from .people import people

ROOT = Path(__file__).resolve().parent.parent
FILE_ROWS = 1_000_000


@dataclass
class Run:
    label: str
    persons: int
    seconds: float
    peak_rss_mb: float
    stats: dict[str, Any]


def write_persons(directory: Path, count: int, seed: int = 14) -> None:
    """`count` persons resampled from a varied base of 2,000, in files of FILE_ROWS."""
    base = pl.DataFrame([from_request(r) for r in people(2_000, seed=seed)], schema=PERSON_SCHEMA, orient="row")
    directory.mkdir(parents=True)
    for i, start in enumerate(range(0, count, FILE_ROWS)):
        rows = min(FILE_ROWS, count - start)
        part = base.sample(rows, with_replacement=True, seed=seed + i)
        part = part.select(pl.int_range(start, start + rows, dtype=pl.Int64).alias("case_no"), pl.all())
        part.write_parquet(directory / f"part-{i:04d}.parquet", row_group_size=100_000)


def run_job(label: str, persons: int, source: Path, output: Path, backend: str, *extra: str) -> Run:
    stats_file = output.with_suffix(".json")
    cmd = [
        sys.executable, "-m", "population.cli", "run", "--input", str(source), "--output", str(output),
        "--reference", "case_no", "--as-of", "2020-08-01", "--backend", backend, "--force",
        "--stats", str(stats_file), *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done, peak = measured(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{label}: exit {done.returncode}: {done.stderr.decode()[-2000:]}")
    return Run(label, persons, seconds, peak, json.loads(stats_file.read_text()))


def run(persons: int = 1_000_000) -> list[Run]:
    backend = "columnar"
    with tempfile.TemporaryDirectory(prefix="population-bench-") as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        write_persons(small, persons)
        write_persons(large, persons * 10)
        out = Path(tmp) / "out"
        out.mkdir()
        runs = [
            run_job("one process", persons, small, out / "one.parquet", backend),
            run_job("one process, 10x persons", persons * 10, large, out / "large.parquet", backend),
            run_job("LocalCluster, 2 workers", persons, small, out / "two.parquet", backend, "--cluster", "local:2"),
        ]
        runs.append(
            run_job("LocalCluster, workers write", persons, small, out / "parts", backend, "--cluster", "local:2")
        )
        one = pl.read_parquet(out / "one.parquet")
        for other in (pl.read_parquet(out / "two.parquet"), pl.read_parquet(sorted((out / "parts").glob("*.parquet")))):
            if not one.equals(other):
                raise RuntimeError("the LocalCluster's output differs from the single process's")
    return runs


def print_rows(runs: list[Run]) -> None:
    one, large, two, _ = runs
    print("\n## Population job (subsidy-population run, Parquet in and out, one date)")
    print(
        f"{'':28} {'persons':>11} {'s':>7} {'persons/s':>11} {'peak RSS MB':>12} {'read s':>7} {'decide s':>9} "
        f"{'write s':>8} {'cluster s':>10} {'waiting s':>10}"
    )
    for r in runs:
        st = r.stats
        print(
            f"{r.label:28} {r.persons:11,} {r.seconds:7.1f} {r.persons / r.seconds:11,.0f} {r.peak_rss_mb:12.0f} "
            f"{st['read']:7.1f} {st['decide']:9.1f} {st['write']:8.1f} {st['start_cluster']:10.1f} {st['wait']:10.1f}"
        )
    print("(s: the child's wall time from start to exit, imports and cluster start included; read and decide on")
    print(" the cluster: summed over both workers; its output equals the single process's, row for row; peak RSS")
    print(' on the cluster: the largest of the client and its worker processes; "workers write": the output is a')
    print(" directory and each task writes its own part instead of sending its decisions back)")
    print(f"peak RSS 10x persons / 1x:   {large.peak_rss_mb / one.peak_rss_mb:5.2f}  (target <= 1.5)")
    print(f"peak RSS, 1x persons, MB:    {one.peak_rss_mb:5.0f}  (target <= 1024 for 1 million)")
    print(f"LocalCluster 2 workers / one process, time: {two.seconds / one.seconds:5.2f}")
