"""Planning (issue 15): overlays, the indicator report, what-if comparisons, explain, the HTML report.

The people are built by hand so that each expected number follows from how they were built (and from
the policy files' values, read here apart from the engine); the report's own code is never used to
compute what it is checked against.
"""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import pytest
import typer
from cdp import Browser, chromium, page_url
from support import POLICIES
from typer.testing import CliRunner

from population.planning import charts, compare, report, runs
from population.planning.commands import build_compare, build_report, planning_app, register, yuan_text
from service.engine.columnar import schema as s
from service.policy.loader import load_policies, policy_version
from service.policy.overlay import load_overlay, materialize
from service.policy.yamlio import PolicyFileError

D = dt.date
PROGRAMS = ["elderly_care_subsidy", "child_basic_living_allowance", "disability_living_allowance"]
HANGZHOU_URBAN = ["330102", "330103", "330104", "330105", "330106", "330108", "330109", "330110", "330111"]
OVERLAYS = Path(__file__).resolve().parents[1] / "population" / "planning" / "overlays"
ON = D(2021, 1, 1)
# The deciders of the population runs are runs.BACKEND's (the one switch); a receipt is always the online one.


def person_table(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={s.REFERENCE: pl.String, s.WEIGHT: pl.Int64, **s.PERSON_SCHEMA})


def people(on: dt.date) -> pl.DataFrame:
    """Hangzhou's urban dibao standard is 1,080 yuan; the living allowance pays households below 1.5x
    it (1,620 yuan; 1,725 at 1,150). Tonglu's is 864 (1,296; 1,200 at 800)."""
    assessed = on - dt.timedelta(days=30)
    disabled = {"disability_grade": 2, "disability_category": "physical", "own_income_fen": 900_000}
    return person_table(
        [
            # elderly care subsidy: dibao, moderate loss of capacity, assessed a month before
            dict(reference="hz-elder", weight=120, birth_date=D(1940, 5, 1), region_code="330106",
                 household_status="dibao", capacity_level="moderate_loss", capacity_assessed_on=assessed),
            dict(reference="nb-elder", weight=70, birth_date=D(1945, 5, 1), region_code="330203",
                 household_status="dibao", capacity_level="severe_loss", capacity_assessed_on=assessed),
            dict(reference="nb-ordinary", weight=5000, birth_date=D(1945, 5, 1), region_code="330203",
                 household_status="ordinary"),
            # income per head 1,680 yuan: between 1.5 x 1,080 and 1.5 x 1,150
            dict(reference="hz-between", weight=10, birth_date=D(1980, 5, 1), region_code="330106",
                 household_status="ordinary", household_income_per_head_fen=168_000, **disabled),
            dict(reference="hz-dibao-disabled", weight=20, birth_date=D(1975, 5, 1), region_code="330102",
                 household_status="dibao", household_income_per_head_fen=50_000, **disabled),
            # income per head 1,250 yuan: between 1.5 x 800 and 1.5 x 864
            dict(reference="tl-between", weight=30, birth_date=D(1980, 5, 1), region_code="330122",
                 household_status="ordinary", household_income_per_head_fen=125_000, **disabled),
            dict(reference="tl-dibao-disabled", weight=40, birth_date=D(1976, 5, 1), region_code="330122",
                 household_status="dibao", household_income_per_head_fen=40_000, **disabled),
            dict(reference="hz-orphan", weight=5, birth_date=D(2012, 5, 1), region_code="330106",
                 child_status="community_orphan"),
        ]
    )  # fmt: skip


