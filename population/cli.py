"""`subsidy-population`: the policy set over whole tables of people.

`subsidy-population run` decides every person of a table on one or several dates and writes one
row per person and date (the decision table of service/engine/columnar/schema.py). Other commands
join the same Typer `app`: planning's `report`, `compare` and `explain`
(population/planning/commands.py `register`), added by main().
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.__main__ import default_policies

from .io import JobError, is_postgres, open_sink, open_source
from .job import BACKENDS, CHUNK, Stats, check_dates, check_reference, run_local

app = typer.Typer(
    name="subsidy-population",
    help="Population runs: the policy set over whole tables of people, in chunks, on one machine or Dask.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Population runs: the policy set over whole tables of people."""


def parse_as_of(text: str) -> list[dt.date]:
    dates = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            dates.append(dt.date.fromisoformat(part))
        except ValueError:
            raise JobError(f"--as-of {part}: not a date; give YYYY-MM-DD[,YYYY-MM-DD...]") from None
    if not dates:
        raise JobError("--as-of: give at least one date, YYYY-MM-DD")
    return list(dict.fromkeys(dates))


_MONTHS = re.compile(r"^(\d{4})-(\d{2}):(\d{4})-(\d{2})$")


def parse_months(text: str) -> list[dt.date]:
    """The first day of each month from the first to the last, both included."""
    match = _MONTHS.match(text.strip())
    bad = JobError(f"--months {text}: give FIRST:LAST as YYYY-MM:YYYY-MM, e.g. 2016-01:2020-12")
    if not match:
        raise bad
    y1, m1, y2, m2 = map(int, match.groups())
    if not (1 <= m1 <= 12 and 1 <= m2 <= 12) or (y1, m1) > (y2, m2):
        raise bad
    return [dt.date(y, m, 1) for y in range(y1, y2 + 1) for m in range(1, 13) if (y1, m1) <= (y, m) <= (y2, m2)]


def _dates(as_of: str | None, months: str | None) -> list[dt.date]:
    if (as_of is None) == (months is None):
        raise JobError("give the dates: either --as-of YYYY-MM-DD[,...] or --months YYYY-MM:YYYY-MM")
    return parse_as_of(as_of) if as_of is not None else parse_months(cast(str, months))


RUN_HELP = (
    "Decide every person of a table on each date.\n\n"
    "One row per person and date: your reference, the date, the policy version, the region, then per program "
    "the outcome, amount in fen, whether the amount is kept, interactions, missing facts and assumptions, then "
    "the referrals.\n\n"
    "Rows come chunk by chunk in input order, each chunk once per date (date after date), the same with or "
    "without --cluster; sort by your reference and as_of to compare runs with a different --chunk-size.\n\n"
    "Required columns: birth_date (or id_number, read only to fill a missing birth date, never written or "
    "logged) and region_code; the other person columns are optional (null: not stated). CSV: dates YYYY-MM-DD, "
    "empty is null, other_benefits ;-separated."
)


