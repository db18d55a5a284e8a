"""Are we on target: recipients and cost per program, city and date, and the plan's indicators.

Everything here reads decision tables (service/engine/columnar/schema.py) and the population's
totals (year, city_code, age_band, people); nothing decides. A row stands for `weight` people.

- recipients: people paid by a program (outcome ELIGIBLE, kept, amount > 0): an eligible person an
  interaction took the amount from is not a recipient of that program.
- monthly cost: the sum of weight x amount on the date, in fen.
- annual cost: 12 x the monthly cost on the date (annual_basis "12x"), or, given the twelve
  month-runs of the year, the sum of their monthly costs (annual_basis "months").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from service.engine.columnar import schema as s

PROVINCE = "330000"  # the province's rows in every table: the sum over its cities
PROGRAM = "program"


def paid_long(decisions: pl.DataFrame, programs: list[str]) -> pl.DataFrame:
    """One row per person, date and program in force: the outcome, the amount and whether paid."""
    weight = pl.col(s.WEIGHT).cast(pl.Int64) if s.WEIGHT in decisions.columns else pl.lit(1, pl.Int64)
    parts = []
    for pid in programs:
        outcome, amount, kept = (pl.col(s.column(pid, c)) for c in (s.OUTCOME, s.AMOUNT, s.KEPT))
        parts.append(
            decisions.select(
                pl.col(s.REFERENCE) if s.REFERENCE in decisions.columns else pl.int_range(pl.len()).alias(s.REFERENCE),
                weight.alias(s.WEIGHT),
                pl.col(s.AS_OF),
                pl.col(s.CITY),
                pl.lit(pid).alias(PROGRAM),
                outcome.alias(s.OUTCOME),
                amount.fill_null(0).alias(s.AMOUNT),
                ((outcome == "ELIGIBLE") & kept.fill_null(False) & (amount.fill_null(0) > 0)).alias("paid"),
            ).filter(pl.col(s.OUTCOME).is_not_null())
        )
    return pl.concat(parts)


def _with_province(table: pl.DataFrame, keys: list[str], sums: list[str]) -> pl.DataFrame:
    province = table.group_by([k for k in keys if k != s.CITY]).agg(pl.col(c).sum() for c in sums)
    province = province.with_columns(pl.lit(PROVINCE).alias(s.CITY)).select(table.columns)
    return pl.concat([table, province]).sort(keys)


def indicators(decisions: pl.DataFrame, programs: list[str]) -> pl.DataFrame:
    """Per date, program and city (and the province, 330000): recipients, monthly and annual cost
    (12 x the monthly cost on the date: annual_basis "12x"; see `annual_from_months`)."""
    keys = [s.AS_OF, PROGRAM, s.CITY]
    long = paid_long(decisions, programs).filter(pl.col(s.CITY).is_not_null())
    paid = pl.col("paid")
    table = long.group_by(keys).agg(
        pl.col(s.WEIGHT).filter(paid).sum().cast(pl.Int64).alias("recipients"),
        (pl.col(s.WEIGHT) * pl.col(s.AMOUNT)).filter(paid).sum().cast(pl.Int64).alias("monthly_cost_fen"),
    )
    table = _with_province(table, keys, ["recipients", "monthly_cost_fen"])
    return table.select(
        s.AS_OF,
        pl.col(s.AS_OF).dt.year().cast(pl.Int32).alias("year"),
        PROGRAM,
        s.CITY,
        "recipients",
        "monthly_cost_fen",
        (pl.col("monthly_cost_fen") * 12).alias("annual_cost_fen"),
        pl.lit("12x").alias("annual_basis"),
    ).sort(s.AS_OF, PROGRAM, s.CITY)


def annual_from_months(table: pl.DataFrame, months: dict[dt.date, pl.DataFrame]) -> pl.DataFrame:
    """The annual cost of each date in `months` as the sum of the monthly costs of its month-runs
    (`months[date]`: the `indicators` of the runs on the first of each month of its year)."""
    keys = [s.AS_OF, PROGRAM, s.CITY]
    for on, runs in months.items():
        year_cost = (
            runs.group_by(PROGRAM, s.CITY)
            .agg(pl.col("monthly_cost_fen").sum().alias("months_fen"))
            .with_columns(pl.lit(on).alias(s.AS_OF))
        )
        this = pl.col(s.AS_OF) == on
        table = (
            table.join(year_cost, on=keys, how="left")
            .with_columns(
                pl.when(this)
                .then(pl.col("months_fen").fill_null(0))
                .otherwise("annual_cost_fen")
                .alias("annual_cost_fen"),
                pl.when(this).then(pl.lit("months")).otherwise(pl.col("annual_basis")).alias("annual_basis"),
            )
            .drop("months_fen")
        )
    return table


def run_summary(decisions: pl.DataFrame) -> pl.DataFrame:
    """Per date: the people decided, those refused (no decision: `error`) and those outside Zhejiang."""
    weight = pl.col(s.WEIGHT) if s.WEIGHT in decisions.columns else pl.lit(1, pl.Int64)
    return (
        decisions.group_by(s.AS_OF)
        .agg(
            weight.sum().cast(pl.Int64).alias("people"),
            weight.filter(pl.col(s.ERROR).is_not_null()).sum().cast(pl.Int64).alias("undecided_people"),
            weight.filter(pl.col(s.IN_ZHEJIANG).not_()).sum().cast(pl.Int64).alias("outside_zhejiang"),
            pl.col(s.POLICY_VERSION).unique().sort().str.join(",").alias(s.POLICY_VERSION),
        )
        .sort(s.AS_OF)
    )


# -- the plan's indicators -------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    indicator: str
    name: str
    program: str
    measure: str  # coverage or recipients
    age_band: str | None
    year: int
    value: float
    kind: str  # target or reported
    comparison: str | None
    tolerance: float | None
    binding: bool
    source: str
    confidence: str


def load_plan(path: Path | None = None) -> list[Figure]:
    text = (
        path.read_text(encoding="utf-8")
        if path
        else resources.files("population").joinpath("data/plan_indicators.yaml").read_text(encoding="utf-8")
    )
    data: dict[str, Any] = yaml.safe_load(text)
    return [
        Figure(
            ind["id"],
            ind["name"]["en"],
            ind["program"],
            ind["measure"],
            ind.get("age_band"),
            int(f["year"]),
            float(f["value"]),
            f["kind"],
            f.get("comparison"),
            f.get("tolerance"),
            bool(f.get("binding", False)),
            f["source"],
            f["confidence"],
        )
        for ind in data["indicators"]
        for f in ind["figures"]
    ]


def coverage(table: pl.DataFrame, totals: pl.DataFrame, program: str, age_band: str) -> pl.DataFrame:
    """Per date and city (and the province): a program's recipients over the people of an age band
    (the population's totals for the date's year)."""
    people = totals.filter(pl.col("age_band") == age_band).group_by("year", s.CITY).agg(pl.col("people").sum())
    people = _with_province(people, ["year", s.CITY], ["people"]).with_columns(pl.col("year").cast(pl.Int32))
    return (
        table.filter(pl.col(PROGRAM) == program)
        .select(s.AS_OF, "year", s.CITY, "recipients")
        .join(people, on=["year", s.CITY], how="right")
        .with_columns(
            pl.lit(program).alias(PROGRAM),
            pl.col("recipients").fill_null(0),
            (pl.col("recipients").fill_null(0) / pl.col("people")).alias("coverage"),
        )
        .filter(pl.col(s.AS_OF).is_not_null())
        .select(s.AS_OF, "year", PROGRAM, s.CITY, "recipients", "people", "coverage")
        .sort(s.AS_OF, s.CITY)
    )


def _fmt(measure: str, value: float) -> str:
    return f"{value:.2%}" if measure == "coverage" else f"{value:,.0f}"


def _model_value(table: pl.DataFrame, totals: pl.DataFrame, fig: Figure, on: dt.date) -> float | None:
    """The model's figure for the province on a date: None when the program is not decided then
    (or, for a coverage, the population has no totals for the year)."""
    rows = table.filter((pl.col(s.AS_OF) == on) & (pl.col(PROGRAM) == fig.program) & (pl.col(s.CITY) == PROVINCE))
    if rows.is_empty():
        return None
    if fig.measure != "coverage":
        return float(rows["recipients"].item())
    cov = coverage(table.filter(pl.col(s.AS_OF) == on), totals, fig.program, fig.age_band or "60+")
    province = cov.filter(pl.col(s.CITY) == PROVINCE)["coverage"]
    return None if province.is_empty() or province.item() is None else float(province.item())


def _margin(fig: Figure, margin: float) -> str:
    return f"{margin:+.2%}" if fig.measure == "coverage" else f"{margin:+,.0f}"


def against_plan(
    table: pl.DataFrame, totals: pl.DataFrame, plan: list[Figure], summary: pl.DataFrame
) -> tuple[pl.DataFrame, list[str]]:
    """The model against each of the plan's figures for the province, with the margin, and the
    findings: where the model misses a target or disagrees with what the plan reports. A figure is
    compared on the last run date of its year; where the program is not decided then, the finding
    also gives the model's figure on the first later date it is decided (for orientation, not as the
    comparison)."""
    rows: list[dict[str, Any]] = []
    findings: list[str] = []
    run_dates = sorted(set(summary[s.AS_OF].to_list()) | set(table[s.AS_OF].to_list()))
    for fig in plan:
        in_year = [d for d in run_dates if d.year == fig.year]
        on = in_year[-1] if in_year else None
        row: dict[str, Any] = {
            "indicator": fig.indicator,
            "year": fig.year,
            "as_of": on,
            "kind": fig.kind,
            "comparison": fig.comparison,
            "binding": fig.binding,
            "plan_value": fig.value,
            "model_value": None,
            "margin": None,
            "status": "not run",
            "source": fig.source,
            "confidence": fig.confidence,
        }
        rows.append(row)
        label = f"{fig.indicator} ({fig.name}), {fig.year}"
        plan_text = _fmt(fig.measure, fig.value)
        if on is None:
            findings.append(f"{label}: the plan's {plan_text} is not compared: {fig.year} was not run")
            continue
        value = _model_value(table, totals, fig, on)
        if value is None:
            row["status"] = "not decided"
            text = (
                f"{label}: the model cannot reproduce the plan's {plan_text}: {fig.program} is not decided on {on} "
                "(outside its period, no parameter values then, or no totals for the year)"
            )
            later = [(d, v) for d in run_dates if d > on and (v := _model_value(table, totals, fig, d)) is not None]
            if later:
                d, v = later[0]
                text += f"; on {d}, the first date it is decided in this run, the model gives {_fmt(fig.measure, v)}"
                text += f" ({v / fig.value:.0%} of the plan's {fig.year} figure)"
            findings.append(text)
            continue
        margin = value - fig.value
        row.update(model_value=value, margin=margin)
        undecided = summary.filter(pl.col(s.AS_OF) == on)["undecided_people"].sum()
        note = f" ({undecided:,} people could not be decided on {on})" if undecided else ""
        model_text = _fmt(fig.measure, value)
        if fig.kind == "target":
            met = value >= fig.value if fig.comparison == "ge" else value <= fig.value
            row["status"] = "met" if met else "not met"
            sign = ">=" if fig.comparison == "ge" else "<="
            findings.append(
                f"{label}: {'binding ' if fig.binding else ''}target {sign} {plan_text}; the model gives {model_text} "
                f"on {on}, margin {_margin(fig, margin)}: {row['status']}{note}"
            )
        else:
            agrees = abs(margin) <= (fig.tolerance or 0) * fig.value
            row["status"] = "agrees" if agrees else "disagrees"
            if not agrees:
                findings.append(
                    f"{label}: the plan reports {plan_text}, the model gives {model_text} on {on} "
                    f"({value / fig.value:.0%} of the plan's figure; tolerance {fig.tolerance or 0:.0%}): "
                    f"the model and the plan disagree. This is a finding, not tuned away{note}"
                )
    schema = {
        "indicator": pl.String,
        "year": pl.Int32,
        "as_of": pl.Date,
        "kind": pl.String,
        "comparison": pl.String,
        "binding": pl.Boolean,
        "plan_value": pl.Float64,
        "model_value": pl.Float64,
        "margin": pl.Float64,
        "status": pl.String,
        "source": pl.String,
        "confidence": pl.String,
    }
    return pl.DataFrame(rows, schema=schema), findings


# -- output ----------------------------------------------------------------------------------------


def write_tables(out: Path, tables: dict[str, pl.DataFrame]) -> list[Path]:
    """Each table as NAME.csv and NAME.parquet in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        table.write_parquet(out / f"{name}.parquet")
        flat = table.with_columns(pl.col(c).list.join(";") for c, t in table.schema.items() if isinstance(t, pl.List))
        flat.write_csv(out / f"{name}.csv")
        written += [out / f"{name}.csv", out / f"{name}.parquet"]
    return written
