"""The columnar backend decides whole tables exactly as the online engine decides one person.

Both deciders (population.online.OnlineDecider, the service core one request at a time, and
service.engine.columnar.ColumnarDecider) produce the decision table of schema.py; every policy case
and a few thousand generated people must give equal tables, and so must a policy directory with a
program the Python code has never seen.
"""

from __future__ import annotations

import calendar
import datetime as dt
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import POLICIES

from policycheck.cases import load_cases
from policycheck.requests import request
from policycheck.sample import People
from population.backends import load_decider
from population.online import OnlineDecider
from service.engine.columnar import engine
from service.engine.columnar.compile import month_thresholds
from service.engine.columnar.engine import ColumnarDecider
from service.engine.columnar.persons import from_request
from service.engine.columnar.rows import age_on as columnar_age_on
from service.engine.columnar.rows import born
from service.engine.columnar.schema import PERSON_SCHEMA, REFERENCE
from service.policy.expressions import add_months
from service.request import age_on

ROW_SCHEMA = {REFERENCE: pl.String(), **PERSON_SCHEMA}
GENERATED = 4000


def differing_rows(want: pl.DataFrame, got: pl.DataFrame, persons: pl.DataFrame) -> str:
    """The rows where the two tables differ, column by column (at most five a column)."""
    lines = []
    for name in want.columns:
        pairs = list(zip(want[name].to_list(), got[name].to_list(), strict=True))
        rows = [i for i, (a, b) in enumerate(pairs) if a != b]
        for i in rows[:5]:
            lines.append(
                f"{name}: online {pairs[i][0]!r}, columnar {pairs[i][1]!r}; person {persons.row(i, named=True)}"
            )
        if len(rows) > 5:
            lines.append(f"{name}: {len(rows) - 5} more rows differ")
    return "\n".join(lines)


def assert_same(
    online: OnlineDecider, columnar: ColumnarDecider, rows: list[dict[str, Any]], on: dt.date
) -> pl.DataFrame:
    """Both deciders' tables for the rows on the date are equal; returns the columnar one."""
    persons = pl.DataFrame(rows, schema=ROW_SCHEMA, orient="row")
    want, got = online.decide(persons, on), columnar.decide(persons, on)
    try:
        assert_frame_equal(want, got)
    except AssertionError as exc:
        raise AssertionError(f"{on}: {exc}\n{differing_rows(want, got, persons)}") from None
    return got


def by_date(requests: list[Any]) -> dict[dt.date, list[dict[str, Any]]]:
    groups: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for i, req in enumerate(requests):
        row = from_request(req)
        row[REFERENCE] = str(i)
        groups[dt.date.fromisoformat(req.as_of)].append(row)
    return groups


@pytest.fixture(scope="module")
def deciders() -> tuple[OnlineDecider, ColumnarDecider]:
    return OnlineDecider.load(POLICIES), ColumnarDecider.load(POLICIES)


def test_every_policy_case(deciders):
    """Every case of policies/tests as a row, on its date. A case is left out only when its request
    cannot be a row at all: a date that is no real date (the row holds dates, not text)."""
    online, columnar = deciders
    groups: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    skipped = []
    cases = load_cases(POLICIES / "tests")
    for case in cases:
        c = case.data
        req = request(c["as_of"], c.get("programs"), **c["person"])
        try:
            on = dt.date.fromisoformat(req.as_of)
            row = from_request(req)
        except ValueError as exc:
            assert "out of range" in str(exc) or "Invalid isoformat" in str(exc), (case.name, exc)
            skipped.append(case.name)
            continue
        row[REFERENCE] = case.name
        groups[on].append(row)
    assert len(skipped) <= 3, skipped
    assert sum(len(rows) for rows in groups.values()) >= 120
    for on, rows in sorted(groups.items()):
        assert_same(online, columnar, rows, on)


def test_generated_people(deciders):
    """Seeded people over every date and region code the policy files name, with the ages,
    incomes and assessment dates either side of each boundary (policycheck.sample)."""
    online, columnar = deciders
    people = People(POLICIES, online.service, GENERATED, seed=14)
    groups = by_date(list(people))
    assert len(groups) > 40
    for on, rows in sorted(groups.items()):
        assert_same(online, columnar, rows, on)


