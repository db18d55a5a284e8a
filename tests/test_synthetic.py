"""The synthetic Zhejiang population: reproducible, calibrated to its data file, decidable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from population import synthetic
from population.backends import Backend, load_decider
from service.engine.columnar.schema import PERSON_SCHEMA, REFERENCE, WEIGHT
from service.policy.loader import load_policies

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
BACKEND: Backend = "columnar"
TAGS = {"official", "plan", "secondary", "national", "assumption"}
ON = dt.date(2018, 6, 30)


@pytest.fixture(scope="module")
def data() -> dict:
    return yaml.safe_load(synthetic.DATA.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sample() -> synthetic.Population:
    return synthetic.generate(ON, 0.01, 11)


def _cell(totals: pl.DataFrame, year: int, band: str | None = None, city: str | None = None) -> int:
    rows = totals.filter(pl.col("year") == year)
    if band:
        rows = rows.filter(pl.col("age_band") == band)
    if city:
        rows = rows.filter(pl.col("city_code") == city)
    return int(rows["people"].sum())


def test_every_figure_has_a_value_source_and_tag(data):
    for section in ("figures", "plan_indicators", "comparisons"):
        for name, figure in data[section].items():
            assert {"value", "source", "tag"} <= set(figure), name
            assert figure["tag"] in TAGS, name
            assert str(figure["source"]).strip(), name
            if figure["tag"] == "assumption":
                assert str(figure.get("reason", "")).strip(), f"{name}: an assumption says why"


def test_the_plans_indicators_are_not_inputs(tmp_path, data):
    # Changing what the report compares against must not change a single generated person.
    changed = dict(data)
    for section in ("plan_indicators", "comparisons"):
        changed[section] = {k: {**v, "value": 1} for k, v in data[section].items()}
    path = tmp_path / "figures.yaml"
    path.write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")
    a = synthetic.generate(ON, 0.001, 4)
    b = synthetic.generate(ON, 0.001, 4, data=path)
    assert a.persons.equals(b.persons) and a.totals.equals(b.totals)


def test_same_seed_same_tables_other_seed_other_people(sample):
    again = synthetic.generate(ON, 0.01, 11)
    assert again.persons.equals(sample.persons)
    assert again.totals.equals(sample.totals)
    other = synthetic.generate(ON, 0.01, 12)
    assert not other.persons.equals(sample.persons)
    assert other.persons["birth_date"].sort().to_list() != sample.persons["birth_date"].sort().to_list()


def test_person_table_schema(sample):
    persons = sample.persons
    assert persons.columns == [*PERSON_SCHEMA, REFERENCE, WEIGHT]
    assert dict(persons.schema) == {**PERSON_SCHEMA, REFERENCE: pl.String(), WEIGHT: pl.Int64()}
    assert persons[REFERENCE].is_unique().all()
    assert persons[WEIGHT].unique().to_list() == [100]
    assert synthetic.generate(ON, 1 / 3000, 11).persons[WEIGHT].unique().to_list() == [3000]
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            synthetic.generate(ON, bad, 11)
    for outside in (dt.date(2013, 12, 31), dt.date(2026, 1, 1)):  # the data's year ends: 2013-2025
        with pytest.raises(ValueError):
            synthetic.generate(outside, 0.001, 11)


def test_totals_follow_the_data_file(data):
    figures = data["figures"]
    full = synthetic.registered_totals(1.0)
    cells = full.filter(pl.col("year") == 2015).height  # cities x bands: each rounded to a person
    assert full.schema == synthetic.TOTALS_SCHEMA
    assert abs(_cell(full, 2015, "60+") - figures["elderly_60_plus_2015"]["value"]) <= cells
    assert abs(_cell(full, 2020, "60+") - figures["elderly_60_plus_2020_forecast"]["value"]) <= cells
    for year, bands in figures["registered_by_age"]["value"].items():
        for band, people in bands.items():
            assert abs(_cell(full, int(year), band) - people) <= cells, (year, band)
    for city, known in figures["registered_by_city_2017"]["value"].items():
        assert abs(_cell(full, 2017, city=city) - known["total"]) <= 3
        assert abs(_cell(full, 2017, "60+", city) - known["60+"]) <= 1
    # Interpolated between the anchors: 2016 between 2015 and 2017, 2018-2019 towards 2020.
    elderly = [_cell(full, y, "60+") for y in range(2015, 2021)]
    assert elderly == sorted(elderly) and len(set(elderly)) == len(elderly)
    # At 1%: each cell is whole rows of 100 people, within half a row of the full figure.
    sampled = synthetic.registered_totals(0.01)
    joined = full.join(sampled, on=["year", "city_code", "age_band"], suffix="_sampled")
    assert (joined["people_sampled"] % 100 == 0).all()
    assert ((joined["people_sampled"] - joined["people"]).abs() <= 50).all()
    assert abs(_cell(sampled, 2015, "60+") - figures["elderly_60_plus_2015"]["value"]) <= 50 * cells


def test_city_shares_follow_the_data_file(sample, data):
    census = data["figures"]["resident_by_city_2020_census"]["value"]
    totals = sample.totals.filter(pl.col("year") == ON.year)
    assert set(totals["city_code"]) == set(census)
    persons = sample.persons.with_columns(city_code=pl.col("region_code").str.slice(0, 4) + "00")
    people = (
        persons.group_by("city_code")
        .agg(pl.col(WEIGHT).sum())
        .with_columns(share=pl.col(WEIGHT) / pl.col(WEIGHT).sum())
    )
    expected = (
        totals.group_by("city_code")
        .agg(pl.col("people").sum())
        .with_columns(expected=pl.col("people") / pl.col("people").sum())
    )
    both = people.join(expected, on="city_code")
    assert both.height == len(census)
    # The mix of ages differs a little by city (Ningbo is older, and the disabled are mostly old).
    assert (both["share"] - both["expected"]).abs().max() < 0.01, both
    # The other cities follow their census shares (an assumption of the data file).
    others = both.filter(~pl.col("city_code").is_in(["330100", "330200"]))
    ratio = others.with_columns(census=pl.col("city_code").replace_strict(census, return_dtype=pl.Float64))
    ratio = ratio.with_columns(r=pl.col("expected") / pl.col("census"))
    assert ratio["r"].max() / ratio["r"].min() < 1.001


def test_people_are_followed_from_date_to_date():
    early = synthetic.generate(dt.date(2016, 12, 31), 0.01, 5).persons
    late = synthetic.generate(dt.date(2020, 12, 31), 0.01, 5).persons
    # A run over many dates draws the same people as one date at a time.
    together = [p.persons for p in synthetic.snapshots([dt.date(2016, 12, 31), dt.date(2020, 12, 31)], 0.01, 5)]
    assert together[0].equals(early) and together[1].equals(late)
    both = early.join(late, on=REFERENCE, suffix="_late")
    assert both.height > 0.6 * early.height  # most are still there (and still have a fact)
    assert (both["birth_date"] == both["birth_date_late"]).all()
    assert (
        both["disability_category"].eq_missing(both["disability_category_late"]) | both["disability_category"].is_null()
    ).all()
    # A certificate, once held, is still held four years on.
    held = both.filter(pl.col("disability_grade").is_not_null())
    assert (held["disability_grade"] == held["disability_grade_late"]).all()
    # The same place: the code the area had on each date (codes change, cities do not).
    assert (both["region_code"].str.slice(0, 4) == both["region_code_late"].str.slice(0, 4)).all()
    # The household's status moves for some, not for most.
    moved = (both["household_status"] != both["household_status_late"]).sum() / both.height
    assert 0 < moved < 0.5
    # New people (births, onsets, households falling on hard times) appear, others leave.
    assert late.join(early, on=REFERENCE, how="anti").height > 0
    assert early.join(late, on=REFERENCE, how="anti").height > 0


def test_facts_on_the_date_are_plausible(sample):
    p = sample.persons.with_columns(
        age=(pl.lit(ON).dt.year() - pl.col("birth_date").dt.year())
        - (pl.lit(ON).dt.ordinal_day() < pl.col("birth_date").dt.ordinal_day()).cast(pl.Int32)
    )
    facts = yaml.safe_load((POLICIES / "facts.yaml").read_text(encoding="utf-8"))["facts"]
    for column in (
        "household_status",
        "disability_category",
        "self_care",
        "capacity_level",
        "child_status",
        "education_level",
    ):
        assert set(p[column].drop_nulls()) <= set(facts[column]["values"]), column
    assert (p["birth_date"] <= ON).all()
    assessed = p.filter(pl.col("capacity_level").is_not_null())
    assert assessed.height and (assessed["age"] >= 59).all()  # 59: a birthday on the date
    assert p.filter(pl.col("capacity_level").is_null() != pl.col("capacity_assessed_on").is_null()).height == 0
    age_of = (ON - assessed["capacity_assessed_on"]).dt.total_days()
    assert (age_of >= 0).all() and (age_of < 365).all()
    valid = (age_of < 180).sum() / assessed.height
    assert 0.8 < valid < 1  # a few missed their re-assessment
    disabled = p.filter(pl.col("disability_grade").is_not_null())
    assert disabled["disability_grade"].is_between(1, 4).all() and disabled["disability_category"].is_not_null().all()
    assert p.filter(pl.col("disability_grade").is_null() & pl.col("disability_category").is_not_null()).height == 0
    low = p.filter(pl.col("household_status").is_in(["dibao", "destitute"]))["household_income_per_head_fen"]
    high = p.filter(pl.col("household_status") == "ordinary")["household_income_per_head_fen"]
    assert low.max() < high.quantile(0.5)
    children = p.filter(pl.col("child_status").is_not_null())
    assert children.height and (children["age"] <= 22).all()
    # Weighted shares near the data file's: 1.5% in dibao, dibao-edge or destitute households.
    total = int(sample.totals.filter(pl.col("year") == ON.year)["people"].sum())
    poor = int(p.filter(pl.col("household_status") != "ordinary")[WEIGHT].sum())
    assert 0.012 < poor / total < 0.02


def test_every_row_is_decidable():
    decider = load_decider(POLICIES, BACKEND)
    paid: dict[str, int] = {}
    for on in (dt.date(2016, 7, 1), dt.date(2020, 12, 31)):
        persons = synthetic.generate(on, 0.001, 8).persons
        # Some of everyone, and every kind of person the programs look for.
        picks = [
            persons.sample(150, seed=1),
            persons.filter(pl.col("child_status").is_not_null()).head(15),
            persons.filter(pl.col("capacity_level").is_in(["mild_loss", "moderate_loss", "severe_loss"])).head(15),
            persons.filter(pl.col("disability_grade") <= 2).head(15),
        ]
        rows = pl.concat(picks).unique(REFERENCE, keep="first", maintain_order=True)
        decided = decider.decide(rows, on)
        assert decided.height == rows.height
        assert decided["error"].null_count() == decided.height, decided["error"].drop_nulls().head(3).to_list()
        for program in decider.programs:
            paid[program] = paid.get(program, 0) + decided.filter(pl.col(f"{program}.outcome") == "ELIGIBLE").height
    assert all(paid.values()), paid


def test_region_codes_are_those_in_use_on_the_date():
    regions = load_policies(POLICIES).regions
    seen: dict[dt.date, set[str]] = {}
    for on in (dt.date(2016, 6, 30), dt.date(2020, 6, 30)):
        codes = set(synthetic.generate(on, 0.01, 3).persons["region_code"])
        assert all(regions.resolve(code, on).code == code for code in codes), on
        seen[on] = codes
    # Fenghua was a city (330283) until 2016-09-14, then a district (330213); Longgang (330383)
    # was part of Cangnan (330327) until 2019-09-25.
    assert "330283" in seen[dt.date(2016, 6, 30)] and "330213" not in seen[dt.date(2016, 6, 30)]
    assert "330213" in seen[dt.date(2020, 6, 30)] and "330283" not in seen[dt.date(2020, 6, 30)]
    assert "330383" in seen[dt.date(2020, 6, 30)] and "330383" not in seen[dt.date(2016, 6, 30)]
