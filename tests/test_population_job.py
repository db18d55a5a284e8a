"""The population job (`subsidy-population run`), run as a subprocess as a user runs it.

Each output is read back and compared with the decider run directly on the same persons: the
files, databases and clusters in between must neither lose, change, reorder nor add anything, and
the ID numbers some rows carry (to fill a missing birth date) must never come out.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from support import POLICIES, ROOT

from bench.people import people
from population.backends import Backend, load_decider
from population.cli import main
from service import idnumber
from service.engine.columnar import schema as s
from service.engine.columnar.persons import from_request

# The backend the job runs with in these tests (the online one is tested against it in test_columnar.py).
BACKEND: Backend = "columnar"
PG = "postgresql://postgres@127.0.0.1:5432"
DATES = [dt.date(2020, 6, 30), dt.date(2020, 7, 1)]  # Hangzhou's dibao standard rises on 2020-07-01
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊"]


def person_rows(n: int = 36) -> pl.DataFrame:
    """A varied table: every household status, disabilities, incomes, children, elders; with
    other_benefits on some rows; keyed by case_no, with a weight (carried through)."""
    rows = [from_request(r) for r in people(n, seed=14)]
    for i, row in enumerate(rows):
        if i % 7 == 3:
            row["other_benefits"] = ["work_injury_nursing_allowance"]
    df = pl.DataFrame(rows, schema=s.PERSON_SCHEMA, orient="row")
    keys = pl.Series("case_no", [f"C{i:04d}" for i in range(n)])
    return df.select(keys, pl.all(), pl.Series(s.WEIGHT, [1 + i % 5 for i in range(n)], dtype=pl.Int64()))


PERSONS = person_rows()


def id_numbers(persons: pl.DataFrame) -> list[str]:
    return [idnumber.synthetic(b.isoformat(), seq=100 + i) for i, b in enumerate(persons["birth_date"])]


def with_ids_and_names(persons: pl.DataFrame) -> pl.DataFrame:
    """The input a caller might hold: an ID number on every row, the birth date missing on every
    third (the job must take it from the ID number), and a name."""
    births = [None if i % 3 == 0 else b for i, b in enumerate(persons["birth_date"])]
    return persons.with_columns(
        pl.Series("birth_date", births, dtype=pl.Date()),
        pl.Series("id_number", id_numbers(persons)),
        pl.Series("name", [NAMES[i % len(NAMES)] for i in range(persons.height)]),
    )


def expected(persons: pl.DataFrame, dates: list[dt.date]) -> pl.DataFrame:
    """The decider on the person table itself, date after date."""
    decider = load_decider(POLICIES, BACKEND)
    table = persons.rename({"case_no": s.REFERENCE})
    out = pl.concat([decider.decide(table, on) for on in dates])
    return out.rename({s.REFERENCE: "case_no"})


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "population.cli", "run", "--backend", BACKEND, *map(str, args)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    if check:
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    return done


def dates_option(dates: list[dt.date]) -> list[str]:
    return ["--as-of", ",".join(d.isoformat() for d in dates)]


def write_csv(df: pl.DataFrame, path: Path, encoding: str = "utf-8") -> None:
    text = df.with_columns(pl.col("other_benefits").list.join(";")).write_csv()
    path.write_bytes(text.encode(encoding))


def read_output(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.is_file() else pl.read_parquet(sorted(path.glob("*.parquet")))


def by_key(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("case_no", s.AS_OF)


def assert_no_personal_data(persons: pl.DataFrame, *texts: str | bytes) -> None:
    ids = id_numbers(persons)
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        for value in [*ids, *NAMES]:
            assert value.encode() not in data
            assert value.encode("gb18030") not in data


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "encoding, given", [("utf-8", None), ("utf-8-sig", None), ("gb18030", None), ("gb18030", "GB18030")]
)
def test_csv_in_every_encoding_parquet_out(tmp_path, encoding, given):
    """UTF-8 with and without BOM and GB18030 detected (or given), with Chinese names in a column
    the job must not carry."""
    source = tmp_path / "persons.csv"
    write_csv(with_ids_and_names(PERSONS), source, encoding)
    option = ["--encoding", given] if given else []
    done = run(
        "--input", source, "--output", tmp_path / "out.parquet", "--reference", "case_no", *dates_option(DATES), *option
    )
    out = read_output(tmp_path / "out.parquet")
    assert_frame_equal(out, expected(PERSONS, DATES))
    assert "id_number" not in out.columns and "name" not in out.columns
    assert_no_personal_data(PERSONS, (tmp_path / "out.parquet").read_bytes(), done.stdout, done.stderr)
    assert leftovers(tmp_path) == []


def test_csv_out_lists_joined(tmp_path):
    source = tmp_path / "persons.parquet"
    with_ids_and_names(PERSONS).write_parquet(source)
    done = run("--input", source, "--output", tmp_path / "out.csv", "--reference", "case_no", "--as-of", "2020-08-01")
    raw = (tmp_path / "out.csv").read_bytes()
    assert_no_personal_data(PERSONS, raw, done.stderr)
    got = pl.read_csv(raw, infer_schema=False)
    want = expected(PERSONS, [dt.date(2020, 8, 1)])
    lists = [c for c, t in want.schema.items() if isinstance(t, pl.List)]
    want = want.with_columns(pl.col(lists).list.join(";")).cast(pl.String)  # [] is "", null is empty
    assert got.columns == want.columns
    assert_frame_equal(got.select(want.columns), want, check_dtypes=False)
    assert any(";" in v for c in lists for v in got[c].drop_nulls())  # some list has several items


def test_parquet_directories_in_and_out_several_dates(tmp_path):
    """A hive-partitioned input (region_code in the directory names, several files and row
    groups), decided on three dates into a directory of parts."""
    source = tmp_path / "persons"
    for (region,), part in PERSONS.group_by("region_code", maintain_order=True):
        where = source / f"region_code={region}"
        where.mkdir(parents=True)
        pq.write_table(part.drop("region_code").to_arrow(), where / "part-0.parquet", row_group_size=3)
    dates = [*DATES, dt.date(2016, 7, 1)]
    run("--input", source, "--output", tmp_path / "out", "--reference", "case_no", *dates_option(dates))
    out = read_output(tmp_path / "out")
    assert_frame_equal(by_key(out), by_key(expected(PERSONS, dates)))
    assert out.height == PERSONS.height * 3


def test_months(tmp_path):
    source = tmp_path / "persons.parquet"
    PERSONS.head(12).write_parquet(source)
    run(
        "--input", source, "--output", tmp_path / "out.parquet", "--reference", "case_no", "--months", "2019-11:2020-02"
    )
    out = read_output(tmp_path / "out.parquet")
    months = [dt.date(2019, 11, 1), dt.date(2019, 12, 1), dt.date(2020, 1, 1), dt.date(2020, 2, 1)]
    assert out[s.AS_OF].unique(maintain_order=True).to_list() == months
    assert_frame_equal(out, expected(PERSONS.head(12), months))


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped at the end."""
    from adbc_driver_postgresql import dbapi

    name = f"pop_test_{secrets.token_hex(6)}"
    with dbapi.connect(f"{PG}/postgres", autocommit=True) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG}/{name}"
    finally:
        with dbapi.connect(f"{PG}/postgres", autocommit=True) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_read(uri: str, sql: str) -> pl.DataFrame:
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        frame = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_postgres_in_and_out(database, tmp_path):
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(database) as conn, conn.cursor() as cur:
        cur.adbc_ingest("persons", with_ids_and_names(PERSONS).to_arrow(), mode="create")
        conn.commit()
    done = run(
        "--input", database, "--table", "persons", "--output", database, "--output-table", "decisions",
        "--reference", "case_no", *dates_option(DATES), "--chunk-size", "10",
    )  # fmt: skip
    out = pg_read(database, "SELECT * FROM decisions")
    assert_frame_equal(by_key(out), by_key(expected(PERSONS, DATES)), check_dtypes=False)  # chunks of 10
    assert out.schema["as_of"] == pl.Date() and out.schema[s.column("elderly_care_subsidy", s.AMOUNT)] == pl.Int64()
    assert_no_personal_data(PERSONS, done.stderr, str(pg_read(database, "SELECT * FROM decisions").rows()))
    tables = pg_read(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert tables["tablename"].to_list() == ["decisions", "persons"]  # no temporary table left

    # A query in, Parquet out; the existing output table is refused, then replaced with --force.
    query = "SELECT * FROM persons WHERE household_status = 'dibao'"
    run("--input", database, "--query", query, "--output", tmp_path / "dibao.parquet", "--reference", "case_no",
        "--as-of", "2020-07-01")  # fmt: skip
    dibao = PERSONS.filter(pl.col("household_status") == "dibao")
    assert_frame_equal(read_output(tmp_path / "dibao.parquet"), expected(dibao, [dt.date(2020, 7, 1)]))
    again = ["--input", database, "--query", query, "--output", database, "--output-table", "decisions"]
    refused = run(*again, "--reference", "case_no", "--as-of", "2020-07-01", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == "error: --output-table decisions exists; give --force to replace it"
    run(*again, "--reference", "case_no", "--as-of", "2020-07-01", "--force")
    assert pg_read(database, "SELECT count(*) AS n FROM decisions")["n"][0] == dibao.height

    # A run that fails in its third chunk leaves the table it would have replaced as it was.
    bad = with_ids_and_names(PERSONS).with_columns(pl.col("disability_grade").cast(pl.Int64))
    bad[25, "disability_grade"] = 300
    with dbapi.connect(database) as conn, conn.cursor() as cur:
        cur.adbc_ingest("bad_persons", bad.to_arrow(), mode="create")
        conn.commit()
    failed = run("--input", database, "--table", "bad_persons", "--output", database, "--output-table", "decisions",
                 "--reference", "case_no", "--as-of", "2020-07-01", "--chunk-size", "10", "--force",
                 check=False)  # fmt: skip
    assert failed.returncode != 0 and "column disability_grade: '300'" in failed.stderr
    assert pg_read(database, "SELECT count(*) AS n FROM decisions")["n"][0] == dibao.height
    tables = pg_read(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert tables["tablename"].to_list() == ["bad_persons", "decisions", "persons"]

    same = run("--input", database, "--table", "persons", "--output", database, "--output-table", "public.persons",
               "--reference", "case_no", "--as-of", "2020-07-01", "--force", check=False)  # fmt: skip
    assert same.returncode != 0 and "is the input table" in same.stderr
    missing = run("--input", database, "--table", "nobody", "--output", tmp_path / "x.parquet",
                  "--reference", "case_no", "--as-of", "2020-07-01", check=False)  # fmt: skip
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "nobody" in missing.stderr and "does not exist" in missing.stderr


def test_stopped_run_leaves_nothing(tmp_path):
    """SIGTERM in the middle of a run: no output, no temporary file."""
    source = tmp_path / "persons.parquet"
    PERSONS.sample(20_000, with_replacement=True, seed=1).write_parquet(source)
    cmd = [sys.executable, "-m", "population.cli", "run", "--backend", BACKEND, "--input", str(source),
           "--output", str(tmp_path / "out.parquet"), "--reference", "case_no", "--as-of", "2020-07-01",
           "--chunk-size", "20"]  # fmt: skip
    child = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(tmp_path) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the temporary output exists: the run is under way
    assert leftovers(tmp_path), "the run ended before it could be stopped"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0 and "Traceback" not in err
    assert not (tmp_path / "out.parquet").exists() and leftovers(tmp_path) == []


def test_no_persons_still_gives_the_columns(tmp_path):
    source = tmp_path / "persons.csv"
    write_csv(PERSONS.head(0), source)
    run("--input", source, "--output", tmp_path / "out.parquet", "--reference", "case_no", "--as-of", "2020-07-01")
    out = read_output(tmp_path / "out.parquet")
    assert out.height == 0
    assert out.columns == expected(PERSONS.head(1), [dt.date(2020, 7, 1)]).columns


def test_refuses_to_overwrite(tmp_path):
    source = tmp_path / "persons.parquet"
    PERSONS.head(6).write_parquet(source)
    target = tmp_path / "out.parquet"
    target.write_bytes(b"keep me")
    args = ["--input", source, "--reference", "case_no", "--as-of", "2020-07-01"]
    refused = run(*args, "--output", target, check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip() == f"error: --output {target} exists; give --force to replace it"
    assert target.read_bytes() == b"keep me"
    for over_input in (source, tmp_path):  # the input itself, or a directory holding it
        same = run(*args, "--output", over_input, "--force", check=False)
        assert same.returncode != 0 and "would write over the input" in same.stderr
    assert_frame_equal(pl.read_parquet(source), PERSONS.head(6))
    run(*args, "--output", target, "--force")
    assert_frame_equal(read_output(target), expected(PERSONS.head(6), [dt.date(2020, 7, 1)]))
    assert leftovers(tmp_path) == []


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str | Path], str]]:
    """Each bad run and the words its one-line error must hold."""
    good = tmp / "good.parquet"
    PERSONS.head(4).write_parquet(good)
    no_region = tmp / "no_region.csv"
    write_csv(PERSONS.head(4).drop("region_code"), no_region)
    int_dates = tmp / "int_dates.parquet"
    PERSONS.head(4).with_columns(pl.lit(19500101).alias("birth_date")).write_parquet(int_dates)
    bad_date = tmp / "bad_date.csv"
    text_dates = PERSONS.head(30).with_columns(pl.col("birth_date").cast(pl.String))
    text_dates[25, "birth_date"] = "1950-02-30"
    write_csv(text_dates, bad_date)
    ids = tmp / "ids.parquet"
    PERSONS.head(4).with_columns(pl.Series("sfzh", id_numbers(PERSONS.head(4)))).write_parquet(ids)
    float_money = tmp / "float_money.parquet"
    PERSONS.head(4).with_columns(pl.col("own_income_fen").cast(pl.Float64)).write_parquet(float_money)
    out: list[str | Path] = ["--output", tmp / "out.parquet"]
    key: list[str | Path] = ["--reference", "case_no"]
    on: list[str | Path] = ["--as-of", "2020-07-01"]
    return {
        "missing column": (["--input", no_region, *out, *key, *on], "no column region_code"),
        "missing reference": (["--input", good, *out, "--reference", "case", *on], "no column case (--reference)"),
        "wrong type": (["--input", int_dates, *out, *key, *on], "column birth_date has type Int"),
        "float money": (["--input", float_money, *out, *key, *on], "column own_income_fen has type Float64"),
        "bad date in a later chunk": (
            ["--input", bad_date, *out, *key, *on, "--chunk-size", "10"],
            "column birth_date: '1950-02-30' (row with case_no 'C0025') is not a date YYYY-MM-DD",
        ),
        "date outside the policy period": (
            ["--input", good, *out, *key, "--as-of", "2014-12-31"],
            "2014-12-31 is outside the policy period 2015-01-01 to 2030-12-31",
        ),
        "bad months": (["--input", good, *out, *key, "--months", "2020-13:2021-01"], "--months 2020-13:2021-01"),
        "both date options": (["--input", good, *out, *key, *on, "--months", "2020-01:2020-02"], "either --as-of"),
        "unknown backend": (["--input", good, *out, *key, *on, "--backend", "spark"], "--backend spark"),
        "unknown cluster": (["--input", good, *out, *key, *on, "--cluster", "yarn"], "--cluster yarn"),
        "unknown option": (["--input", good, *out, *key, *on, "--workers", "2"], "No such option: --workers"),
        "no input": (["--input", tmp / "nothing.csv", *out, *key, *on], "no such file"),
        "unknown output kind": (["--input", good, "--output", tmp / "out.xlsx", *key, *on], "give a .parquet"),
        "ID number as reference": (["--input", good, *out, "--reference", "id_number", *on], "never written out"),
        "ID numbers as reference": (["--input", ids, *out, "--reference", "sfzh", *on], "--reference sfzh holds ID"),
        "bad policies": (["--input", good, *out, *key, *on, "--policies", tmp], "--policies"),
        "unknown encoding": (["--input", no_region, *out, *key, *on, "--encoding", "klingon"], "--encoding klingon"),
    }


def test_bad_inputs_one_line_each(tmp_path, capsys):
    """In this process (the CLI's main, as the console script calls it): one import for them all."""
    for name, (args, words) in bad_inputs(tmp_path).items():
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--backend", BACKEND, *map(str, args)])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert exit_.value.code not in (0, None), name
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (name, err)
        assert not (tmp_path / "out.parquet").exists() and leftovers(tmp_path) == [], name
        assert_no_personal_data(PERSONS, err)


def test_local_cluster_same_as_one_process(tmp_path):
    """Two worker processes over a directory of several files and row groups give the single
    process's output, row for row and in the same order."""
    source = tmp_path / "persons"
    source.mkdir()
    persons = with_ids_and_names(PERSONS)
    for i, part in enumerate(persons.iter_slices(10)):
        pq.write_table(part.to_arrow(), source / f"part-{i}.parquet", row_group_size=4)
    args = ["--input", source, "--reference", "case_no", *dates_option(DATES), "--chunk-size", "3"]
    run(*args, "--output", tmp_path / "one.parquet")
    done = run(*args, "--output", tmp_path / "two.parquet", "--cluster", "local:2")
    one, two = read_output(tmp_path / "one.parquet"), read_output(tmp_path / "two.parquet")
    assert_frame_equal(two, one)
    assert_frame_equal(by_key(one), by_key(expected(PERSONS, DATES)))
    assert "cluster start" in done.stderr
    assert_no_personal_data(PERSONS, done.stderr, (tmp_path / "two.parquet").read_bytes())
    # Into a directory, each task writes its own part (one per row group here).
    run(*args, "--output", tmp_path / "parts", "--cluster", "local:2")
    assert_frame_equal(read_output(tmp_path / "parts"), one)
    assert len(list((tmp_path / "parts").glob("*.parquet"))) == sum(
        pq.ParquetFile(f).num_row_groups for f in source.glob("*.parquet")
    )
    # A CSV input is read here and sent to the workers in chunks (cast, without ID numbers).
    write_csv(persons, tmp_path / "persons.csv")
    csv_args = ["--input", tmp_path / "persons.csv", "--output", tmp_path / "csv.parquet", "--cluster", "local:2"]
    done = run(*csv_args, "--reference", "case_no", *dates_option(DATES), "--chunk-size", "7")
    assert_frame_equal(by_key(read_output(tmp_path / "csv.parquet")), by_key(one))
    assert_no_personal_data(PERSONS, done.stderr)


def test_console_script_installed():
    script = Path(sys.executable).parent / "subsidy-population"
    done = subprocess.run([script, "run", "--help"], capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 0 and "--reference" in done.stdout and "--cluster" in done.stdout