def write_overlay(path: Path, changes: str) -> Path:
    path.write_text("description: {zh: 测试, en: test}\nchanges:\n" + changes, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rise_and_cut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hangzhou's urban standard up to 1,150 and Tonglu's down to 800, both from 2021-01-01."""
    return write_overlay(
        tmp_path_factory.mktemp("overlay") / "rise_and_cut.yaml",
        f"  - parameter: dibao_standard\n    regions: {HANGZHOU_URBAN}\n"
        "    values: [{from: 2021-01-01, value: 1150, source: reference}]\n"
        "  - parameter: dibao_standard\n    regions: ['330122']\n"
        "    values: [{from: 2021-01-01, value: 800, source: reference}]\n",
    )


def dibao_yuan(policy: Any, region: str, on: dt.date) -> Decimal:
    return Decimal(policy.parameters["dibao_standard"].resolve(policy.regions.resolve(region, on), on).written)


# -- overlays --------------------------------------------------------------------------------------


def test_overlay_replaces_values_from_its_date_only() -> None:
    base = load_policies(POLICIES)
    proposed = load_policies(POLICIES, OVERLAYS / "hangzhou_dibao_1150.yaml")
    assert proposed.version != base.version
    for code in HANGZHOU_URBAN:
        assert dibao_yuan(proposed, code, ON) == 1150
        assert dibao_yuan(proposed, code, ON - dt.timedelta(days=1)) == dibao_yuan(
            base, code, ON - dt.timedelta(days=1)
        )
    for code in ("330122", "330112", "330203"):  # other counties keep their standards
        assert dibao_yuan(proposed, code, ON) == dibao_yuan(base, code, ON)
    nursing = load_policies(POLICIES, OVERLAYS / "nursing_full_60.yaml")
    share = nursing.parameters["nursing_share_fully_dependent"]
    region = nursing.regions.resolve("330203", ON)
    assert share.resolve(region, ON).value == Decimal("0.6")
    assert (
        share.resolve(region, ON - dt.timedelta(days=1)).value
        == base.parameters["nursing_share_fully_dependent"].resolve(region, ON - dt.timedelta(days=1)).value
    )
    assert len({base.version, proposed.version, nursing.version}) == 3


def test_materialized_proposal_loads_with_the_overlay_and_its_own_version(tmp_path: Path) -> None:
    overlay = OVERLAYS / "hangzhou_dibao_1150.yaml"
    root = materialize(POLICIES, overlay, tmp_path / "proposed")
    loaded = load_policies(root)
    assert dibao_yuan(loaded, "330106", ON) == 1150
    assert policy_version(root) == loaded.version == load_policies(POLICIES, overlay).version
    assert loaded.version != load_policies(POLICIES).version == policy_version(POLICIES)
    assert materialize(POLICIES, overlay, tmp_path / "again") and policy_version(tmp_path / "again") == loaded.version
    decider = runs.decider(POLICIES, overlay, tmp_path / "w")
    decided = decider.decide(people(ON).head(1), ON)
    assert decided[s.POLICY_VERSION].to_list() == [loaded.version]


def change(parameter: str = "dibao_standard", regions: str = "regions: ['330106']", **value: str) -> str:
    row = {"from": "2021-01-01", "value": "1", "source": "reference", **value}
    values = ", ".join(f"{k}: {v}" for k, v in row.items())
    return f"  - parameter: {parameter}\n    {regions}\n    values: [{{{values}}}]\n"


@pytest.mark.parametrize(
    "changes, problem",
    [
        (change("dibao_standad"), "unknown parameter 'dibao_standad'"),
        (change(regions="regions: ['339999']"), "unknown region 339999"),
        (change(**{"from": "2031-01-01"}), "outside the policy period"),
        (change(source="rumour"), "source"),
        (change(regions="region: '330106'"), "region"),
    ],
)
def test_bad_overlay_is_refused_naming_its_file(tmp_path: Path, changes: str, problem: str) -> None:
    bad = write_overlay(tmp_path / "bad_overlay.yaml", changes)
    with pytest.raises(PolicyFileError) as refused:
        load_policies(POLICIES, bad)
    assert str(bad) in str(refused.value) and problem in str(refused.value)
    with pytest.raises(PolicyFileError, match="bad_overlay"):  # as a proposed directory: refused too
        load_policies(materialize(POLICIES, bad, tmp_path / "copy"))


def test_overlay_at_a_city_says_which_counties_keep_their_own(tmp_path: Path) -> None:
    overlay = write_overlay(
        tmp_path / "city.yaml",
        "  - parameter: dibao_standard\n    regions: ['330100']\n"
        "    values: [{from: 2021-01-01, value: 1150, source: reference}]\n",
    )
    policy = load_policies(POLICIES, overlay)
    assert dibao_yuan(policy, "330106", ON) == dibao_yuan(load_policies(POLICIES), "330106", ON)  # not reached
    loaded = load_overlay(overlay)
    from service.policy.overlay import apply, describe

    apply(loaded, load_policies(POLICIES).parameters, policy.regions, policy.manifest.period)
    assert any("330106" in line and "values of their own" in line for line in describe(loaded))


# -- the report ------------------------------------------------------------------------------------


def decision_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A decision table built by hand: each row's program columns given, the rest null."""
    schema: dict[str, pl.DataType] = {s.REFERENCE: pl.String(), s.WEIGHT: pl.Int64(), **s.decision_schema(PROGRAMS)}
    full = [{c: r.get(c) for c in schema} for r in rows]
    return pl.DataFrame(full, schema=schema)


def paid(pid: str, fen: int, kept: bool = True, outcome: str = "ELIGIBLE") -> dict[str, Any]:
    return {s.column(pid, s.OUTCOME): outcome, s.column(pid, s.AMOUNT): fen if kept else 0, s.column(pid, s.KEPT): kept}


ELDERLY, CHILD, LIVING = PROGRAMS


def hand_decisions(on: dt.date) -> pl.DataFrame:
    base = {s.AS_OF: on, s.POLICY_VERSION: "v", s.IN_ZHEJIANG: True}
    return decision_rows(
        [
            {**base, s.REFERENCE: "a", s.WEIGHT: 300, s.CITY: "330100", **paid(ELDERLY, 30_000)},
            {**base, s.REFERENCE: "b", s.WEIGHT: 200, s.CITY: "330200", **paid(ELDERLY, 50_000)},
            {**base, s.REFERENCE: "c", s.WEIGHT: 50, s.CITY: "330100", **paid(ELDERLY, 0, kept=False)},
            {**base, s.REFERENCE: "d", s.WEIGHT: 4000, s.CITY: "330200", **paid(ELDERLY, 0, outcome="INELIGIBLE")},
            {**base, s.REFERENCE: "e", s.WEIGHT: 7, s.CITY: "330100", **paid(CHILD, 84_800), **paid(LIVING, 32_400)},
            {**base, s.REFERENCE: "f", s.WEIGHT: 9, s.CITY: None, s.IN_ZHEJIANG: False},
            {**base, s.REFERENCE: "g", s.WEIGHT: 11, s.CITY: None, s.ERROR: "FAILED_PRECONDITION: no value"},
        ]
    )


def expected(decisions: pl.DataFrame) -> dict[tuple[str, str], tuple[int, int]]:
    """(program, city) -> (recipients, monthly cost), by a plain loop over the rows."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for row in decisions.iter_rows(named=True):
        for pid in PROGRAMS:
            if row[s.CITY] is None or row[s.column(pid, s.OUTCOME)] is None:
                continue
            is_paid = (
                row[s.column(pid, s.OUTCOME)] == "ELIGIBLE"
                and row[s.column(pid, s.KEPT)]
                and row[s.column(pid, s.AMOUNT)] > 0
            )
            for city in (row[s.CITY], "330000"):
                n, fen = out.get((pid, city), (0, 0))
                if is_paid:
                    n, fen = n + row[s.WEIGHT], fen + row[s.WEIGHT] * row[s.column(pid, s.AMOUNT)]
                out[(pid, city)] = (n, fen)
    return out


def test_report_counts_recipients_and_cost_in_fen() -> None:
    decisions = hand_decisions(D(2020, 12, 31))
    table = report.indicators(decisions, PROGRAMS)
    want = expected(decisions)
    got = {(r["program"], r["city_code"]): r for r in table.iter_rows(named=True)}
    assert set(got) == set(want)
    for key, (recipients, monthly) in want.items():
        assert (got[key]["recipients"], got[key]["monthly_cost_fen"]) == (recipients, monthly), key
        assert got[key]["annual_cost_fen"] == 12 * monthly and got[key]["annual_basis"] == "12x"
    assert table.schema["monthly_cost_fen"] == pl.Int64
    summary = report.run_summary(decisions).row(0, named=True)
    assert (summary["people"], summary["undecided_people"], summary["outside_zhejiang"]) == (
        sum(decisions[s.WEIGHT]),
        11,
        9,
    )


def test_annual_cost_from_month_runs_is_their_sum() -> None:
    on = D(2020, 12, 31)
    months = [hand_decisions(D(2020, m, 1)) for m in range(1, 13)]
    months[0] = months[0].filter(pl.col(s.REFERENCE) != "b")  # b paid 11 months of 12
    month_tables = pl.concat(report.indicators(m, PROGRAMS) for m in months)
    table = report.annual_from_months(report.indicators(hand_decisions(on), PROGRAMS), {on: month_tables})
    row = table.filter((pl.col("program") == ELDERLY) & (pl.col("city_code") == "330200")).row(0, named=True)
    assert row["annual_basis"] == "months" and row["annual_cost_fen"] == 11 * 200 * 50_000


def totals_for(years: list[int], elderly: dict[str, int]) -> pl.DataFrame:
    rows = [
        {"year": y, "city_code": city, "age_band": band, "people": n * (1 if band == "60+" else 3)}
        for y in years
        for city, n in elderly.items()
        for band in ("0-17", "18-59", "60+")
    ]
    return pl.DataFrame(
        rows, schema={"year": pl.Int32, "city_code": pl.String, "age_band": pl.String, "people": pl.Int64}
    )


def test_coverage_against_the_binding_target_with_its_margin() -> None:
    decisions = pl.concat([hand_decisions(D(2019, 12, 31)), hand_decisions(D(2020, 12, 31))])
    elderly_people = {"330100": 9_000, "330200": 11_000}
    totals = totals_for([2019, 2020], elderly_people)
    tables = build_report(decisions, totals, PROGRAMS)
    recipients_2020 = 300 + 200  # a and b; c's amount was taken by an interaction, d is ineligible
    coverage_2020 = recipients_2020 / sum(elderly_people.values())
    cov = tables["coverage"].filter(pl.col("year") == 2020)
    by_city = {r["city_code"]: r["coverage"] for r in cov.iter_rows(named=True)}
    assert by_city == pytest.approx({"330100": 300 / 9_000, "330200": 200 / 11_000, "330000": coverage_2020})
    target = report.load_plan()
    goal = next(f for f in target if f.indicator == "elderly_subsidy_coverage" and f.year == 2020)
    assert goal.binding and goal.value == 0.03 and goal.comparison == "ge"
    row = tables["plan"].filter((pl.col("indicator") == goal.indicator) & (pl.col("year") == 2020)).row(0, named=True)
    assert row["margin"] == pytest.approx(coverage_2020 - 0.03)
    assert row["status"] == ("met" if coverage_2020 >= 0.03 else "not met")
    finding = next(f for f in tables["findings_text"] if "2020" in f and "coverage" in f.lower())
    assert f"{coverage_2020 - 0.03:+.2%}" in finding and "binding" in finding


def test_2015_disagreement_with_the_plan_is_reported_as_a_finding() -> None:
    on = D(2015, 12, 31)
    decisions = hand_decisions(on)  # 7 children covered; the plan reports 45,800
    decisions = decisions.with_columns(pl.lit(None, pl.String).alias(s.column(ELDERLY, s.OUTCOME)))  # not in force
    decisions = pl.concat([decisions, hand_decisions(D(2016, 12, 31))])  # decided from 2016
    tables = build_report(decisions, totals_for([2015, 2016], {"330100": 9_000, "330200": 11_000}), PROGRAMS)
    plan = {r["indicator"]: r for r in tables["plan"].filter(pl.col("year") == 2015).iter_rows(named=True)}
    assert plan["children_covered"]["status"] == "disagrees"
    assert plan["children_covered"]["model_value"] == 7 and plan["children_covered"]["margin"] == 7 - 45_800
    assert plan["elderly_subsidy_recipients"]["status"] == "not decided"
    text = " ".join(tables["findings_text"])
    assert "45,800" in text and "disagree" in text
    assert "250,000" in text and "not decided on 2015-12-31" in text
    later = next(f for f in tables["findings_text"] if f.startswith("elderly_subsidy_recipients"))
    assert f"on 2016-12-31, the first date it is decided in this run, the model gives {300 + 200:,}" in later


def test_report_over_the_online_decider() -> None:
    """End to end on real decisions: the elderly paid are the two dibao elders built to qualify."""
    on = D(2020, 12, 31)
    decider = runs.decider(POLICIES)
    decisions = runs.decide_dates(decider, people, [on])
    table = report.indicators(decisions, decider.programs)
    elderly = table.filter((pl.col("program") == ELDERLY) & (pl.col("city_code") == "330000")).row(0, named=True)
    assert elderly["recipients"] == 120 + 70
    policy = load_policies(POLICIES)
    moderate = policy.parameters["elderly_amount_moderate"].resolve(policy.regions.resolve("330106", on), on).value
    severe = policy.parameters["elderly_amount_severe"].resolve(policy.regions.resolve("330203", on), on).value
    assert elderly["monthly_cost_fen"] == 120 * moderate + 70 * severe


# -- what-if ---------------------------------------------------------------------------------------


def allowance_fen(policy: Any, region: str, on: dt.date) -> int:
    """The living allowance by its rule: 30% of the local dibao standard, to the yuan, half up."""
    share = policy.parameters["living_allowance_share"].resolve(policy.regions.resolve(region, on), on).written
    return int((dibao_yuan(policy, region, on) * share).quantize(Decimal(1), ROUND_HALF_UP)) * 100


def test_compare_counts_who_qualifies_loses_gains_and_what_it_costs(rise_and_cut: Path, tmp_path: Path) -> None:
    base, proposed = load_policies(POLICIES), load_policies(POLICIES, rise_and_cut)
    persons = people(ON)
    before = runs.decider(POLICIES).decide(persons, ON)
    after = runs.decider(POLICIES, rise_and_cut, tmp_path).decide(persons, ON)
    tables = build_compare(before, after, PROGRAMS)
    slim = build_compare(compare.slim(before, PROGRAMS), compare.slim(after, PROGRAMS), PROGRAMS)
    assert all(slim[name].equals(tables[name]) for name in tables)
    living = {r["city_code"]: r for r in tables["summary"].filter(pl.col("program") == LIVING).iter_rows(named=True)}

    hz_old, hz_new = allowance_fen(base, "330106", ON), allowance_fen(proposed, "330106", ON)
    tl_old, tl_new = allowance_fen(base, "330122", ON), allowance_fen(proposed, "330122", ON)
    assert hz_new > hz_old and tl_new < tl_old
    # Tonglu is Hangzhou's too: hz-between qualifies, hz-dibao-disabled gains, tl-between loses the
    # allowance, tl-dibao-disabled is paid less; Ningbo has none of them
    gains, losses = 10 * hz_new + 20 * (hz_new - hz_old), -(30 * tl_old + 40 * (tl_old - tl_new))
    for city in ("330100", "330000"):
        row = living[city]
        assert (row["newly_eligible"], row["lost_eligibility"], row["gaining"], row["losing"]) == (10, 30, 30, 70)
        assert (row["gains_fen"], row["losses_fen"]) == (gains, losses)
        assert row["monthly_cost_change_fen"] == gains + losses and row["annual_cost_change_fen"] == 12 * (
            gains + losses
        )
    assert living["330200"]["gaining"] == living["330200"]["losing"] == living["330200"]["monthly_cost_change_fen"] == 0
    for program in (ELDERLY, CHILD):  # the dibao standard does not enter their amounts or tests
        rows = tables["summary"].filter(pl.col("program") == program)
        assert rows["monthly_cost_change_fen"].to_list() == [0] * rows.height
    dist = {
        r["change_fen"]: r["people"]
        for r in tables["distribution"].filter(pl.col("program") == LIVING).iter_rows(named=True)
    }
    assert dist == {hz_new: 10, hz_new - hz_old: 20, -tl_old: 30, tl_new - tl_old: 40}
    assert set(tables["changes"]["version_after"]) == {proposed.version}
    assert set(tables["changes"]["version_before"]) == {base.version}


def test_compare_two_dates_under_one_policy() -> None:
    """Hangzhou's urban standard rose from 1,017 to 1,080 yuan on 2020-07-01 (the policy files)."""
    policy = load_policies(POLICIES)
    first, second = D(2020, 6, 30), D(2020, 7, 1)
    decider = runs.decider(POLICIES)
    persons = people(second).filter(pl.col(s.REFERENCE) == "hz-dibao-disabled")
    tables = build_compare(decider.decide(persons, first), decider.decide(persons, second), PROGRAMS)
    row = tables["summary"].filter((pl.col("program") == LIVING) & (pl.col("city_code") == "330000")).row(0, named=True)
    change = allowance_fen(policy, "330102", second) - allowance_fen(policy, "330102", first)
    assert change > 0 and row["gains_fen"] == 20 * change and row["gaining"] == 20


def test_explain_prints_both_receipts_side_by_side(rise_and_cut: Path, tmp_path: Path) -> None:
    base = runs.decider(POLICIES, backend="online")
    proposed = runs.decider(POLICIES, rise_and_cut, tmp_path, backend="online")
    row = compare.person_row(people(ON), "hz-between")
    text = compare.explain(row, (base, ON), (proposed, ON), "en", 200)  # type: ignore[arg-type]
    new = allowance_fen(load_policies(POLICIES, rise_and_cut), "330106", ON)
    head = next(line for line in text.splitlines() if "policy" in line)
    assert head.index(base.version) < head.index(proposed.version)
    assert f"{new / 100:,.2f}" in text and "not eligible" in text
    assert sum("Xihu District (330106)" in line for line in text.splitlines()) == 1  # two receipts, one line
    assert text.count("Xihu District (330106)") == 2


# -- pictures and commands -------------------------------------------------------------------------


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is needed")
def test_html_report_renders_every_chart_without_the_network(tmp_path: Path) -> None:
    decisions = pl.concat([hand_decisions(D(y, 12, 31)) for y in range(2016, 2021)])
    tables = build_report(decisions, totals_for(list(range(2016, 2021)), {"330100": 9_000, "330200": 11_000}), PROGRAMS)
    findings = tables.pop("findings_text")
    change = pl.DataFrame(
        {"program": [LIVING, LIVING, ELDERLY], "change_fen": [2100, -6400, 3000], "people": [20, 40, 5]}
    )
    regions = {"330100": "杭州市 Hangzhou", "330200": "宁波市 Ningbo", "330000": "浙江省 Zhejiang"}
    chart_set: dict[str, alt.TopLevelMixin] = {
        "coverage": charts.coverage_chart(tables["coverage"], report.load_plan(), regions),
        "coverage_by_city": charts.coverage_by_city_chart(tables["coverage"], report.load_plan(), regions),
        "cost": charts.cost_chart(tables["indicators"], {}),
        "changes": charts.change_chart(change, {}),
    }
    page = charts.write_report(tmp_path / "out", "测试 test", chart_set, tables, findings, tmp_path / "png")
    text = page.read_text(encoding="utf-8")
    assert charts.remote_references(text) == []
    for name in tables:
        assert pl.read_parquet(tmp_path / "out" / f"{name}.parquet").equals(tables[name])
        assert (tmp_path / "out" / f"{name}.csv").stat().st_size > 0
    for name in chart_set:
        assert (tmp_path / "png" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    browser = Browser()
    try:
        browser.open(page_url(page))
        marks = (
            "Array.from(document.querySelectorAll('.chart'))"
            ".map(d => d.querySelectorAll('svg path, svg line, svg rect, svg text').length)"
        )
        rendered = browser.wait_for(
            f"(() => {{ const m = {marks}; return m.length && m.every(n => n > 0) ? m : null; }})()"
        )
        assert rendered and len(rendered) == len(chart_set), browser.evaluate(marks)
        assert browser.evaluate("document.querySelectorAll('.chart svg').length") == len(chart_set)
        requests = browser.requests()
        assert requests and all(url.startswith(("file:", "data:", "blob:", "about:")) for url in requests), requests
        assert browser.failures() == []
    finally:
        browser.close()


def test_commands_report_compare_explain(tmp_path: Path) -> None:
    persons = people(ON)
    persons.write_parquet(tmp_path / "persons.parquet")
    totals_for([2020, 2021], {"330100": 9_000, "330200": 11_000}).write_parquet(tmp_path / "totals.parquet")
    given = ["--persons", str(tmp_path / "persons.parquet"), "--totals", str(tmp_path / "totals.parquet")]
    cli = CliRunner()
    done = cli.invoke(planning_app, ["report", "--as-of", "2020-12-31", "--out", str(tmp_path / "r"), *given])
    assert done.exit_code == 0, done.output
    assert "finding" in done.output and (tmp_path / "r" / "report.html").is_file()
    assert pl.read_csv(tmp_path / "r" / "indicators.csv").height > 0
    overlay = OVERLAYS / "hangzhou_dibao_1150.yaml"
    done = cli.invoke(planning_app, ["compare", "--overlay", str(overlay), "--out", str(tmp_path / "c"), *given])
    assert done.exit_code == 0, done.output
    summary = pl.read_parquet(tmp_path / "c" / "summary.parquet")
    row = summary.filter((pl.col("program") == LIVING) & (pl.col("city_code") == "330000")).row(0, named=True)
    assert row["newly_eligible"] == 10 and row["gaining"] == 30
    assert (tmp_path / "c" / "summary.md").read_text(encoding="utf-8").startswith("| program |")
    mounted = typer.Typer()  # as population/cli.py mounts them
    mounted.callback()(lambda: None)
    register(mounted)
    done = cli.invoke(mounted, ["explain", "--reference", "hz-between", "--overlay", str(overlay), *given])
    assert done.exit_code == 0, done.output
    assert "345.00" in done.output
    dates = ["--from-date", "2020-06-30", "--to-date", "2020-07-01", "--out", str(tmp_path / "d"), *given]
    done = cli.invoke(mounted, ["compare", *dates])
    assert done.exit_code == 0, done.output
    assert pl.read_parquet(tmp_path / "d" / "distribution.parquet").height > 0
    done = cli.invoke(planning_app, ["compare", "--out", str(tmp_path / "x"), *given])
    assert done.exit_code != 0
    bad = write_overlay(tmp_path / "bad.yaml", change("no_such_parameter"))
    done = cli.invoke(planning_app, ["compare", "--overlay", str(bad), "--out", str(tmp_path / "x"), *given])
    assert done.exit_code == 2 and "bad.yaml" in done.output and "no_such_parameter" in done.output


def test_materialize_keeps_a_proposals_own_overlays(tmp_path: Path) -> None:
    first = materialize(POLICIES, OVERLAYS / "hangzhou_dibao_1150.yaml", tmp_path / "one")
    second = materialize(first, OVERLAYS / "nursing_full_60.yaml", tmp_path / "two")
    policy = load_policies(second)
    assert dibao_yuan(policy, "330106", ON) == 1150
    assert policy.parameters["nursing_share_fully_dependent"].resolve(
        policy.regions.resolve("330106", ON), ON
    ).value == Decimal("0.6")
    shutil.rmtree(first)
    assert load_policies(second).version == policy.version
    # the same two overlays given as a directory to the loader: the same set, the same version
    assert load_policies(POLICIES, OVERLAYS).version == policy.version


def test_yuan_text_is_exact_for_losses_too() -> None:
    assert [yuan_text(f) for f in (0, 5, -5, 34500, -640, -123456789)] == [
        "0.00", "0.05", "-0.05", "345.00", "-6.40", "-1,234,567.89"
    ]  # fmt: skip


def test_cluster_runs_give_the_same_tables(tmp_path: Path) -> None:
    """--cluster local:2: a real LocalCluster's workers decide, and every table equals the one
    decided in this process (report and compare, an overlay's proposed set included)."""
    persons = people(ON)
    persons.write_parquet(tmp_path / "persons.parquet")
    totals_for([2020, 2021], {"330100": 9_000, "330200": 11_000}).write_parquet(tmp_path / "totals.parquet")
    given = ["--persons", str(tmp_path / "persons.parquet"), "--totals", str(tmp_path / "totals.parquet")]
    overlay = OVERLAYS / "hangzhou_dibao_1150.yaml"
    cli = CliRunner()
    for where, extra in (("here", []), ("cluster", ["--cluster", "local:2"])):
        done = cli.invoke(
            planning_app, ["report", "--as-of", "2020-12-31", "--out", str(tmp_path / where), *given, *extra]
        )
        assert done.exit_code == 0, done.output
        compared = ["compare", "--overlay", str(overlay), "--out", str(tmp_path / f"{where}-c"), *given, *extra]
        done = cli.invoke(planning_app, compared)
        assert done.exit_code == 0, done.output
    for name in ("indicators", "coverage", "plan"):
        assert pl.read_parquet(tmp_path / "cluster" / f"{name}.parquet").equals(
            pl.read_parquet(tmp_path / "here" / f"{name}.parquet")
        ), name
    for name in ("summary", "distribution", "changes"):
        here = pl.read_parquet(tmp_path / "here-c" / f"{name}.parquet")
        assert here.height > 0 and pl.read_parquet(tmp_path / "cluster-c" / f"{name}.parquet").equals(here), name
    done = cli.invoke(planning_app, ["report", "--out", str(tmp_path / "x"), *given, "--cluster", "nowhere"])
    assert done.exit_code == 2 and "local:N" in done.output
