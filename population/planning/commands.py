"""The planning commands: `report`, `compare` and `explain` (a typer app; population/cli.py mounts
it with `app.add_typer(planning_app, name=...)` or registers each function with `app.command()`).

The population is the synthetic one (population/synthetic.py `generate(on, scale, seed)`), one per
date, or a person table and totals given as Parquet files (--persons, --totals).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from population.backends import Backend, Decider
from population.online import OnlineDecider
from service.__main__ import default_policies
from service.engine.columnar import schema as s
from service.policy.loader import load_policies
from service.policy.overlay import apply, describe, first_date, load_overlay
from service.policy.yamlio import PolicyFileError

from . import compare, report, runs

planning_app = typer.Typer(help="Planning: the plan's indicators, what a change costs, who is affected.")
console = Console()

Policies = Annotated[Path, typer.Option(help="policy directory")]
POLICIES = Path(default_policies())
Scale = Annotated[float, typer.Option(help="share of the province to generate (1.0: all of it)")]
Seed = Annotated[int, typer.Option(help="seed of the synthetic population")]
PersonsOpt = Annotated[Path | None, typer.Option(help="a person table (Parquet) instead of the synthetic one")]
TotalsOpt = Annotated[Path | None, typer.Option(help="the population's totals (Parquet) with --persons")]
Cluster = Annotated[
    str | None, typer.Option(help="decide on Dask, as in the population runs: local:N or tcp://HOST:PORT")
]
OverlayOpt = Annotated[Path | None, typer.Option(help="a proposed change: overlay YAML file or directory")]


class Population:
    """The people for a date: generated (one date at a time: a run keeps only what it aggregates),
    or given."""

    def __init__(self, scale: float, seed: int, persons: Path | None, totals: Path | None):
        self.scale, self.seed = scale, seed
        self.given = pl.read_parquet(persons) if persons else None
        self.given_totals = pl.read_parquet(totals) if totals else None
        self.generated_totals: pl.DataFrame | None = None

    def persons(self, on: dt.date) -> pl.DataFrame:
        if self.given is not None:
            return self.given
        from population.synthetic import generate  # type: ignore[import-not-found,unused-ignore]  # issue 14

        made = generate(on=on, scale=self.scale, seed=self.seed)
        self.generated_totals = made.totals  # every year's, the same for every date
        persons: pl.DataFrame = made.persons
        return persons

    def totals(self) -> pl.DataFrame:
        if self.given is not None:
            if self.given_totals is None:
                raise typer.BadParameter("--persons needs --totals (the population's people by year, city, age band)")
            return self.given_totals
        assert self.generated_totals is not None, "totals are known once a population was generated"
        return self.generated_totals


def _dates(years: str | None, as_of: list[str] | None) -> list[dt.date]:
    if as_of:
        return sorted(dt.date.fromisoformat(d) for d in as_of)
    first, _, last = (years or "2015-2020").partition("-")
    return runs.year_ends(int(first), int(last or first))


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """A bad policy or overlay file is a usage error naming the file, not a traceback."""
    try:
        yield
    except PolicyFileError as exc:
        raise typer.BadParameter(str(exc)) from None


@contextlib.contextmanager
def _cluster(spec: str | None) -> Iterator[Any]:
    """A Dask client for --cluster (as in the population runs), or None to decide in this process."""
    if not spec:
        yield None
        return
    from population.cluster import check_cluster, connect
    from population.io import JobError

    try:
        check_cluster(spec)
        with connect(spec) as client:
            yield client
    except JobError as exc:
        raise typer.BadParameter(str(exc)) from None


def _labels(policies: Path) -> tuple[dict[str, str], dict[str, str]]:
    policy = load_policies(policies)
    cities = {code: f"{name.zh} {name.en}" for code, name in policy.regions.cities.items()}
    cities[report.PROVINCE] = f"{policy.regions.province.zh} {policy.regions.province.en}"
    programs = {pid: f"{p.name.zh} {p.name.en}" for pid, p in policy.programs.items()}
    return cities, programs


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2%}" if abs(value) < 1 else f"{value:,.0f}"
    return str(value)


def _print_table(title: str, table: pl.DataFrame) -> None:
    out = Table(title=title, show_lines=False)
    for c in table.columns:
        out.add_column(c, overflow="fold")
    for row in table.iter_rows():
        out.add_row(*(_cell(v) for v in row))
    console.print(out)


def markdown(table: pl.DataFrame) -> str:
    """A table as Markdown (for a README), numbers as the terminal shows them."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * table.width]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join(lines) + "\n"


