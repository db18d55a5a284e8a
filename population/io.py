"""Where a population run reads persons and writes decisions: Arrow record batches, chunk by chunk.

Sources: a Parquet file or partitioned directory (read row group by row group), a CSV file (UTF-8
with or without BOM, or GB18030: detected, or given), a PostgreSQL table or query (read as Arrow
through ADBC, in the batches the driver streams). Sinks: a Parquet file or directory of parts, a
CSV file, a PostgreSQL table (written through ADBC ingest). Every sink writes under a temporary
name and renames at the end, so a failed run leaves nothing half-written.

`person_table` casts whatever a source gives to the person table (schema.PERSON_SCHEMA): typed
columns are cast, text (CSV) is parsed: dates YYYY-MM-DD, empty = null, `other_benefits` a
;-separated list. An `id_number` column only fills a missing birth date and is dropped there:
no ID number goes further, and no error message quotes one.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from service import idnumber
from service.engine.columnar import schema as s

ID_NUMBER = "id_number"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
LIST_SEPARATOR = ";"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
PART_ROWS = 1_000_000  # rows in a part file of a directory output
TRUE_TEXT = {"true", "t", "1", "yes", "y"}
FALSE_TEXT = {"false", "f", "0", "no", "n"}


class JobError(Exception):
    """A problem with the run's inputs or options: its message is one line saying what to fix."""


def is_postgres(spec: str) -> bool:
    return spec.startswith(POSTGRES_SCHEMES)


