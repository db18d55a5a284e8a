"""A synthetic Zhejiang registered population, reproducible from a seed, at any scale.

`generate(on, scale, seed)` returns the people a population run decides on one date: a person table
(service/engine/columnar/schema.py, plus `reference` and `weight`) and the registered population
they are drawn from by year, city and age band (`totals`: the denominators of the plan's
indicators). Every figure it uses is in population/data/zhejiang_population.yaml, with its source
and how sure it is; what could not be sourced is a labelled assumption there, not a constant here.

Who is a row. Only people with a fact some program reads on the date: a disability certificate, a
dibao, dibao-edge or destitute household, an orphan's or de-facto-unsupported child's status, an
elder's capacity assessment. Everyone else (an ordinary household's member with none of these, who
can qualify for nothing) is counted in `totals` only, so the whole province (about 50 million) is a
few million rows.

How one seed gives the same people on every date. A fixed universe is drawn once per (seed, scale):
for each city and birth year, the people who ever carry a program fact between the first and last
year the data covers, each with a rank in [0, 1) and latent draws (onset of a disability, standing
of the household, capacity, ...). On a date, the cohort's size is interpolated from the figures, and
a person is present while their rank is below that size's share of the cohort's largest size
(cohorts shrink by losing their highest ranks: deaths; grow by gaining them: arrivals). Facts on the
date follow from the latent draws and the date: age from the birth date, a certificate from the
onset of the disability, the household's status from a persistent standing plus a yearly shock,
an assessment dated on the person's 180-day cycle. A row's `reference` is its place in the universe,
so a person is followed from date to date (for the same seed and scale); `weight` is the number of
people a row stands for, round(1 / scale).

`totals` has every year end the data covers (2013-2025; after 2020 extrapolated, see the data file),
each city and age band, in people (the units of `weight`: the figure rounded to whole rows, so at
scale 0.01 the 2015 60+ total is 9,840,300 give or take 50 a cell). Dates from 2014-01-01 to
2025-12-31 can be generated. Same seed, scale and numpy version: the same tables.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
import yaml

from service.engine.columnar.schema import PERSON_SCHEMA, REFERENCE, WEIGHT
from service.policy.loader import load_policies
from service.policy.policyset import ParameterNotInForce, PolicySet

DATA = Path(__file__).parent / "data" / "zhejiang_population.yaml"
POLICIES = Path(__file__).resolve().parent.parent / "policies"
BANDS = ("0-17", "18-59", "60+")
MAX_AGE = 100
CATEGORIES = ("visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple")
STATUSES = ("destitute", "dibao", "dibao_edge")  # ordered from the lowest standing up
CAPACITY = ("severe_loss", "moderate_loss", "mild_loss")
CHILD = ("institutional_orphan", "community_orphan", "de_facto_unsupported")
SELF_CARE = ("fully_dependent", "mostly_dependent", "partly_dependent")
REASSESSMENT_DAYS = 180  # within the 6-month validity whatever the months' lengths
LAPSE_DAYS = 185  # an assessment missed once is older than any 6 months
# The last day policies/regions.yaml covers: a person's area is a code in use then.
AREAS_ON = dt.date(2020, 12, 31)
# The level of full-time education by age (0..22): primary from 6, junior secondary from 12, ...
EDUCATION = (
    ("",) * 6
    + ("primary",) * 6
    + ("junior_secondary",) * 3
    + ("senior_secondary",) * 4
    + ("junior_college",) * 2
    + ("undergraduate",) * 2
)
TOTALS_SCHEMA: dict[str, pl.DataType] = {
    "year": pl.Int32(),
    "city_code": pl.String(),
    "age_band": pl.String(),
    "people": pl.Int64(),
}


@dataclass(frozen=True)
class Population:
    persons: pl.DataFrame  # PERSON_SCHEMA columns, then reference (String) and weight (Int64)
    totals: pl.DataFrame  # TOTALS_SCHEMA: registered people by year end, city and age band
    on: dt.date
    weight: int  # people per row: round(1 / scale)
    seed: int


def load_figures(path: Path = DATA) -> dict[str, Any]:
    """The data file's generator inputs by name (each a mapping with value, source, tag, ...); its
    `plan_indicators` and `comparisons` (what the report compares the model against) are not read."""
    figures: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))["figures"]
    return figures


def _value(figures: dict[str, Any], name: str) -> Any:
    return figures[name]["value"]


def _interp(anchors: dict[int, float], years: np.ndarray) -> np.ndarray:
    """Linear between the anchor years, continuing the nearest two anchors' slope outside them."""
    xs = np.array(sorted(anchors), dtype=float)
    ys = np.array([anchors[int(x)] for x in xs], dtype=float)
    out = np.interp(years, xs, ys)
    hi, lo = years > xs[-1], years < xs[0]
    out[hi] = ys[-1] + (years[hi] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    out[lo] = ys[0] + (years[lo] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    return out


@dataclass(frozen=True)
class _Model:
    """Everything derived from the figures that does not depend on the seed or the date."""

    years: np.ndarray  # year ends covered, first..last
    cities: list[str]
    births: np.ndarray  # birth years, years[0]-MAX_AGE .. years[-1]
    cohort: np.ndarray  # [city, birth year, year end] people (float)
    band_totals: np.ndarray  # [year end, band] province people
    city_share: np.ndarray  # [city, band]
    onset_cdf: np.ndarray  # [age 0..MAX_AGE] share holding a certificate by that age
    pool_rate: float
    pool_rate_disabled: float
    status_shares: np.ndarray  # [band, 3] share of the band: destitute, dibao, dibao_edge
    child_rates: np.ndarray  # [3] share of children ever reaching each status


def _age_shape(figures: dict[str, Any]) -> np.ndarray:
    """[band, age] share of the band at each age (sums to 1 over the band's ages)."""
    shape = np.zeros((3, MAX_AGE + 1))
    shape[0, 0:18] = 1 / 18
    shape[1, 18:60] = 1 / 42
    target = _value(figures, "elderly_65_plus_2015") / _value(figures, "elderly_60_plus_2015")
    lo, hi = 0.5, 0.999999  # the 65+ share of 60+ rises with the per-year fraction: bisect it
    ages = np.arange(0, MAX_AGE - 59)
    for _ in range(60):
        q = (lo + hi) / 2
        w = q**ages
        lo, hi = (q, hi) if w[5:].sum() / w.sum() < target else (lo, q)
    w = ((lo + hi) / 2) ** ages
    shape[2, 60:] = w / w.sum()
    return shape


def _model(figures: dict[str, Any]) -> _Model:
    by_age = _value(figures, "registered_by_age")
    first = min(int(y) for y in by_age)
    last = int(_value(figures, "interpolation")["extrapolate_until"])
    years = np.arange(first, last + 1)
    anchors: list[dict[int, float]] = [{int(y): by_age[y][band] for y in by_age} for band in BANDS]
    anchors[2][2015] = _value(figures, "elderly_60_plus_2015")
    anchors[2][2020] = _value(figures, "elderly_60_plus_2020_forecast")
    band_totals = np.stack([_interp(a, years.astype(float)) for a in anchors], axis=1)

    # City shares of each band, from 2017: Hangzhou and Ningbo registered, the rest by census.
    census = {str(k): float(v) for k, v in _value(figures, "resident_by_city_2020_census").items()}
    cities = sorted(census)
    known = {str(k): v for k, v in _value(figures, "registered_by_city_2017").items()}
    p2017 = np.array([by_age[2017][band] for band in BANDS], dtype=float)
    young = p2017[0] / (p2017[0] + p2017[1])
    city_band = np.zeros((len(cities), 3))
    for i, city in enumerate(cities):
        if city in known:
            under = known[city]["total"] - known[city]["60+"]
            city_band[i] = (under * young, under * (1 - young), known[city]["60+"])
    rest = p2017 - city_band.sum(axis=0)
    others = [i for i, c in enumerate(cities) if c not in known]
    weights = np.array([census[cities[i]] for i in others])
    city_band[others] = np.outer(weights / weights.sum(), rest)
    city_share = city_band / p2017

    shape = _age_shape(figures)
    births = np.arange(first - MAX_AGE, last + 1)
    age = years[None, :] - births[:, None]  # [birth year, year end]
    valid = (age >= 0) & (age <= MAX_AGE)
    a = np.clip(age, 0, MAX_AGE)
    band = np.where(a < 18, 0, np.where(a < 60, 1, 2))
    year_idx = np.broadcast_to(np.arange(len(years))[None, :], a.shape)
    people = band_totals[year_idx, band] * shape[band, a] * valid  # province [birth, year]
    cohort = city_share[:, band] * people[None, :, :]  # [city, birth, year]

    # Disability: the age knots rescaled to the national prevalence over Zhejiang's 2017 ages.
    knots = {int(k): float(v) for k, v in _value(figures, "disability_prevalence_by_age").items()}
    relative = np.interp(np.arange(MAX_AGE + 1), sorted(knots), [knots[k] for k in sorted(knots)])
    national = _value(figures, "disability_national")
    y2017 = int(np.searchsorted(years, 2017))
    ages2017 = np.zeros(MAX_AGE + 1)
    np.add.at(ages2017, a[:, y2017][valid[:, y2017]], people[:, y2017][valid[:, y2017]])
    prevalence = relative * (national["disabled"] / national["population"]) / (relative @ ages2017 / ages2017.sum())
    onset_cdf = np.minimum(prevalence * float(_value(figures, "disability_certificate_share")), 0.95)

    # Household pool: the disabled are more often in it (its status shares are fitted per date).
    pool_rate = float(_value(figures, "household_pool_share"))
    pool_rate_disabled = min(1.0, pool_rate * float(_value(figures, "disabled_relative_risk")))
    shares = _value(figures, "household_status_shares")
    status_shares = np.array([[shares[band][s] for s in STATUSES] for band in BANDS], dtype=float)

    children_2013 = by_age[min(int(y) for y in by_age)]["0-17"]
    unsupported = _value(figures, "de_facto_unsupported_national")
    child_rates = 2 * np.array(  # a status reached at a uniform age 0-17: twice the share holding it
        [
            _value(figures, "institutional_orphans") / children_2013,
            _value(figures, "community_orphans") / children_2013,
            unsupported["children"] / unsupported["children_0_17_national"],
        ]
    )
    return _Model(
        years,
        cities,
        births,
        cohort,
        band_totals,
        city_share,
        onset_cdf,
        pool_rate,
        pool_rate_disabled,
        status_shares,
        child_rates,
    )


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent stream per purpose, so adding a draw never shifts another's."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _pick(rng: np.random.Generator, probabilities: list[float], n: int) -> np.ndarray:
    p = np.asarray(probabilities, dtype=float)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(p) - 1)


def _universe(model: _Model, figures: dict[str, Any], weight: int, seed: int) -> dict[str, np.ndarray]:
    """Everyone who carries a program fact at some date the data covers, with their latent draws."""
    units = np.rint(model.cohort.max(axis=2) / weight).astype(np.int64)  # [city, birth]
    n_births = units.shape[1]
    cells = np.arange(units.size)
    max_age = np.minimum(model.years[-1] - model.births, MAX_AGE)  # [birth]

    # A: disabled at some date (onset by the last year end).
    rng = _rng(seed, 1)
    p_dis = np.broadcast_to(model.onset_cdf[max_age][None, :], units.shape).ravel()
    n_dis = rng.binomial(units.ravel(), p_dis)
    # B: in the household pool (the disabled drawn among themselves, the others as new rows).
    n_rest = units.ravel() - n_dis
    n_pool = _rng(seed, 2).binomial(n_rest, model.pool_rate)
    # C: children who reach a status, among the people no other fact brought in.
    young = (model.years[0] - model.births) <= 22
    p_child = np.where(np.broadcast_to(young[None, :], units.shape).ravel(), model.child_rates.sum(), 0.0)
    n_child = _rng(seed, 3).binomial(n_rest - n_pool, p_child)

    cell = np.concatenate([np.repeat(cells, n_dis), np.repeat(cells, n_pool), np.repeat(cells, n_child)])
    kind = np.concatenate([np.full(n_dis.sum(), 0), np.full(n_pool.sum(), 1), np.full(n_child.sum(), 2)])
    n = cell.size
    city, birth_idx = np.divmod(cell, n_births)
    birth_year = model.births[birth_idx]
    rng = _rng(seed, 4)
    start = (birth_year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    year_days = 365 + ((birth_year % 4 == 0) & ((birth_year % 100 != 0) | (birth_year % 400 == 0)))
    born = start + np.floor(rng.random(n) * year_days).astype(np.int64)  # days since 1970-01-01
    u: dict[str, np.ndarray] = {
        "city": city,
        "birth_idx": birth_idx,
        "born": born,
        "rank": rng.random(n),
        "area": rng.random(n),
    }

    # Disability: onset age from the certificate curve below the cohort's last age.
    rng = _rng(seed, 5)
    disabled = kind == 0
    top = model.onset_cdf[max_age[birth_idx]]
    draw = rng.random(n) * top
    onset_age = np.interp(draw, model.onset_cdf, np.arange(MAX_AGE + 1)) * (draw >= model.onset_cdf[0])
    u["disabled"] = disabled
    u["disabled_on"] = np.where(disabled, born + np.rint(onset_age * 365.25).astype(np.int64), np.iinfo(np.int64).max)
    national = _value(figures, "disability_national")
    split = _value(figures, "disability_grade_split")
    severe = national["severe_grades_1_2"] / national["disabled"]
    grade_p = [
        severe * split["grade_1_of_severe"],
        severe * (1 - split["grade_1_of_severe"]),
        (1 - severe) * split["grade_3_of_mild"],
        (1 - severe) * (1 - split["grade_3_of_mild"]),
    ]
    u["grade"] = _pick(rng, grade_p, n) + 1
    counts = _value(figures, "disability_category_national")
    u["category"] = _pick(rng, [counts[c] for c in CATEGORIES], n)
    care = _value(figures, "long_term_care_need")
    int_or_mental = np.isin(u["category"], [4, 5, 6])
    p_care = np.select(
        [u["grade"] == 1, u["grade"] == 2, int_or_mental],
        [care["grade_1"], care["grade_2"], care["grade_3_4_intellectual_or_mental"]],
        care["grade_3_4_other"],
    )
    u["care_need"] = rng.random(n) < p_care
    mixes = _value(figures, "self_care_mix")
    tier = np.empty(n, dtype=np.int64)
    for grades, name in (((1,), "grade_1"), ((2,), "grade_2"), ((3, 4), "grade_3_4")):
        rows = np.isin(u["grade"], grades)
        tier[rows] = _pick(rng, [mixes[name][s] for s in SELF_CARE], int(rows.sum()))
    u["self_care"] = tier
    u["institution"] = rng.random(n) < float(_value(figures, "institutional_care_share"))
    u["work_injury"] = rng.random(n) < float(_value(figures, "work_injury_nursing_share"))
    u["family_support"] = rng.random(n) < float(_value(figures, "family_support_share"))
    own = _value(figures, "own_income_ratio")
    u["own_ratio"] = np.where(
        rng.random(n) < own["none_share"], 0.0, own["median"] * np.exp(own["log_sd"] * rng.standard_normal(n))
    )

    # Household: in the pool (the disabled by their own rate), a persistent standing, income draws.
    rng = _rng(seed, 6)
    u["pool"] = (kind == 1) | (disabled & (rng.random(n) < model.pool_rate_disabled))
    u["standing"] = rng.standard_normal(n)
    u["income_u"] = rng.random(n)
    u["income_z"] = rng.standard_normal(n)
    u["ill"] = rng.random(n) < float(_value(figures, "child_serious_illness_share"))

    # Capacity (read only for assessed elders) and the assessment cycle.
    rng = _rng(seed, 7)
    mix = _value(figures, "elderly_capacity_mix")
    p_cap = [mix[c] for c in CAPACITY]
    u["capacity"] = _pick(rng, [*p_cap, 1 - sum(p_cap)], n)  # 3: intact
    u["assessed"] = rng.random(n) < float(_value(figures, "capacity_assessed_share"))
    u["phase"] = rng.integers(0, REASSESSMENT_DAYS, n)

    # Children: which status, from when (a uniform age 0-17), in school at 18-22 or not.
    rng = _rng(seed, 8)
    others = (kind != 2) & young[birth_idx] & (rng.random(n) < model.child_rates.sum())  # disabled or poor too
    has_child = (kind == 2) | others
    u["child"] = np.where(has_child, _pick(rng, list(model.child_rates), n), -1)
    u["child_on"] = born + np.floor(rng.random(n) * 18 * 365.25).astype(np.int64)
    u["school"] = rng.random(n) < float(_value(figures, "full_time_education_18_22"))
    return u


def _days(on: dt.date) -> int:
    return (on - dt.date(1970, 1, 1)).days


def _areas(policy: PolicySet, model: _Model) -> list[list[str]]:
    """Per city, the county-level codes in use at the end of the regions' list (equal shares)."""
    in_use = sorted({policy.regions.resolve(code, AREAS_ON).code for code in policy.regions.divisions})
    return [[c for c in in_use if c[:4] == city[:4]] for city in model.cities]


def _dibao_fen(policy: PolicySet, code: str, on: dt.date, fallback_yuan: int) -> int:
    """The local dibao standard on the date, else the region's first known one, else the fallback."""
    region = policy.regions.resolve(code, on)
    parameter = policy.parameters["dibao_standard"]
    try:
        return int(parameter.resolve(region, on).value)
    except ParameterNotInForce:
        for link in region.chain:
            rows = parameter.file.values.get(link)
            if rows:
                return int(rows[0].value * 100)
    return fallback_yuan * 100


def _status_cuts(
    model: _Model,
    u: dict[str, np.ndarray],
    present: np.ndarray,
    band: np.ndarray,
    size: np.ndarray,
    on: dt.date,
    weight: int,
) -> np.ndarray:
    """[band, 3] cumulative normal quantiles (destitute, dibao, dibao_edge) that give each band its
    shares of the data file on the date: the shares over the pool members present in the band."""
    people = np.zeros(3)
    age = on.year - model.births  # at the year end: the band a cohort's size was counted in
    cohort_band = np.where(age < 18, 0, np.where(age < 60, 1, 2))
    np.add.at(people, cohort_band, size.sum(axis=0))
    in_pool = np.bincount(band[present & u["pool"]], minlength=3) * weight / people
    cuts = np.full((3, 3), -math.inf)
    for b in range(3):
        cumulative = np.cumsum(model.status_shares[b]) / max(in_pool[b], 1e-12)
        if cumulative[-1] >= 1:
            raise ValueError(f"household_status_shares for {BANDS[b]} exceed the household pool present on the date")
        cuts[b] = [NormalDist().inv_cdf(c) if c > 0 else -math.inf for c in cumulative]
    return cuts


def _check_date(model: _Model, on: dt.date) -> None:
    if not (model.years[0] < on.year <= model.years[-1]):
        raise ValueError(f"the data covers {model.years[0] + 1}-01-01 to {model.years[-1]}-12-31, not {on}")


def _snapshot(
    model: _Model,
    figures: dict[str, Any],
    u: dict[str, np.ndarray],
    policy: PolicySet,
    on: dt.date,
    weight: int,
    seed: int,
) -> pl.DataFrame:
    year = on.year
    y = int(np.searchsorted(model.years, year))
    f = (on - dt.date(year - 1, 12, 31)).days / (dt.date(year, 12, 31) - dt.date(year - 1, 12, 31)).days
    size = (1 - f) * model.cohort[:, :, y - 1] + f * model.cohort[:, :, y]
    largest = model.cohort.max(axis=2)
    share = np.divide(size, largest, out=np.zeros_like(size), where=largest > 0)
    today = _days(on)
    present = (u["rank"] < share[u["city"], u["birth_idx"]]) & (u["born"] <= today)

    born = pl.Series(u["born"]).cast(pl.Int32).cast(pl.Date)
    by, bm, bd = born.dt.year().to_numpy(), born.dt.month().to_numpy(), born.dt.day().to_numpy()
    age = year - by - ((on.month < bm) | ((on.month == bm) & (on.day < bd)))
    band = np.where(age < 18, 0, np.where(age < 60, 1, 2))

    disabled = u["disabled"] & (u["disabled_on"] <= today)
    shock = _rng(seed, 100, year).standard_normal(u["rank"].size)
    rho = float(_value(figures, "household_status_persistence"))
    x = math.sqrt(rho) * u["standing"] + math.sqrt(1 - rho) * shock
    cuts = _status_cuts(model, u, present, band, size, on, weight)
    level = (x[:, None] >= cuts[band]).sum(axis=1)  # 0 destitute, 1 dibao, 2 edge, 3 ordinary
    level = np.where(u["pool"], level, 3)
    child = np.where((u["child"] >= 0) & (u["child_on"] <= today) & (age <= 22), u["child"], -1)
    lapsed = _rng(seed, 101, year).random(u["rank"].size) < float(_value(figures, "capacity_reassessment_lapsed_share"))
    assessed = (age >= 60) & (level < 3) & u["assessed"]
    keep = present & (disabled | (level < 3) | (child >= 0) | assessed)

    idx = np.flatnonzero(keep)
    age, level, child, disabled, lapsed, assessed = (
        age[idx],
        level[idx],
        child[idx],
        disabled[idx],
        lapsed[idx],
        assessed[idx],
    )
    v = {k: a[idx] for k, a in u.items()}
    areas = _areas(policy, model)
    area_codes = sorted({c for city in areas for c in city})
    code_on = {c: policy.regions.resolve(c, on).code for c in area_codes}
    fallback = int(_value(figures, "dibao_standard_fallback_yuan"))
    standard = {c: _dibao_fen(policy, c, on, fallback) for c in area_codes}
    area_of = np.empty(idx.size, dtype=np.int64)  # index into area_codes
    standard_fen = np.empty(idx.size, dtype=np.int64)
    for c, codes in enumerate(areas):
        rows = v["city"] == c
        pick = np.minimum((v["area"][rows] * len(codes)).astype(np.int64), len(codes) - 1)
        area_of[rows] = np.array([area_codes.index(code) for code in codes])[pick]
        standard_fen[rows] = np.array([standard[code] for code in codes])[pick]

    ratios = _value(figures, "income_ratio_to_dibao_standard")
    low = np.array([ratios[s]["low"] for s in STATUSES] + [0.0])[level]
    high = np.array([ratios[s]["high"] for s in STATUSES] + [0.0])[level]
    ordinary = ratios["ordinary"]["median"] * np.exp(ratios["ordinary"]["log_sd"] * v["income_z"])
    ratio = np.where(level < 3, low + (high - low) * v["income_u"], ordinary)
    income = np.rint(ratio * standard_fen).astype(np.int64)
    adult = age >= 18
    own = np.where(age >= 16, np.rint(v["own_ratio"] * standard_fen), 0).astype(np.int64)  # no earnings under 16

    cap_on = today - (today - v["phase"]) % REASSESSMENT_DAYS - np.where(lapsed, LAPSE_DAYS, 0)
    in_school = (age >= 6) & ((age < 18) | v["school"])
    has_child = child >= 0

    def text(values: np.ndarray, names: tuple[str, ...], when: np.ndarray) -> pl.Series:
        codes = masked(np.clip(values, 0, len(names) - 1).astype(np.int64), when, pl.Int64())
        return pl.Series(names, dtype=pl.String).gather(codes)

    def masked(values: np.ndarray, when: np.ndarray, dtype: pl.DataType) -> pl.Series:
        return pl.select(pl.when(pl.Series(when)).then(pl.Series(values, dtype=dtype))).to_series()

    benefit = text(
        np.zeros(idx.size, dtype=np.int64), ("work_injury_nursing_allowance",), disabled & adult & v["work_injury"]
    )
    benefits = pl.select(pl.when(benefit.is_not_null()).then(pl.concat_list(benefit))).to_series()
    frame = pl.DataFrame(
        {
            "birth_date": born.gather(idx),
            "region_code": pl.Series([code_on[c] for c in area_codes], dtype=pl.String).gather(area_of),
            "household_status": pl.Series([*STATUSES, "ordinary"], dtype=pl.String).gather(level),
            "household_income_per_head_fen": pl.Series(income, dtype=pl.Int64),
            "own_income_fen": masked(own, disabled, pl.Int64()),
            "disability_grade": masked(v["grade"].astype(np.int8), disabled, pl.Int8()),
            "disability_category": text(v["category"], CATEGORIES, disabled),
            "long_term_care_need": masked(v["care_need"], disabled, pl.Boolean()),
            "self_care": text(v["self_care"], SELF_CARE, disabled & v["care_need"]),
            "in_institutional_care": masked(v["care_need"] & v["institution"], disabled, pl.Boolean()),
            "capacity_level": text(v["capacity"], (*CAPACITY, "intact"), assessed),
            "capacity_assessed_on": masked(cap_on, assessed, pl.Int32()).cast(pl.Date),
            "child_status": text(child, CHILD, has_child),
            "in_full_time_education": masked(in_school, has_child, pl.Boolean()),
            "serious_illness": masked(v["ill"], (age < 18) & v["pool"], pl.Boolean()),
            "depends_on_family_support": masked(v["family_support"], disabled & adult, pl.Boolean()),
            "other_benefits": benefits,
            "education_level": text(np.clip(age, 0, len(EDUCATION) - 1), EDUCATION, has_child & in_school & (age >= 6)),
            REFERENCE: pl.Series(idx, dtype=pl.Int64),
            WEIGHT: pl.Series(np.full(idx.size, weight), dtype=pl.Int64),
        }
    )
    return frame.with_columns(
        pl.concat_str([pl.lit("zj"), pl.col(REFERENCE).cast(pl.String).str.zfill(9)]).alias(REFERENCE)
    ).cast({k: v for k, v in PERSON_SCHEMA.items()})


def _totals(model: _Model, weight: int) -> pl.DataFrame:
    """Registered people by year end, city and band, in the units of `weight` (rounded to it)."""
    rows = []
    for y, year in enumerate(model.years):
        for c, city in enumerate(model.cities):
            for b, band in enumerate(BANDS):
                people = int(round(model.band_totals[y, b] * model.city_share[c, b] / weight)) * weight
                rows.append((int(year), city, band, people))
    return pl.DataFrame(rows, schema=TOTALS_SCHEMA, orient="row")


def registered_totals(scale: float = 1.0, data: Path | None = None) -> pl.DataFrame:
    """The `totals` table alone (no persons): registered people by year end, city and age band."""
    return _totals(_model(load_figures(data or DATA)), _weight(scale))


def _weight(scale: float) -> int:
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], not {scale}")
    return max(1, round(1 / scale))


def generate(
    on: dt.date, scale: float, seed: int, policies: Path | None = None, data: Path | None = None
) -> Population:
    """The synthetic population on a date: a 1/scale sample (scale 1.0: the whole province), each
    row standing for round(1/scale) people. The same seed and scale give the same people (the same
    references) on every date."""
    return next(snapshots([on], scale, seed, policies, data))


def snapshots(
    dates: Iterable[dt.date], scale: float, seed: int, policies: Path | None = None, data: Path | None = None
) -> Iterator[Population]:
    """generate() for each date in turn, drawing the universe once (a run over many dates)."""
    dates = list(dates)
    weight = _weight(scale)
    figures = load_figures(data or DATA)
    model = _model(figures)
    for on in dates:
        _check_date(model, on)
    policy = load_policies(policies or POLICIES)
    universe = _universe(model, figures, weight, seed)
    totals = _totals(model, weight)
    for on in dates:
        yield Population(_snapshot(model, figures, universe, policy, on, weight, seed), totals, on, weight, seed)


def main(argv: list[str] | None = None) -> None:
    """`python -m population.synthetic --on 2020-06-30 --scale 0.01 --seed 1 [--out DIR]`: generate,
    print the rows, time and peak memory, and write persons.parquet and totals.parquet to DIR."""
    import argparse
    import resource
    import time

    parser = argparse.ArgumentParser(prog="python -m population.synthetic", description=main.__doc__)
    parser.add_argument("--on", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    population = generate(args.on, args.scale, args.seed, args.policies)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    people = int(population.totals.filter(pl.col("year") == args.on.year)["people"].sum())
    print(
        f"{population.persons.height} rows (weight {population.weight}) for {people} registered people "
        f"on {args.on}: {seconds:.1f} s, peak memory {peak_mib:.0f} MiB"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        population.persons.write_parquet(args.out / "persons.parquet")
        population.totals.write_parquet(args.out / "totals.parquet")


if __name__ == "__main__":
    main()
