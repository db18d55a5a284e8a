"""What a change costs and who is affected: two decision tables of the same people, before and after.

"Before" and "after" are the base policy set and a proposed one (an overlay) on the same date, or
two dates under the same set. Per person and program: the outcome and the amount on each side;
then per program and city (and the province, 330000) the people who newly qualify (outcome becomes
ELIGIBLE), who lose eligibility, who gain or lose money and how much, and the cost change per month
and per year (12 x the monthly change on the date). Counts are people (the rows' weights).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clients.render import render_decision
from population.online import OnlineDecider
from service.api import eligibility_pb2 as pb
from service.engine.columnar import schema as s
from service.engine.columnar.persons import to_request

from .report import PROGRAM, PROVINCE, _with_province

KEYS = [s.REFERENCE, PROGRAM]
NOT_DECIDED = "NOT_DECIDED"  # the program is not in force on the date, or the row was refused


def _side(decisions: pl.DataFrame, programs: list[str]) -> pl.DataFrame:
    weight = pl.col(s.WEIGHT).cast(pl.Int64) if s.WEIGHT in decisions.columns else pl.lit(1, pl.Int64)
    return pl.concat(
        [
            decisions.select(
                pl.col(s.REFERENCE),
                weight.alias(s.WEIGHT),
                pl.col(s.CITY),
                pl.col(s.POLICY_VERSION),
                pl.col(s.AS_OF),
                pl.lit(pid).alias(PROGRAM),
                pl.col(s.column(pid, s.OUTCOME)).fill_null(NOT_DECIDED).alias(s.OUTCOME),
                pl.col(s.column(pid, s.AMOUNT)).fill_null(0).alias(s.AMOUNT),
            )
            for pid in programs
        ]
    )


def slim(decisions: pl.DataFrame, programs: list[str]) -> pl.DataFrame:
    """Only the columns a comparison reads (a whole province's decision tables are large)."""
    keep = [s.REFERENCE, s.WEIGHT, s.CITY, s.POLICY_VERSION, s.AS_OF]
    keep += [s.column(pid, c) for pid in programs for c in (s.OUTCOME, s.AMOUNT)]
    return decisions.select(c for c in keep if c in decisions.columns)


def changes(before: pl.DataFrame, after: pl.DataFrame, programs: list[str]) -> pl.DataFrame:
    """Per person and program, both sides and the change (people in only one table are left out)."""
    b, a = _side(before, programs), _side(after, programs)
    joined = b.join(a.drop(s.WEIGHT), on=KEYS, how="inner", suffix="_after")
    was, now = pl.col(s.OUTCOME) == "ELIGIBLE", pl.col(f"{s.OUTCOME}_after") == "ELIGIBLE"
    delta = pl.col(f"{s.AMOUNT}_after") - pl.col(s.AMOUNT)
    return joined.select(
        pl.col(s.REFERENCE),
        pl.col(s.WEIGHT),
        pl.coalesce(f"{s.CITY}_after", s.CITY).alias(s.CITY),
        pl.col(PROGRAM),
        pl.col(s.AS_OF).alias("as_of_before"),
        pl.col(f"{s.AS_OF}_after").alias("as_of_after"),
        pl.col(s.POLICY_VERSION).alias("version_before"),
        pl.col(f"{s.POLICY_VERSION}_after").alias("version_after"),
        pl.col(s.OUTCOME).alias("outcome_before"),
        pl.col(f"{s.OUTCOME}_after").alias("outcome_after"),
        pl.col(s.AMOUNT).alias("amount_before_fen"),
        pl.col(f"{s.AMOUNT}_after").alias("amount_after_fen"),
        delta.alias("change_fen"),
        (now & ~was).alias("newly_eligible"),
        (was & ~now).alias("lost_eligibility"),
    )


def summary(change: pl.DataFrame) -> pl.DataFrame:
    """Per program and city (and the province): who is affected and what it costs."""
    w, d = pl.col(s.WEIGHT), pl.col("change_fen")
    keys = [PROGRAM, s.CITY]
    table = (
        change.filter(pl.col(s.CITY).is_not_null())
        .group_by(keys)
        .agg(
            w.filter(pl.col("newly_eligible")).sum().alias("newly_eligible"),
            w.filter(pl.col("lost_eligibility")).sum().alias("lost_eligibility"),
            w.filter(d > 0).sum().alias("gaining"),
            w.filter(d < 0).sum().alias("losing"),
            (w * d).filter(d > 0).sum().alias("gains_fen"),
            (w * d).filter(d < 0).sum().alias("losses_fen"),
            (w * pl.col("amount_before_fen")).sum().alias("monthly_cost_before_fen"),
            (w * pl.col("amount_after_fen")).sum().alias("monthly_cost_after_fen"),
        )
        .with_columns(pl.exclude(keys).cast(pl.Int64))
    )
    table = _with_province(table, keys, [c for c in table.columns if c not in keys])
    change_month = pl.col("monthly_cost_after_fen") - pl.col("monthly_cost_before_fen")
    return table.with_columns(
        change_month.alias("monthly_cost_change_fen"), (change_month * 12).alias("annual_cost_change_fen")
    ).sort(PROGRAM, s.CITY)


def distribution(change: pl.DataFrame) -> pl.DataFrame:
    """Per program (province-wide) and size of change: how many people gain or lose that much a month."""
    return (
        change.filter(pl.col("change_fen") != 0)
        .group_by(PROGRAM, "change_fen")
        .agg(pl.col(s.WEIGHT).sum().cast(pl.Int64).alias("people"))
        .with_columns(pl.lit(PROVINCE).alias(s.CITY))
        .sort(PROGRAM, "change_fen")
    )


# -- one person, both receipts ---------------------------------------------------------------------


def receipt_text(reply: pb.EvaluateResponse, lang: str, width: int) -> str:
    """The caseworker client's terminal receipt of a reply, as text."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, highlight=False)
    render_decision(reply, lang, console)
    return console.export_text()


def explain(
    row: dict[str, object],
    before: tuple[OnlineDecider, dt.date],
    after: tuple[OnlineDecider, dt.date],
    lang: str = "en",
    width: int = 160,
) -> str:
    """One person's decision under both sides (policy set and date), receipts side by side."""
    replies = [decider.service.evaluate(to_request(row, on)) for decider, on in (before, after)]
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_lines=False)
    for label, reply in zip(("before", "after"), replies, strict=True):
        table.add_column(f"{label}: policy {reply.policy_version}, {reply.evaluation_date}", ratio=1)
    column = (width - 7) // 2
    table.add_row(*(Text(receipt_text(r, lang, column)) for r in replies))
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, highlight=False)
    console.print(table)
    return console.export_text()


def person_row(persons: pl.DataFrame, reference: object) -> dict[str, object]:
    found = persons.filter(pl.col(s.REFERENCE).cast(pl.String) == str(reference))
    if found.is_empty():
        raise LookupError(f"no person with reference {reference!r} in the population")
    return found.row(0, named=True)


def online(policies: Path) -> OnlineDecider:
    return OnlineDecider.load(policies)