def redacted(uri: str) -> str:
    """A connection URI without its password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def wanted_columns(reference: str) -> list[str]:
    """The input columns a run reads: the person's, the caller's reference, weight, ID number."""
    return list(dict.fromkeys([reference, *s.PERSON_SCHEMA, s.WEIGHT, ID_NUMBER]))


def check_columns(columns: list[str], reference: str, where: str) -> None:
    """Refuse an input without the columns every run needs (before reading any row)."""
    if reference == ID_NUMBER:
        raise JobError("--reference id_number: ID numbers are never written out; give your own key column")
    missing = [c for c in (reference, *s.REQUIRED) if c not in columns]
    if "birth_date" in missing and ID_NUMBER in columns:
        missing.remove("birth_date")
    if missing:
        what = ", ".join(missing)
        hint = " (--reference)" if reference in missing else ""
        raise JobError(f"{where} has no column {what}{hint}; its columns are: {', '.join(columns)}")


# ---------------------------------------------------------------------------------------------
# Casting to the person table


def _label(dtype: pl.DataType) -> str:
    if dtype == pl.Date():
        return "a date (or text YYYY-MM-DD)"
    if dtype.is_integer():
        return "an integer (or its text)"
    if dtype == pl.Boolean():
        return "true/false"
    if isinstance(dtype, pl.List):
        return "a list of text (or ;-separated text)"
    return "text"


VALUE_LABELS = {"Date": "a date YYYY-MM-DD", "Boolean": "true or false"}


def _value_label(dtype: pl.DataType) -> str:
    return "an integer in range" if dtype.is_integer() else VALUE_LABELS.get(str(dtype), str(dtype))


def _text(column: pl.Expr) -> pl.Expr:
    """A text column stripped, empty as null (CSV and text columns elsewhere)."""
    t = column.str.strip_chars()
    return pl.when(t != "").then(t)


def _cast_expr(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr | None:
    """How a column of `source` type becomes `target`; None when it cannot (a wrong type)."""
    col = pl.col(name)
    if source == pl.Null():
        return pl.lit(None, dtype=target)
    if source == target and not isinstance(target, pl.String):
        return col
    text = isinstance(source, pl.String | pl.Categorical | pl.Enum)
    t = _text(col if isinstance(source, pl.String) else col.cast(pl.String))
    if target == pl.Date():
        if text:
            return t.str.to_date("%Y-%m-%d", strict=False)
        if isinstance(source, pl.Datetime):
            return col.dt.date()
        return None
    if target.is_integer():
        if text:
            return t.cast(pl.Int64, strict=False).cast(target, strict=False)
        if source.is_integer():
            return col.cast(target, strict=False)
        if isinstance(source, pl.Decimal) and source.scale == 0:
            return col.cast(target, strict=False)
        return None
    if target == pl.Boolean():
        if text:
            low = t.str.to_lowercase()
            return pl.when(low.is_in(TRUE_TEXT)).then(True).when(low.is_in(FALSE_TEXT)).then(False)
        if source.is_integer():
            return pl.when(col == 1).then(True).when(col == 0).then(False)
        return None
    if target == pl.String():
        if text:
            return t
        if source.is_integer():
            return col.cast(pl.String)
        return None
    if isinstance(target, pl.List):
        if text:
            parts = (
                t.str.split(LIST_SEPARATOR)
                .list.eval(pl.element().str.strip_chars())
                .list.eval(pl.element().filter(pl.element() != ""))
            )
            return pl.when(parts.list.len() > 0).then(parts)
        if isinstance(source, pl.List) and (source.inner in (pl.String(), pl.Categorical(), pl.Null())):
            return col.cast(target)
        return None
    return None


def _cast_columns(df: pl.DataFrame, targets: dict[str, pl.DataType], reference: str) -> dict[str, pl.Series]:
    """The columns in their target types (all in one select: polars casts them side by side)."""
    exprs = []
    for name, target in targets.items():
        expr = _cast_expr(name, df.schema[name], target)
        if expr is None:
            raise JobError(f"column {name} has type {df.schema[name]}; it must be {_label(target)}")
        exprs.append(expr.alias(name))
    out = df.select(exprs)
    return {name: _checked(df, name, out[name], target, reference) for name, target in targets.items()}


def _checked(df: pl.DataFrame, name: str, out: pl.Series, target: pl.DataType, reference: str) -> pl.Series:
    """`out`, the column `name` cast; a value that did not cast is an error (blank text is null)."""
    source = df.schema[name]
    if isinstance(target, pl.List | pl.String) or source in (pl.Null(), target):
        return out
    bad = df[name].is_not_null() & out.is_null()
    if bad.any():
        # Blank text is null, not bad: only a value that does not parse is.
        if isinstance(source, pl.String | pl.Categorical | pl.Enum):
            bad = bad & (df[name].cast(pl.String).str.strip_chars() != "")
        if bad.any():
            i = int(bad.arg_true()[0])
            value = str(df[name][i])[:40]
            raise JobError(
                f"column {name}: {value!r} (row with {reference} {df[reference][i]!r}) is not {_value_label(target)}"
            )
    return out


_ID_SHAPE = r"^\s*[0-9]{17}[0-9Xx]\s*$"


def check_not_id_numbers(keys: pl.Series, reference: str) -> None:
    """Refuse a reference column of ID numbers: it is written to every decision row."""
    if keys.dtype.is_integer() or isinstance(keys.dtype, pl.String):
        text = keys.cast(pl.String)
        shaped = text.filter(text.str.contains(_ID_SHAPE))
        if any(not idnumber.problems(v.strip().upper()) for v in shaped.head(1000)):
            raise JobError(f"--reference {reference} holds ID numbers, which are never written out; give another key")


def _birth_from_id(value: str) -> Any:
    value = value.strip().upper()
    return None if idnumber.problems(value) else idnumber.birth_date(value)


def person_table(batch: pa.RecordBatch | pa.Table, reference: str) -> pl.DataFrame:
    """The person table (schema.PERSON_SCHEMA) of a batch, its key renamed to schema.REFERENCE
    and any weight carried; an ID number only fills a missing birth date and is dropped."""
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    check_columns(df.columns, reference, "the input")
    check_not_id_numbers(df[reference], reference)
    columns: dict[str, pl.Series] = {s.REFERENCE: df[reference]}
    targets = {n: t for n, t in s.PERSON_SCHEMA.items() if n in df.columns}
    if s.WEIGHT in df.columns and reference != s.WEIGHT:
        targets = {s.WEIGHT: pl.Int64(), **targets}
    cast = _cast_columns(df, targets, reference)
    if s.WEIGHT in cast:
        columns[s.WEIGHT] = cast[s.WEIGHT]
    for name, dtype in s.PERSON_SCHEMA.items():
        columns[name] = cast[name] if name in cast else pl.repeat(None, df.height, dtype=dtype, eager=True)
    if ID_NUMBER in df.columns:
        ids = df[ID_NUMBER].cast(pl.String)
        need = columns["birth_date"].is_null() & ids.is_not_null()
        if need.any():
            born = pl.Series([_birth_from_id(v) for v in ids.filter(need)], dtype=pl.Date())
            columns["birth_date"] = columns["birth_date"].scatter(need.arg_true(), born)
    return pl.DataFrame([series.alias(name) for name, series in columns.items()])


def plain(table: pa.Table) -> pa.Table:
    """Large Arrow types (polars' output) as the 32-bit offset ones, for a consumer that takes only
    those (Spark's mapInArrow without spark.sql.execution.arrow.useLargeVarTypes)."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_list(t) or pa.types.is_list_view(t):
            inner = t.value_type
            t = pa.list_(pa.string() if pa.types.is_large_string(inner) or pa.types.is_string_view(inner) else inner)
        fields.append(pa.field(f.name, t, f.nullable))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


# ---------------------------------------------------------------------------------------------
# Sources


def rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly `size` rows (the last one shorter) from batches of any size."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(held)
            yield from table.slice(0, size).combine_chunks().to_batches()
            rest = table.slice(size)
            held, rows = rest.combine_chunks().to_batches() if rest.num_rows else [], rest.num_rows
    if rows:
        yield from pa.Table.from_batches(held).combine_chunks().to_batches()


@dataclass(frozen=True)
class ParquetPiece:
    """Consecutive row groups of one Parquet file, a chunk's rows or fewer (or one row group of
    more): the unit a cluster task reads (itself) and decides."""

    path: str
    row_groups: tuple[int, ...]
    rows: int
    columns: tuple[str, ...]
    partition: tuple[tuple[str, str], ...] = ()

    def batches(self, chunk_size: int) -> Iterator[pa.RecordBatch]:
        parquet = pq.ParquetFile(self.path)
        present = [c for c in self.columns if c in parquet.schema_arrow.names]
        batches = parquet.iter_batches(batch_size=chunk_size, row_groups=list(self.row_groups), columns=present)
        for batch in rechunk(batches, chunk_size):
            for key, value in self.partition:
                if key in self.columns and key not in batch.schema.names:
                    batch = batch.append_column(key, pa.array([value] * batch.num_rows, pa.string()))
            yield batch


class Source(Protocol):
    columns: list[str]

    @property
    def total_rows(self) -> int | None:  # for the progress bar; None when unknown before reading
        ...

    def chunks(self, chunk_size: int) -> Iterator[pa.RecordBatch]: ...

    def close(self) -> None: ...


def hive_keys(root: Path, file: Path) -> tuple[tuple[str, str], ...]:
    """The KEY=VALUE directories between a dataset's root and one of its files, as text (a
    region code stays the text it is; pyarrow's discovery would make it an integer)."""
    parts = file.relative_to(root).parts[:-1] if file != root else ()
    keys = (unquote(part).split("=", 1) for part in parts if "=" in part)
    return tuple((key, value) for key, value in keys if value != HIVE_NULL)


class ParquetSource:
    def __init__(self, path: Path, reference: str):
        try:
            dataset = pads.dataset(path, format="parquet")
            files = sorted(f.path for f in dataset.get_fragments())
            if not files:
                raise JobError(f"--input {path}: no Parquet files in it")
            partitions = {path_file: hive_keys(path, Path(path_file)) for path_file in files}
            self.columns = list(dict.fromkeys([*dataset.schema.names, *(k for p in partitions.values() for k, _ in p)]))
            wanted = tuple(c for c in wanted_columns(reference) if c in self.columns)
            self.wanted, self.partitions = wanted, partitions
            self.row_groups: list[tuple[str, int, int]] = []  # file, row group, rows
            for file in files:
                metadata = pq.ParquetFile(file).metadata
                self.row_groups += [(file, i, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)]
        except (pa.ArrowInvalid, OSError) as exc:
            raise JobError(f"--input {path}: not readable as Parquet ({_first_line(exc)})") from None
        self.total_rows = sum(rows for _, _, rows in self.row_groups)
        self.schema = dataset.schema

    def pieces(self, chunk_size: int) -> list[ParquetPiece]:
        """The row groups gathered file by file into pieces of at most a chunk's rows: a chunk
        may span row groups (each chunk costs the decider a set-up of its own)."""
        found: list[ParquetPiece] = []
        for file, group, rows in self.row_groups:
            last = found[-1] if found else None
            if last is not None and last.path == file and last.rows + rows <= chunk_size:
                found[-1] = dataclasses.replace(last, row_groups=(*last.row_groups, group), rows=last.rows + rows)
            else:
                found.append(ParquetPiece(file, (group,), rows, self.wanted, self.partitions[file]))
        return found

    def chunks(self, chunk_size: int) -> Iterator[pa.RecordBatch]:
        # Piece by piece, as the cluster runner reads them: the same chunks, so the same output order.
        for piece in self.pieces(chunk_size):
            yield from piece.batches(chunk_size)

    def close(self) -> None:
        pass


def detect_encoding(path: Path, block: int = 1 << 24) -> str:
    """utf8 when the whole file decodes as UTF-8 (a BOM is skipped by the reader), else gb18030."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as f:
        try:
            while chunk := f.read(block):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf8"


class CsvSource:
    def __init__(self, path: Path, reference: str, encoding: str | None):
        if encoding is None:
            encoding = detect_encoding(path)
        else:
            try:
                encoding = codecs.lookup(encoding).name
            except LookupError:
                raise JobError(f"--encoding {encoding}: unknown encoding (utf-8 or gb18030)") from None
        # pyarrow reads UTF-8 natively (skipping a BOM) and transcodes anything else.
        self.encoding = "utf8" if encoding in ("utf-8", "utf8", "utf-8-sig") else encoding
        self.path = path
        self.total_rows = None
        try:
            with pacsv.open_csv(path, read_options=self._read_options()) as reader:
                self.columns = reader.schema.names
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise JobError(f"--input {path}: not readable as {self.encoding} CSV ({_first_line(exc)})") from None
        self.wanted = [c for c in wanted_columns(reference) if c in self.columns]

    def _read_options(self) -> pacsv.ReadOptions:
        return pacsv.ReadOptions(encoding=self.encoding, block_size=1 << 22)

    def chunks(self, chunk_size: int) -> Iterator[pa.RecordBatch]:
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.wanted, pa.string()),
            include_columns=self.wanted,
            null_values=[""],
            strings_can_be_null=True,
        )
        try:
            with pacsv.open_csv(self.path, read_options=self._read_options(), convert_options=convert) as reader:
                yield from rechunk(iter(reader), chunk_size)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise JobError(f"--input {self.path}: {_first_line(exc)}") from None

    def close(self) -> None:
        pass


def quote_identifier(name: str) -> str:
    """A table name (schema.table or table) as SQL, each part quoted."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _connect(uri: str) -> Any:
    from adbc_driver_postgresql import dbapi

    try:
        return dbapi.connect(uri)
    except Exception as exc:
        raise JobError(f"cannot connect to {redacted(uri)}: {_first_line(exc)}") from None


class PostgresSource:
    def __init__(self, uri: str, reference: str, table: str | None, query: str | None):
        if (table is None) == (query is None):
            raise JobError("a PostgreSQL --input needs exactly one of --table NAME or --query SQL")
        self.uri, self.table = uri, table
        self.sql = query if query is not None else f"SELECT * FROM {quote_identifier(table or '')}"
        self.total_rows = None
        self.connection = _connect(uri)
        self.cursor = self.connection.cursor()
        try:
            self.cursor.execute(self.sql)
            self.reader = self.cursor.fetch_record_batch()
        except Exception as exc:
            self.close()
            what = f"--table {table}" if table is not None else "--query"
            raise JobError(f"{what}: {_first_line(exc)}") from None
        self.columns = self.reader.schema.names

    def chunks(self, chunk_size: int) -> Iterator[pa.RecordBatch]:
        yield from rechunk(iter(self.reader), chunk_size)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cursor.close()
        with contextlib.suppress(Exception):
            self.connection.close()


def open_source(
    spec: str, reference: str, table: str | None = None, query: str | None = None, encoding: str | None = None
) -> Source:
    if is_postgres(spec):
        return PostgresSource(spec, reference, table, query)
    if table is not None or query is not None:
        raise JobError("--table and --query are for a postgresql:// --input only")
    path = Path(spec)
    if not path.exists():
        raise JobError(f"--input {spec}: no such file or directory")
    source: Source
    if path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES:
        source = ParquetSource(path, reference)
    elif path.suffix.lower() in CSV_SUFFIXES:
        source = CsvSource(path, reference, encoding)
    else:
        raise JobError(f"--input {spec}: give a .parquet or .csv file, a Parquet directory or postgresql://")
    check_columns(source.columns, reference, f"--input {spec}")
    return source


# ---------------------------------------------------------------------------------------------
# Sinks


class Sink(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def _temporary(path: Path) -> Path:
    # A dot name beside the target: same file system (rename is atomic), and a Parquet dataset
    # reader skips it.
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _replace(temporary: Path, path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise JobError(f"--output {path} exists; give --force to replace it")
    if path.is_dir() and not path.is_symlink():
        old = _temporary(path)
        path.rename(old)
        temporary.rename(path)
        shutil.rmtree(old)
    else:
        os.replace(temporary, path)


@dataclass
class _Schema:
    """The first table's schema: later tables are cast to it (a chunk may type a column apart)."""

    schema: pa.Schema | None = None

    def fit(self, table: pa.Table) -> pa.Table:
        if self.schema is None:
            self.schema = table.schema
        return table if table.schema == self.schema else table.cast(self.schema)


@dataclass
class _FileSink:
    """One output file, written under a temporary name and renamed over `path` by commit()."""

    path: Path
    force: bool
    temporary: Path = field(init=False)
    writer: Any = None  # the format's writer, opened with the first table's schema
    shape: _Schema = field(default_factory=_Schema)

    def __post_init__(self) -> None:
        self.temporary = _temporary(self.path)

    def prepare(self, table: pa.Table) -> pa.Table:
        return self.shape.fit(table)

    def open(self, schema: pa.Schema) -> Any:
        raise NotImplementedError

    def write(self, table: pa.Table) -> None:
        table = self.prepare(table)
        if self.writer is None:
            self.writer = self.open(table.schema)
        self.writer.write_table(table)

    def commit(self) -> None:
        if self.writer is not None:
            self.writer.close()
        _replace(self.temporary, self.path, self.force)

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.temporary.unlink(missing_ok=True)


class ParquetFileSink(_FileSink):
    def open(self, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(self.temporary, schema)


@dataclass
class ParquetDirectorySink(_FileSink):
    """Part files of about PART_ROWS rows, numbered in order: read in name order, the rows are in
    run order. (On a cluster each task writes its own part into `temporary`.)"""

    parts: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.temporary.mkdir()

    def part(self, index: int) -> Path:
        return self.temporary / f"part-{index:06d}.parquet"

    def open(self, schema: pa.Schema) -> pq.ParquetWriter:
        self.parts += 1
        return pq.ParquetWriter(self.part(self.parts - 1), schema)

    def write(self, table: pa.Table) -> None:
        super().write(table)
        self.rows += table.num_rows
        if self.rows >= PART_ROWS:
            self.writer.close()
            self.writer, self.rows = None, 0

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        shutil.rmtree(self.temporary, ignore_errors=True)


def csv_ready(table: pa.Table) -> pa.Table:
    """List columns as ;-joined text (empty for an empty or null list)."""
    table = plain(table)  # Arrow's join takes no string views
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            joined = pc.binary_join(table.column(i), pa.scalar(LIST_SEPARATOR, f.type.value_type))
            table = table.set_column(i, f.name, joined)
    return table


class CsvSink(_FileSink):
    def prepare(self, table: pa.Table) -> pa.Table:
        return csv_ready(self.shape.fit(table))

    def open(self, schema: pa.Schema) -> pacsv.CSVWriter:
        return pacsv.CSVWriter(self.temporary, schema)


def _split_table(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema or "public", table


class PostgresSink:
    """Ingested into a fresh table in one transaction, renamed to the target at the end."""

    def __init__(self, uri: str, table: str, force: bool):
        self.schema, self.table = _split_table(table)
        self.force = force
        self.temporary = f"{self.table[:40]}_tmp_{secrets.token_hex(4)}"
        self.connection = _connect(uri)
        self.cursor = self.connection.cursor()
        self.written = False
        self.shape = _Schema()
        if self.exists() and not force:
            self.close()
            raise JobError(f"--output-table {table} exists; give --force to replace it")

    def exists(self) -> bool:
        self.cursor.execute("SELECT to_regclass($1) IS NOT NULL", (f"{self.qualified(self.table)}",))
        return bool(self.cursor.fetchone()[0])

    def qualified(self, table: str) -> str:
        return quote_identifier(f"{self.schema}.{table}")

    def write(self, table: pa.Table) -> None:
        table = self.shape.fit(table)
        mode = "append" if self.written else "create"
        try:
            self.cursor.adbc_ingest(self.temporary, table, mode=mode, db_schema_name=self.schema)
        except Exception as exc:
            raise JobError(f"--output-table {self.schema}.{self.table}: {_first_line(exc)}") from None
        self.written = True

    def commit(self) -> None:
        if self.exists():
            if not self.force:
                raise JobError(f"--output-table {self.schema}.{self.table} exists; give --force to replace it")
            self.cursor.execute(f"DROP TABLE {self.qualified(self.table)}")
        self.cursor.execute(f"ALTER TABLE {self.qualified(self.temporary)} RENAME TO {quote_identifier(self.table)}")
        self.connection.commit()
        self.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.rollback()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cursor.close()
        with contextlib.suppress(Exception):
            self.connection.close()


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def open_sink(
    spec: str, force: bool, output_table: str | None, input_spec: str, input_table: str | None = None
) -> Sink:
    if is_postgres(spec):
        if not output_table:
            raise JobError("a postgresql:// --output needs --output-table NAME")
        same_database = is_postgres(input_spec) and _database(input_spec) == _database(spec)
        if same_database and input_table is not None and _split_table(input_table) == _split_table(output_table):
            raise JobError(f"--output-table {output_table} is the input table; write the decisions elsewhere")
        return PostgresSink(spec, output_table, force)
    if output_table is not None:
        raise JobError("--output-table is for a postgresql:// --output only")
    path = Path(spec)
    if not is_postgres(input_spec):
        source, target = Path(input_spec).resolve(), path.resolve()
        if _inside(source, target) or _inside(target, source):
            raise JobError(f"--output {spec} would write over the input {input_spec}; write elsewhere")
    if path.exists() and not force:
        raise JobError(f"--output {spec} exists; give --force to replace it")
    if not path.parent.is_dir():
        raise JobError(f"--output {spec}: no directory {path.parent}")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES and not path.is_dir():
        return ParquetFileSink(path, force)
    if suffix in CSV_SUFFIXES:
        return CsvSink(path, force)
    if suffix and not path.is_dir():
        raise JobError(f"--output {spec}: give a .parquet or .csv file, a directory or postgresql://")
    return ParquetDirectorySink(path, force)


def _database(uri: str) -> tuple[str, int, str]:
    parts = urlsplit(uri)
    return parts.hostname or "localhost", parts.port or 5432, parts.path.lstrip("/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # No ID number in any message: an 18-character run of digits (and X) is masked.
    return re.sub(r"\d{17}[\dXx]|\d{15}", "[id]", line)