@app.command(help=RUN_HELP)
def run(
    input: Annotated[
        str,
        typer.Option(
            help="persons: a .parquet file or a directory of Parquet files (hive partitions too), a .csv "
            "file (UTF-8 with or without BOM, or GB18030), or postgresql://USER@HOST:PORT/DB with --table "
            "or --query"
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            help="decisions: a .parquet file, a directory (one Parquet file per chunk, read in name order), "
            "a .csv file (lists ;-joined), or postgresql://... with --output-table"
        ),
    ],
    reference: Annotated[
        str, typer.Option(help="your key column, carried through to every decision row (never an ID number)")
    ],
    as_of: Annotated[
        str | None, typer.Option(help="evaluation dates, YYYY-MM-DD[,YYYY-MM-DD...]", show_default=False)
    ] = None,
    months: Annotated[
        str | None,
        typer.Option(
            help="month by month, FIRST:LAST as YYYY-MM:YYYY-MM: each month on its first day, the day a new "
            "standard takes effect, so each row is the month's entitlement",
            show_default=False,
        ),
    ] = None,
    policies: Annotated[
        str, typer.Option(help="policy directory (default: the checkout's policies/ or the bundled copy)")
    ] = default_policies(),
    table: Annotated[str | None, typer.Option(help="input table (schema.table) for a postgresql:// --input")] = None,
    query: Annotated[str | None, typer.Option(help="input SQL query for a postgresql:// --input")] = None,
    output_table: Annotated[
        str | None, typer.Option(help="output table (schema.table) for a postgresql:// --output")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="CSV encoding (utf-8, gb18030); default: detected", show_default=False)
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="persons decided at a time (bounds memory)")] = CHUNK,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="run on Dask: local:N (N worker processes here) or tcp://HOST:8786 (a scheduler whose workers "
            "can read --input and --policies, and write a directory --output, at the same paths); the output is the "
            "same as one process's, row for row",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="columnar, or online (the service core, one person at a time)")] = (
        "columnar"
    ),
    force: Annotated[bool, typer.Option(help="replace an existing output")] = False,
    stats: Annotated[Path | None, typer.Option(hidden=True, help="write the run's timings as JSON")] = None,
) -> None:
    started = time.perf_counter()
    dates = _dates(as_of, months)
    if backend not in BACKENDS:
        raise JobError(f"--backend {backend}: give columnar or online")
    if chunk_size < 1:
        raise JobError(f"--chunk-size {chunk_size}: give a positive number of persons")
    check_reference(reference)
    if cluster is not None:
        from .cluster import check_cluster

        check_cluster(cluster)
    check_dates(dates, policies)
    with ExitStack() as stack:
        source = open_source(input, reference, table=table, query=query, encoding=encoding)
        stack.callback(source.close)
        sink = open_sink(output, force, output_table, input, table if is_postgres(input) else None)
        committed = False

        def abort() -> None:
            if not committed:
                sink.abort()

        stack.callback(abort)
        with _progress(source.total_rows) as advance:
            if cluster is None:
                result = run_local(source, sink, dates, policies, backend, reference, chunk_size, advance)
            else:
                from .cluster import connect, run_cluster

                connecting = time.perf_counter()
                with connect(cluster) as client:
                    start_cluster = time.perf_counter() - connecting
                    result = run_cluster(client, source, sink, dates, policies, backend, reference, chunk_size, advance)
                    result.start_cluster = start_cluster
        commit_started = time.perf_counter()
        sink.commit()
        committed = True
        result.write += time.perf_counter() - commit_started
    result.total = time.perf_counter() - started
    stderr.print(f"{output}: {result.summary()}", highlight=False, soft_wrap=True)
    if stats is not None:
        stats.write_text(json.dumps(_stats_dict(result, len(dates))))


def _stats_dict(result: Stats, dates: int) -> dict[str, Any]:
    return {**{k: v for k, v in vars(result).items() if k != "extra"}, **result.extra, "dates": dates}


class _progress:
    """A rich progress bar of persons on stderr (a count when the total is unknown)."""

    def __init__(self, total: int | None):
        self.total = total
        self.bar = Progress(
            TextColumn("deciding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("persons"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
            # Not in a log file or a pipe: there the closing summary line says it all.
            disable=not stderr.is_terminal,
        )

    def __enter__(self) -> Any:
        self.bar.start()
        task = self.bar.add_task("persons", total=self.total)
        return lambda rows: self.bar.advance(task, rows)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the temporary output is removed


def main(argv: list[str] | None = None) -> None:
    from .planning.commands import register

    if not any(c.name == "report" for c in app.registered_commands):  # main() may run more than once
        register(app)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> None:
    try:
        code = app(args=argv, prog_name="subsidy-population", standalone_mode=False)
        if code == 130:  # typer's answer to an interrupt (Ctrl-C, or SIGTERM above)
            stderr.print("interrupted", highlight=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except JobError as exc:
        stderr.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except typer.Abort:
        stderr.print("interrupted", highlight=False)
        sys.exit(130)
    except typer.exceptions.TyperException as exc:  # a usage error: missing or malformed option
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # none when the help was shown instead (no arguments)
            stderr.print(f"error: {message} (see --help)", highlight=False, markup=False, soft_wrap=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except KeyboardInterrupt:
        stderr.print("interrupted", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