def test_many_dates_is_each_date(deciders, monkeypatch):
    online, columnar = deciders
    people = People(POLICIES, online.service, 300, seed=3)
    persons = pl.DataFrame(
        [dict(from_request(r), reference=str(i)) for i, r in enumerate(people)], schema=ROW_SCHEMA, orient="row"
    )
    # Period and standard changes, a date outside the period, and months whose regions read the
    # same values (their combinations decided once, on the first of them).
    dates = [dt.date(2016, 6, 30), dt.date(2016, 7, 1), dt.date(2020, 7, 1), dt.date(2014, 12, 31)]
    dates += [dt.date(2018, 1, 31), dt.date(2018, 2, 28), dt.date(2018, 3, 31), dt.date(2016, 6, 30)]
    want = pl.concat([online.decide(persons, on) for on in dates])
    assert_frame_equal(columnar.decide_many(persons, dates), want)
    # Dates decided together in batches of at most two (of as many person-dates as that).
    monkeypatch.setattr(engine, "BATCH_CELLS", 2 * persons.height)
    assert_frame_equal(columnar.decide_many(persons, dates), want)


def pieces(frame: pl.DataFrame, lengths: list[int]) -> pl.DataFrame:
    """The frame cut in pieces of those lengths (as a Parquet file's row groups come)."""
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return pl.concat([frame.slice(at, n) for at, n in zip(starts, lengths, strict=True)], rechunk=False)


def test_a_table_in_pieces(deciders, monkeypatch):
    """A person table cut in pieces (evenly, unevenly across its columns, in too many) is decided
    as the same table in one piece, on several dates, and its decision tables come in one piece
    for every column (an eager query on a table cut unevenly would first copy all of it)."""
    online, columnar = deciders
    people = People(POLICIES, online.service, 500, seed=8)
    persons = pl.DataFrame(
        [dict(from_request(r), reference=str(i)) for i, r in enumerate(people)], schema=ROW_SCHEMA, orient="row"
    )
    dates = [dt.date(2017, 3, 31), dt.date(2020, 6, 30), dt.date(2020, 7, 1)]
    want = pl.concat([online.decide(persons, on) for on in dates])
    even = pieces(persons, [120, 200, 1, 179])
    uneven = even.with_columns(pieces(persons.select("birth_date"), [250, 250]).to_series())
    monkeypatch.setattr(engine, "MAX_PIECES", 4)  # the first kept in its pieces, the last copied
    for table in (even, uneven, pieces(persons, [100] * 5)):
        assert len(set(table.n_chunks("all"))) == 1 or table is uneven
        assert table.n_chunks() > 1
        tables = list(columnar.decide_each(table, dates))
        assert all(set(t.n_chunks("all")) == {1} for t in tables)
        assert_frame_equal(pl.concat(tables), want)


def test_same_columns_is_equal_row_for_row():
    """`same_columns` (which columns a month's table takes as they were) agrees with comparing
    each column whole, nulls equal: lists null or empty, of other lengths, with other or null items."""
    lists = pl.List(pl.String())
    first = pl.DataFrame(
        {
            "a": [1, None, 3],
            "b": [1, 2, 3],
            "s": ["x", None, "y"],
            "t": ["x", "y", "z"],
            "k": [True, None, False],
            "l1": [["a"], None, []],
            "l2": [["a"], None, []],
            "l3": [["a", "b"], ["c"], []],
            "l4": [["a", "b"], ["c"], [None]],
            "l5": [["a"], ["b", "c"], ["d"]],
            "l6": [None, [], ["x"]],
        },
        schema_overrides={c: lists for c in ("l1", "l2", "l3", "l4", "l5", "l6")},
    )
    second = first.with_columns(
        pl.Series("b", [1, 2, None]),
        pl.Series("t", ["x", "y", "Z"]),
        pl.Series("l2", [["a"], [], []], dtype=lists),  # null against empty
        pl.Series("l3", [["a", "c"], ["c"], []], dtype=lists),  # an item
        pl.Series("l4", [["a", "b"], ["c"], []], dtype=lists),  # a null item against none
        pl.Series("l5", [["a", "b"], ["c"], ["d"]], dtype=lists),  # lengths differ, items line up
    )
    want = [c for c in first.columns if first[c].equals(second[c], null_equal=True)]
    assert want == ["a", "s", "k", "l1", "l6"]
    assert engine.same_columns(first, second) == want
    assert engine.same_columns(first, first) == first.columns