def plan_view(plan: pl.DataFrame) -> pl.DataFrame:
    return plan.select(
        "indicator", pl.col("year").cast(pl.String), "kind", "plan_value", "model_value", "margin", "status"
    )


def change_view(summary: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The what-if summary in people and yuan: who is affected, what it costs a month and a year."""
    yuan = [c for c in summary.columns if c.endswith("_fen")]
    return summary.select(
        pl.col("program").replace_strict(names, default=pl.col("program")),
        s.CITY,
        "newly_eligible",
        "lost_eligibility",
        "gaining",
        "losing",
        *(
            pl.col(c).map_elements(yuan_text, return_dtype=pl.String).alias(c.removesuffix("_fen") + "_yuan")
            for c in yuan
            if "change" in c
        ),
    )


def yuan_text(fen: int) -> str:
    """Integer fen as yuan with two decimals, exactly (no float)."""
    sign, whole = ("-" if fen < 0 else ""), abs(fen)
    return f"{sign}{whole // 100:,}.{whole % 100:02d}"


def _overlay_lines(policies: Path, overlay: Path) -> list[str]:
    policy = load_policies(policies, overlay)  # refuses a bad overlay, naming its file
    loaded = load_overlay(overlay)
    apply(loaded, policy.parameters, policy.regions, policy.manifest.period)  # fills its notes
    return [f"proposed policy {policy.version} = base + {overlay}", *describe(loaded)]


@planning_app.command("report")
def report_command(
    out: Annotated[Path, typer.Option(help="directory for report.html and the tables")],
    years: Annotated[str, typer.Option(help="first-last: each year's last day")] = "2015-2020",
    as_of: Annotated[list[str] | None, typer.Option("--as-of", help="dates instead of --years")] = None,
    months: Annotated[bool, typer.Option(help="annual cost as the sum of 12 month-runs, not 12 x the date's")] = False,
    plan_years: Annotated[
        bool, typer.Option(help="also run the years the plan gives figures for (2015), for the comparison")
    ] = True,
    png: Annotated[Path | None, typer.Option(help="directory for the charts as PNG")] = None,
    policies: Policies = POLICIES,
    overlay: OverlayOpt = None,
    scale: Scale = 0.001,
    seed: Seed = 1,
    persons: PersonsOpt = None,
    totals: TotalsOpt = None,
    cluster: Cluster = None,
) -> None:
    """Recipients and cost per program, city and year, and the plan's indicators against the model."""
    dates = _dates(years, as_of)
    plan = report.load_plan()
    extra = sorted({runs.year_end(f.year) for f in plan} - set(dates)) if plan_years else []
    population = Population(scale, seed, persons, totals)
    with tempfile.TemporaryDirectory(prefix="planning-") as work, _cluster(cluster) as client:
        with _usage_errors():
            decider = runs.decider(policies, overlay, Path(work), client=client)
        tables, summaries = [], []
        for on in sorted([*dates, *extra]):  # one date's decisions at a time: only their aggregates are kept
            decisions = decider.decide(population.persons(on), on)
            tables.append(report.indicators(decisions, decider.programs))
            summaries.append(report.run_summary(decisions))
            del decisions
        table = pl.concat(tables)
        if months:
            # each month of the year decides the population as it stands that month (the same people,
            # generated for the month's first day: their assessments and ages as of then)
            table = report.annual_from_months(
                table,
                {
                    on: pl.concat(
                        report.indicators(decider.decide(population.persons(m), m), decider.programs)
                        for m in runs.month_starts(on.year)
                    )
                    for on in sorted([*dates, *extra])
                },
            )
    result = finish_report(table, pl.concat(summaries), population.totals())
    cities, programs = _labels(policies)
    findings = result.pop("findings_text")
    asked = pl.col(s.AS_OF).is_in(dates)  # the charts show the dates asked for; the tables every date run
    from . import charts  # here: Altair takes 0.2 s to import, which `run` and `explain` need not pay

    target = charts.write_report(
        out,
        f"规划指标 Plan indicators (policy {decider.version})",
        {
            "coverage": charts.coverage_chart(result["coverage"].filter(asked), plan, cities),
            "coverage_by_city": charts.coverage_by_city_chart(result["coverage"].filter(asked), plan, cities),
            "cost": charts.cost_chart(result["indicators"].filter(asked), programs),
        },
        result,
        findings,
        png,
    )
    (out / "plan.md").write_text(markdown(plan_view(result["plan"])), encoding="utf-8")
    _print_table("The plan against the model", plan_view(result["plan"]))
    for line in findings:
        console.print(f"finding: {line}", highlight=False)
    console.print(f"wrote {target} and the tables beside it", highlight=False)


def build_report(decisions: pl.DataFrame, totals: pl.DataFrame, programs: list[str]) -> dict[str, Any]:
    """The report's tables from decision tables and totals: indicators, coverage, plan, runs."""
    return finish_report(report.indicators(decisions, programs), report.run_summary(decisions), totals)


def finish_report(table: pl.DataFrame, summary: pl.DataFrame, totals: pl.DataFrame) -> dict[str, Any]:
    """The report's tables from the indicators and run summaries of every date, and the totals."""
    plan = report.load_plan()
    coverage_figs = [f for f in plan if f.measure == "coverage"]
    program, band = (coverage_figs[0].program, coverage_figs[0].age_band or "60+") if coverage_figs else ("", "60+")
    cov = report.coverage(table, totals, program, band)
    against, findings = report.against_plan(table, totals, plan, summary)
    return {"indicators": table, "coverage": cov, "plan": against, "runs": summary, "findings_text": findings}


def _sides(
    policies: Path,
    overlay: Path | None,
    from_date: str | None,
    to_date: str | None,
    on: str | None,
    work: Path,
    backend: Backend | None = None,
    client: Any = None,
) -> tuple[Decider, dt.date, Decider, dt.date]:
    if overlay is not None and (from_date or to_date):
        raise typer.BadParameter("give --overlay, or --from-date and --to-date, not both")
    if overlay is not None:
        day = dt.date.fromisoformat(on) if on else first_date(load_overlay(overlay))
        base = runs.decider(policies, backend=backend, client=client)
        return base, day, runs.decider(policies, overlay, work, backend, client), day
    if not (from_date and to_date):
        raise typer.BadParameter("give --overlay FILE, or --from-date and --to-date")
    base = runs.decider(policies, backend=backend, client=client)
    return base, dt.date.fromisoformat(from_date), base, dt.date.fromisoformat(to_date)


@planning_app.command("compare")
def compare_command(
    out: Annotated[Path, typer.Option(help="directory for report.html and the tables")],
    overlay: OverlayOpt = None,
    from_date: Annotated[str | None, typer.Option(help="two dates under the same policy: the first")] = None,
    to_date: Annotated[str | None, typer.Option(help="... and the second")] = None,
    on: Annotated[str | None, typer.Option(help="the date of an overlay comparison (default: its first date)")] = None,
    png: Annotated[Path | None, typer.Option(help="directory for the charts as PNG")] = None,
    policies: Policies = POLICIES,
    scale: Scale = 0.001,
    seed: Seed = 1,
    persons: PersonsOpt = None,
    totals: TotalsOpt = None,
    cluster: Cluster = None,
) -> None:
    """Who newly qualifies, who loses, who gains or loses how much, and what it costs."""
    population = Population(scale, seed, persons, totals)
    with tempfile.TemporaryDirectory(prefix="planning-") as work, _cluster(cluster) as client:
        with _usage_errors():
            before, day_before, after, day_after = _sides(
                policies, overlay, from_date, to_date, on, Path(work), client=client
            )
        people = population.persons(day_after)  # the same people on both sides
        decisions_before = compare.slim(before.decide(people, day_before), before.programs)
        decisions_after = compare.slim(after.decide(people, day_after), after.programs)
        del people
    tables = build_compare(decisions_before, decisions_after, before.programs)
    lines = _overlay_lines(policies, overlay) if overlay else [f"{day_before} -> {day_after} under {before.version}"]
    cities, programs = _labels(policies)
    from . import charts  # see report

    target = charts.write_report(
        out,
        f"变化 What-if: {before.version} {day_before} -> {after.version} {day_after}",
        {"changes": charts.change_chart(tables["distribution"], programs)},
        tables,
        lines,
        png,
    )
    view = change_view(tables["summary"], {pid: pid.replace("_", " ") for pid in before.programs})
    counts = ["newly_eligible", "lost_eligibility", "gaining", "losing"]
    changed = view.filter(pl.any_horizontal(pl.col(c) != 0 for c in counts))
    (out / "summary.md").write_text(markdown(changed), encoding="utf-8")
    for line in lines:
        console.print(line, highlight=False)
    _print_table("Who is affected and what it costs (people; yuan)", changed)
    console.print(f"wrote {target} and the tables beside it", highlight=False)


def build_compare(before: pl.DataFrame, after: pl.DataFrame, programs: list[str]) -> dict[str, pl.DataFrame]:
    change = compare.changes(before, after, programs)
    return {
        "summary": compare.summary(change),
        "distribution": compare.distribution(change),
        # only the people whose outcome or amount changed (the rest are the summary's unchanged)
        "changes": change.filter((pl.col("change_fen") != 0) | (pl.col("outcome_before") != pl.col("outcome_after"))),
    }


@planning_app.command("explain")
def explain_command(
    reference: Annotated[str, typer.Option(help="the person's reference in the population")],
    overlay: OverlayOpt = None,
    from_date: Annotated[str | None, typer.Option(help="two dates under the same policy: the first")] = None,
    to_date: Annotated[str | None, typer.Option(help="... and the second")] = None,
    on: Annotated[str | None, typer.Option(help="the date of an overlay comparison (default: its first date)")] = None,
    lang: Annotated[str, typer.Option(help="zh or en")] = "en",
    width: Annotated[int, typer.Option(help="terminal width")] = 160,
    policies: Policies = POLICIES,
    scale: Scale = 0.001,
    seed: Seed = 1,
    persons: PersonsOpt = None,
    totals: TotalsOpt = None,
) -> None:
    """One person's decision under both sides, the two receipts side by side (the online decider)."""
    population = Population(scale, seed, persons, totals)
    with tempfile.TemporaryDirectory(prefix="planning-") as work:
        # a receipt is the online decision, whatever backend the population runs use
        with _usage_errors():
            before, day_before, after, day_after = _sides(
                policies, overlay, from_date, to_date, on, Path(work), "online"
            )
        try:
            row = compare.person_row(population.persons(day_after), reference)
        except LookupError as exc:
            raise typer.BadParameter(str(exc), param_hint="--reference") from None
        assert isinstance(before, OnlineDecider) and isinstance(after, OnlineDecider)
        text = compare.explain(row, (before, day_before), (after, day_after), lang, width)
    print(text)


def register(app: typer.Typer) -> None:
    """Add `report`, `compare` and `explain` to another Typer app (population/cli.py's `app`)."""
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    app.command("explain")(explain_command)