def test_a_kept_plan_decides_other_people(deciders):
    """A plan kept from one table (the same programs and keys) decides another table as the
    online decider does: nothing of the first table's rows stays in it."""
    online, _ = deciders
    columnar = ColumnarDecider.load(POLICIES)
    people = People(POLICIES, online.service, 400, seed=5)
    persons = pl.DataFrame(
        [dict(from_request(r), reference=str(i)) for i, r in enumerate(people)], schema=ROW_SCHEMA, orient="row"
    )
    first, second = (persons.with_columns(pl.lit("330102").alias("region_code")) for _ in range(2))
    second = second.reverse().with_columns(pl.col("birth_date").dt.offset_by("-7y"))
    on = dt.date(2020, 8, 1)
    columnar.decide(first, on)
    (kept,) = columnar._plans.values()
    assert_frame_equal(columnar.decide(second, on), online.decide(second, on))
    (used,) = columnar._plans.values()
    assert used is kept  # the same keys: the plan was kept, not built again


def test_rows_the_service_refuses_and_tables_without_columns(deciders):
    """Rows no request could carry or the service refuses (no birth date, unknown region, bad
    enum value, negative income, a category without a grade, an unknown benefit), columns left
    out, a weight carried through, an empty table; on dates inside, before and outside the period."""
    online, columnar = deciders
    tables = [
        pl.DataFrame(
            {"birth_date": [dt.date(1950, 1, 1), None], "region_code": ["330102", "330102"], "weight": [2.0, 1.0]}
        ),
        pl.DataFrame(
            {
                "reference": ["a", "b", "c", "d", "e"],
                "birth_date": [dt.date(2010, 1, 1)] * 5,
                "region_code": ["330102", "33010", None, "110105", "999999"],
                "household_status": ["dibao", "bogus", None, "dibao", "destitute"],
                "other_benefits": [["work_injury_nursing_allowance"], ["nope"], [None], [], None],
                "disability_grade": [0, 5, None, 2, 3],
                "disability_category": ["physical", None, "mental", None, "intellectual"],
                "capacity_level": [None, "mild_loss", None, None, None],
                "household_income_per_head_fen": [-1, 5, None, 0, 100],
            }
        ),
        pl.DataFrame(  # one fault each: a value an enum column cannot hold
            {
                "birth_date": [dt.date(1940, 3, 1)] * 4,
                "region_code": ["330102"] * 4,
                "self_care": ["bogus", None, None, "partly_dependent"],
                "education_level": [None, "nonsense", None, None],
                "disability_grade": [None, None, 1, None],
                "disability_category": [None, None, "unheard_of", None],
            }
        ),
        pl.DataFrame(schema={"birth_date": pl.Date(), "region_code": pl.String()}),
    ]
    dates = [dt.date(2020, 8, 1), dt.date(2015, 6, 1), dt.date(2014, 12, 31), dt.date(2009, 12, 31)]
    for persons in tables:
        for on in dates:
            assert_frame_equal(online.decide(persons, on), columnar.decide(persons, on))
        # together: the same (a birth date after some of the dates, a date outside the period)
        want = pl.concat([online.decide(persons, on) for on in dates])
        assert_frame_equal(columnar.decide_many(persons, dates), want)
    assert columnar.decide(tables[0], dt.date(2020, 8, 1))["weight"].to_list() == [2.0, 1.0]
    assert columnar.decide_many(tables[0], []).height == 0


def test_the_default_backend_is_columnar():
    assert isinstance(load_decider(POLICIES), ColumnarDecider)
    assert isinstance(load_decider(POLICIES, "online"), OnlineDecider)


def test_month_thresholds_are_add_months():
    """add_months(a, m) compared with x is a compared with one of two dates, for every a."""
    days = [dt.date(2019, 12, 1) + dt.timedelta(days=i) for i in range(0, 600, 1)]
    for x in [
        dt.date(2020, 2, 29),
        dt.date(2020, 3, 31),
        dt.date(2020, 4, 30),
        dt.date(2021, 2, 28),
        dt.date(2020, 6, 15),
    ]:
        xi = x.year * 10000 + x.month * 100 + x.day
        for months in (-13, -1, 0, 1, 6, 12):
            lo, hi = month_thresholds(xi, months)
            for a in days:
                ai = a.year * 10000 + a.month * 100 + a.day
                shifted = add_months(ai, months)
                assert (shifted >= xi) == (ai >= lo), (x, months, a)
                assert (shifted > xi) == (ai >= hi), (x, months, a)
    assert calendar.isleap(2020)


@pytest.mark.parametrize("span", [400, 300_000])  # days: from a table, and (too long) taken apart by polars
def test_birth_date_parts_and_ages(span: int):
    """The parts `born` makes give request.age_on's ages, leap days and dates before 1970 too."""
    first = dt.date(1900, 2, 27)
    births: list[dt.date | None] = [first + dt.timedelta(days=i) for i in range(0, span, max(1, span // 2000))]
    births += [dt.date(1960, 2, 29), dt.date(2000, 2, 29), dt.date(1969, 12, 31), dt.date(1970, 1, 1), None]
    frame = pl.DataFrame({"birth_date": births}, schema={"birth_date": pl.Date()})
    parts = frame.with_columns(born(frame["birth_date"]))
    for on in (dt.date(2020, 2, 28), dt.date(2020, 2, 29), dt.date(2021, 3, 1), dt.date(1969, 12, 31)):
        got = parts.select(columnar_age_on(on)).to_series().to_list()
        want = [None if b is None else age_on(b, on) for b in births]
        assert got == want, on


# A program the Python code has never seen: other comparisons (ne, gt, a date shifted from the
# evaluation date, a fact against a product of a fact), a default that decides, an adjustment, and
# a take-the-higher combination with an existing program.
EXTRA_PROGRAM = """
id: home_care_allowance
name: {zh: 居家照护津贴, en: Home care allowance}
citation: synthetic test program
rounding: yuan_half_up
period: {effective_from: 2017-01-01, effective_until: 2030-12-31}
conditions:
  - id: home.registered_in_zhejiang
    text: {zh: 浙江户籍, en: Registered in Zhejiang}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: in_zhejiang, eq: true}
  - id: home.not_in_institution
    text: {zh: 不在机构, en: Not in institutional care}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: in_institutional_care, ne: true}
  - id: home.assessed_within_a_year
    text: {zh: 一年内评估, en: Assessed within a year}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: capacity_assessed_on, gt: {add_months: [{fact: evaluation_date}, -12]}}
  - id: home.own_income_low_or_very_old
    text: {zh: 本人收入低或高龄, en: Own income low or very old}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when:
      any:
        - {fact: own_income, le: {mul: [{fact: household_income_per_head}, 2]}}
        - {fact: age_years, ge: 80}
exclusions:
  - id: home.excluded_work_injury
    text: {zh: 工伤护理费, en: Work-injury nursing allowance}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: work_injury_nursing_allowance, eq: true}
routes:
  - id: home.moderate_or_severe
    text: {zh: 中重度, en: Moderate or severe}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: capacity_level, in: [moderate_loss, severe_loss]}
    amount: {mul: [{param: dibao_standard}, {param: living_allowance_share}]}
  - id: home.any_loss
    text: {zh: 失能, en: Any loss}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: capacity_level, ne: intact}
    amount: {param: elderly_amount_mild}
adjustments:
  - id: home.dibao_edge_share
    text: {zh: 低保边缘, en: Dibao-edge}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: household_status, eq: dibao_edge}
    multiply: {param: elderly_dibao_edge_share}
"""

EXTRA_COMBINATION = """
  - id: interaction.home_care_or_elderly_care_higher
    text: {zh: 就高, en: The higher is paid}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    programs: [home_care_allowance, elderly_care_subsidy]
    mode: take_higher
"""


def test_a_new_program_runs_on_both(tmp_path: Path):
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root, ignore=shutil.ignore_patterns("tests"))
    (root / "programs" / "home_care_allowance.yaml").write_text(EXTRA_PROGRAM, encoding="utf-8")
    interactions = root / "interactions.yaml"
    text = interactions.read_text(encoding="utf-8")
    interactions.write_text(text.replace("\nreferrals:", EXTRA_COMBINATION + "\nreferrals:", 1), encoding="utf-8")
    online, columnar = OnlineDecider.load(root), ColumnarDecider.load(root)
    assert "home_care_allowance" in columnar.programs
    people = People(root, online.service, 900, seed=5)
    outcomes: set[str] = set()
    applied: set[str] = set()
    for on, rows in sorted(by_date(list(people)).items()):
        got = assert_same(online, columnar, rows, on)
        outcomes |= set(got["home_care_allowance.outcome"].drop_nulls().to_list())
        applied |= set(got["home_care_allowance.interactions"].explode().drop_nulls().to_list())
    assert outcomes == {"ELIGIBLE", "INELIGIBLE", "UNDETERMINED"}
    assert "interaction.home_care_or_elderly_care_higher" in applied


DATED_ADJUSTMENT = """
  - id: home.doubled_from_mid_february_2018
    text: {zh: 2018年2月15日起加倍, en: Doubled from 15 February 2018}
    confidence: reference
    citation_zh: 测试用规则
    citation: test rule
    when: {fact: evaluation_date, ge: 20180215}
    multiply: {mul: [2, 1]}
"""


def test_keys_in_classes(tmp_path: Path):
    """Keys (a region on a date) share a class when the expressions over the combinations read
    them alike, so that month ends share their combinations (`Numbering`); a rule that reads the
    date itself there (a comparison of the key's facts alone) keeps the dates apart, and the
    batch of month ends still decides as the online decider does, date by date."""
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root, ignore=shutil.ignore_patterns("tests"))
    program = EXTRA_PROGRAM.replace("adjustments:\n", "adjustments:" + DATED_ADJUSTMENT, 1)
    (root / "programs" / "home_care_allowance.yaml").write_text(program, encoding="utf-8")
    dates = [dt.date(2018, 1, 31), dt.date(2018, 2, 28), dt.date(2018, 3, 31), dt.date(2018, 4, 30)]
    tables = {}
    for policies in (POLICIES, root):
        online, columnar = OnlineDecider.load(policies), ColumnarDecider.load(policies)
        people = People(policies, online.service, 600, seed=11)
        persons = pl.DataFrame(
            [dict(from_request(r), reference=str(i)) for i, r in enumerate(people)], schema=ROW_SCHEMA, orient="row"
        )
        got = columnar.decide_many(persons, dates)
        assert_frame_equal(got, pl.concat([online.decide(persons, on) for on in dates]))
        (plan,) = columnar._plans.values()
        classes = plan.classes.to_list()
        by_region: dict[str, set[int]] = defaultdict(set)
        for key, cls in zip(plan.compiler.keys, classes, strict=True):
            by_region[key.region.code].add(cls)
        tables[policies] = (got, by_region)
    got, by_region = tables[POLICIES]
    assert all(len(c) == 1 for c in by_region.values())  # no standard changes in these months: one class a region
    got, by_region = tables[root]
    assert all(len(c) == 2 for c in by_region.values())  # before and from 15 February
    amount = "home_care_allowance.amount_fen"
    jan, feb = (got.filter(pl.col("as_of") == on)[amount] for on in dates[:2])
    assert ((feb == 2 * jan) & (jan > 0)).any()
