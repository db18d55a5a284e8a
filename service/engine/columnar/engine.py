"""The columnar decider: a person table and a date in, the decision table (schema.py) out, deciding
every row exactly as the online engine (decide.Engine, through the service core) decides a request.

The order of work follows decide.Engine.evaluate: the service's refusals of a row (request.to_case),
a date outside the policy period, a parameter not in force for the row's region and date; then
every program in force (interactions need them all), its rules three-valued, its outcome, routes,
amount and missing facts; the defaults it rests on (the rules evaluated again with unstated facts
unknown); the interactions in the policy's order; the referrals on stated facts alone.

How the work is shared. Per row there is only what reads the row, in passes of the streaming
engine (`streamed`): once per run, which rows the service's checks must see and the comparisons
that read neither the region nor the date (one dense number per row with its region code); per
date, the comparisons that read the date or the region's parameters (one packed word). The
distinct combinations of those (a few thousand in a million people) are decided once for all the
dates that have the same programs in force (`BATCH_CELLS` bounds how many), the region and date
telling them apart through the key, or rather its class (keys read alike by the expressions over
the combinations: most of a month end's are the month before's), so that a person keeps their
combination's number from date to date while it stays (`Numbering`); each date's table is then
one gather of their columns (a refused row gathers its refusal's row), but for the columns in
which no row changed from the date before. A person table in a few even pieces (a Parquet file's
row groups) is read in them. What a batch builds before reading any row (the compiled
comparisons, the expressions over the combinations) is a `Plan`, kept for the next batch with the
same programs and keys.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ...convert import spelled
from ...policy.expressions import Cmp, Fact, condition_refs, evaluate_operand, leaves, operand_refs
from ...policy.loader import load_policies
from ...policy.policyset import PolicySet, Program, Rule
from ...request import resolve_region
from ..decide import ELIGIBLE, INELIGIBLE, ROUNDING, UNDETERMINED
from . import schema as s
from .compile import DTYPES, KEY, UNSTATED, VALUES, Compiler, fact_column, key_facts, leaf_facts
from .rows import (
    ALWAYS_STATED,
    DATED,
    ENUM_COLUMNS,
    born,
    distinct_rows,
    enum_codes,
    refusal,
    row_facts,
    suspect,
    texts,
    value_index,
)
from .rows import coded as enum_code
from .tables import Key, KeyTable, in_force, outside_period

OUTCOME_CODES = {INELIGIBLE: 0, UNDETERMINED: 1, ELIGIBLE: 2}
OUTCOME_NAMES = list(OUTCOME_CODES)
MASK_BITS = 62  # labels per Int64 bit mask
WORD_BITS = 62  # signal bits per Int64 signature word
ERROR = "__error"
OTHER = "\x00other"  # a coded enum's value that the policy does not list
# The rows the service's own checks see on a date (suspect, or no region on it): their numbers,
# the distinct person rows among them and each one's index among those; per run, by the codes
# that have no region on the date.
Flagged = dict[tuple[int, ...], tuple[pl.Series, list[dict[str, Any]], pl.Series]]
SUSPECT, CODE, FIXED_ID = "__suspect", "__code", "__fixed_id"  # per run: refusal suspects, region code index
BASE = "__base"  # a row's fixed part and region code, as one dense number (`Fixed.base`)
MAX_PIECES = 64  # a person table in more pieces than this is copied into one first
DIRECT = 1 << 22  # `dense` addresses values below this directly (a table of this many flags)
# Person-dates decided together (the distinct combinations of all their dates decided at once):
# each holds its row index (4 bytes) until its date's table is made.
BATCH_CELLS = 1 << 24
PLANS = 8  # plans a decider keeps (`Plan`), the least recently used dropped first
Refused = list[tuple[pl.Series, pl.Series]]  # row numbers and the service's words (null: taken)


@functools.cache  # built thousands of times a date otherwise; an expression is immutable
def _int(value: int) -> pl.Expr:
    return pl.lit(value, pl.Int64())


Layers = list[list[pl.Expr]]  # column definitions, each list reading the person table and those before it


def streamed(frame: pl.DataFrame, layers: Layers, exprs: Sequence[pl.Expr]) -> pl.DataFrame:
    """`exprs` over the rows with the `layers`' columns defined, run by the streaming engine: the
    rows pass in cache-sized pieces, each defined column made only if read and only for the
    piece, instead of each part becoming a whole column in memory first (measured two to three
    times faster here). The result comes in pieces: eager work on it pays per piece."""
    lazy = frame.lazy()
    for layer in layers:
        if layer:
            lazy = lazy.with_columns(layer)
    return lazy.select(exprs).collect(engine="streaming")


def cut_like(columns: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """`columns` (the frame's height) cut in the frame's pieces, sharing one buffer: an eager
    query on a frame whose columns are cut differently first copies all of them into one piece
    (9 ms and the table's size again, measured on a million persons in 8 pieces)."""
    columns = columns.rechunk()
    lengths = frame.to_series(0).chunk_lengths() if frame.width else []
    if len(lengths) <= 1:
        return columns
    starts = itertools.accumulate(lengths[:-1], initial=0)
    return pl.concat([columns.slice(at, n) for at, n in zip(starts, lengths, strict=True)], rechunk=False)


def same_columns(first: pl.DataFrame, second: pl.DataFrame) -> list[str]:
    """The columns equal row for row in two frames of one schema (nulls equal). Lists by their
    lengths, then their items (a list column's own comparison was measured seven times slower)."""
    both = pl.concat([first, second.rename(lambda c: "__second." + c)], how="horizontal")

    def agreeing(names: list[str], part: Callable[[pl.Expr], pl.Expr]) -> list[str]:
        if not names:
            return []
        found = both.select(part(pl.col(c)).eq_missing(part(pl.col("__second." + c))).all() for c in names)
        return [c for c, same in zip(names, found.row(0), strict=True) if same]

    lists = [c for c, dtype in first.schema.items() if isinstance(dtype, pl.List)]
    flat = agreeing([c for c in first.columns if c not in lists], lambda e: e)
    sized = agreeing(lists, lambda e: e.list.len())  # so that the items line up
    same = set(flat) | set(agreeing(sized, lambda e: e.explode()))
    return [c for c in first.columns if c in same]


def _with(frame: pl.DataFrame, column: pl.Series) -> pl.DataFrame:
    return frame.with_columns(cut_like(column.to_frame(), frame))


def dense(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (sorted) and each value's index among them, for values in [0, bound):
    by direct addressing when the bound is small (a few passes over the values, measured several
    times faster than hashing them), else by sorting."""
    if bound > DIRECT:
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct, inverse.astype(np.uint32)
    present = np.zeros(bound, dtype=np.bool_)
    present[values] = True
    distinct = np.flatnonzero(present)
    where = np.empty(bound, dtype=np.uint32)  # read only where a value is
    where[distinct] = np.arange(len(distinct), dtype=np.uint32)
    return distinct, where[values]


def _is_true(e: pl.Expr) -> pl.Expr:
    return e.fill_null(False)


def _is_false(e: pl.Expr) -> pl.Expr:
    return e.not_().fill_null(False)


def _any(parts: Iterable[pl.Expr]) -> pl.Expr:
    found = list(parts)
    return functools.reduce(operator.or_, found) if found else pl.lit(False)


def _bits(parts: Sequence[tuple[pl.Expr, int]]) -> pl.Expr:
    """The sum of the bits whose condition holds (null counts as not holding)."""
    if not parts:
        return _int(0)
    return pl.sum_horizontal([pl.when(_is_true(c)).then(_int(1 << b)).otherwise(_int(0)) for c, b in parts])


def outcome_expr(program: Program, results: dict[str, pl.Expr]) -> pl.Expr:
    """decide.Engine._outcome as an Int8 code (OUTCOME_CODES)."""
    conditions = [results[r.id] for r in program.conditions]
    exclusions = [results[r.id] for r in program.exclusions]
    routes = [results[r.id] for r in program.routes]
    adjustments = [results[r.id] for r in program.adjustments]
    no_route = ~_any(_is_true(r) for r in routes)
    code = {k: pl.lit(v, pl.Int8()) for k, v in OUTCOME_CODES.items()}
    return (
        pl.when(_any([*(_is_false(c) for c in conditions), *(_is_true(e) for e in exclusions)]))
        .then(code[INELIGIBLE])
        .when(
            _any([*(c.is_null() for c in conditions), *(e.is_null() for e in exclusions)])
            | (no_route & _any(r.is_null() for r in routes))
        )
        .then(code[UNDETERMINED])
        .when(no_route)
        .then(code[INELIGIBLE])
        .when(_any(a.is_null() for a in adjustments))
        .then(code[UNDETERMINED])
        .otherwise(code[ELIGIBLE])
    )


class Numbering:
    """The distinct combinations of a batch's dates, numbered across its dates: a combination
    seen on an earlier date keeps that date's number (its key being a class of keys, `Plan`).
    Month to month most people keep their combination, so they keep their row of the source
    and `_unchanged` passes over them. A combination's columns are packed in one Int64 word of
    `widths` bits each (null as 0); when they do not fit, each date's are numbered apart."""

    def __init__(self, widths: Sequence[int] | None) -> None:
        self.widths = widths if widths is not None and sum(widths) <= 63 else None
        self.count = 0
        self.known = np.empty(0, dtype=np.int64)  # the known combinations' words, sorted
        self.numbers = np.empty(0, dtype=np.uint32)  # and their numbers
        # The date before's rows (`_signatures`' one word each), their numbers and each region
        # code's key class: a row whose word and class stay keeps its number.
        self.last: tuple[np.ndarray, np.ndarray, list[int | None]] | None = None

    def number(self, combinations: pl.DataFrame) -> tuple[np.ndarray | None, pl.DataFrame]:
        """Each of a date's distinct combinations' number (None: they are the first numbers, in
        order), and those first seen on the date (numbered after the known ones, in order)."""
        first = self.count
        if self.widths is None or not first:
            self.count += combinations.height
            if self.widths is not None:
                self._learn(self._words(combinations), np.arange(combinations.height, dtype=np.uint32))
            return (None if not first else np.arange(first, self.count, dtype=np.uint32)), combinations
        words = self._words(combinations)
        at = np.minimum(np.searchsorted(self.known, words), max(len(self.known) - 1, 0))
        seen = self.known[at] == words
        numbers = np.where(seen, self.numbers[at], 0).astype(np.uint32)
        fresh = np.flatnonzero(~seen)
        numbers[fresh] = np.arange(first, first + len(fresh), dtype=np.uint32)
        self.count += len(fresh)
        self._learn(words[fresh], numbers[fresh])
        return numbers, combinations[fresh]

    def moved(self, words: np.ndarray, by_code: list[int | None]) -> np.ndarray | None:
        """The rows whose word (`_signatures`) or region code's key class is not the date
        before's; None: every row is numbered afresh (no date before, or no numbers across dates)."""
        last = self.last
        if last is None or self.widths is None or last[2] != by_code:
            return None
        return np.flatnonzero(words != last[0])

    def rows(self, found: np.ndarray, moved: np.ndarray | None) -> np.ndarray:
        """Each row's number: `found` for every row, or for the rows that moved (the others keep
        the date before's)."""
        if moved is None:
            return found
        assert self.last is not None
        index = self.last[1].copy()
        index[moved] = found
        return index

    def _words(self, combinations: pl.DataFrame) -> np.ndarray:
        assert self.widths is not None
        word = np.zeros(combinations.height, dtype=np.int64)
        shift = 0
        for column, width in zip(combinations.get_columns(), self.widths, strict=True):
            word |= (column.cast(pl.Int64()) + 1).fill_null(0).to_numpy() << shift
            shift += width
        return word

    def _learn(self, words: np.ndarray, numbers: np.ndarray) -> None:
        known = np.concatenate([self.known, words])
        order = np.argsort(known, kind="stable")
        self.known, self.numbers = known[order], np.concatenate([self.numbers, numbers])[order]


class Signal(NamedTuple):
    """A column the rows are told apart by: a three-valued Boolean (two bits: 0 false, 1 true,
    2 null), or an integer code of `bits` bits."""

    expr: pl.Expr
    bits: int = 2
    code: bool = False


def _layout(signals: dict[str, Signal]) -> list[list[tuple[str, int]]]:
    """The signals in Int64 words: each word's (name, bit offset), at most WORD_BITS bits a word."""
    words: list[list[tuple[str, int]]] = []
    used = WORD_BITS
    for name, signal in signals.items():
        if used + signal.bits > WORD_BITS:
            words.append([])
            used = 0
        words[-1].append((name, used))
        used += signal.bits
    return words


def pack(signals: dict[str, Signal], prefix: str) -> list[pl.Expr]:
    """The signals packed into Int64 words `{prefix}0`, `{prefix}1`, ..."""
    words = []
    for w, items in enumerate(_layout(signals)):
        name, at = items[-1]
        # A word that fits in 32 bits is summed in them (half the memory to pass over).
        dtype = pl.UInt32() if at + signals[name].bits <= 32 else pl.Int64()
        parts = []
        for name, at in items:
            e = signals[name].expr
            if signals[name].code:
                parts.append(e.cast(dtype) * pl.lit(1 << at, dtype))
            elif dtype == pl.UInt32():  # 0, 1 or (null) 2, shifted: measured faster than a when-then chain
                parts.append(e.cast(dtype).fill_null(2) * pl.lit(1 << at, dtype))
            else:  # the shift folded into the literals: measured twice as fast as a multiply in Int64
                parts.append(pl.when(e.is_null()).then(_int(2 << at)).when(e).then(_int(1 << at)).otherwise(_int(0)))
        words.append(functools.reduce(operator.add, parts).cast(pl.Int64()).alias(f"{prefix}{w}"))
    return words


def unpack(signals: dict[str, Signal], prefix: str) -> list[pl.Expr]:
    exprs = []
    for w, items in enumerate(_layout(signals)):
        for name, at in items:
            code = pl.col(f"{prefix}{w}") // (1 << at) % (1 << signals[name].bits)
            exprs.append(
                (code if signals[name].code else pl.when(code == 2).then(None).otherwise(code == 1)).alias(name)
            )
    return exprs


def _reads(rule: Rule) -> list[str]:
    """The facts a rule reads (decide._reads): its condition's and its amount's, sorted."""
    refs = set(condition_refs(rule.when))
    for formula in (rule.amount, rule.multiply):
        if formula is not None:
            refs |= set(operand_refs(formula))
    return sorted(r.name for r in refs if isinstance(r, Fact))


class Fixed(NamedTuple):
    """The fixed part (what reads neither the key nor the date) of a run's rows: each row's id
    (`ids`) among the distinct packed words (`table`, with FIXED_ID; a word may carry the region
    code above the signals, which unpacking ignores), and with its region code the distinct
    values (`bases`: id << code bits | code) and each row's index among them (`base`)."""

    ids: pl.Series
    table: pl.DataFrame
    bases: np.ndarray
    base: np.ndarray


@dataclass
class Run:
    """One table of people over its dates: the person columns (with SUSPECT and CODE), the layers
    that define the facts, the carried columns, the region codes CODE indexes, and what is kept
    from date to date (`fixed`: each row's fixed-part id; `flagged`: the rows the service's
    checks see, per set of codes without a region)."""

    frame: pl.DataFrame
    layers: Layers
    carried: pl.DataFrame
    codes: list[str]
    fixed: dict[tuple[str, ...], Fixed] = field(default_factory=dict)
    flagged: Flagged = field(default_factory=dict)
    # The last date's refusals (most dates refuse the same rows in the same words).
    _refusals: tuple[Refused, pl.Series, pl.Series, pl.Series] | None = None
    _version: pl.Series | None = None

    def refusals(self, refused: Refused) -> tuple[pl.Series, pl.Series, pl.Series]:
        """The numbers of the refused rows, the distinct words refusing them, and each refused
        row's words (an index among those)."""
        last = self._refusals
        if (
            last is None
            or len(last[0]) != len(refused)
            or not all(
                a.equals(c) and b.equals(d, null_equal=True) for (a, b), (c, d) in zip(last[0], refused, strict=True)
            )
        ):
            rows = pl.Series([], dtype=pl.UInt32())
            said = pl.Series([], dtype=pl.String())
            for numbers, words in refused:  # a null word: the service takes that row
                rows, said = rows.append(numbers.filter(words.is_not_null())), said.append(words.drop_nulls())
            words = said.unique(maintain_order=True)
            which = said.replace_strict(words, pl.int_range(words.len(), dtype=pl.UInt32(), eager=True))
            last = self._refusals = (refused, rows, words, which)
        return last[1], last[2], last[3]

    def version(self, version: str) -> pl.Series:
        """The policy version column (one for every date)."""
        if self._version is None:
            self._version = pl.repeat(version, self.frame.height, dtype=pl.String(), eager=True)
        return self._version


class Unknown:
    """Whether a fact is unknown: with defaults applied (`missing`) or as stated (`unset`). A row
    fact's answer is a signature column; a key fact's is computed from the key."""

    def __init__(self, compiler: Compiler, signature: dict[str, Signal], coded: dict[str, list[Any]]):
        self.compiler = compiler
        self.signature = signature
        self.coded = coded  # facts whose value the signature holds: read from it

    def missing(self, fact: str) -> pl.Expr:
        if fact in self.compiler.key_facts:
            return self.compiler.key_unstated(fact)
        if fact in self.compiler.defaults:
            return pl.lit(False)
        return self._column(f"__missing.{fact}", fact, self.compiler.fact(fact, VALUES).is_null())

    def unset(self, fact: str) -> pl.Expr:
        if fact in self.compiler.key_facts:
            return self.compiler.key_unstated(fact)
        return self._column(f"__unset.{fact}", fact, self.compiler.stated(fact).is_null())

    def _column(self, name: str, fact: str, value: pl.Expr) -> pl.Expr:
        if fact in self.coded:
            return value
        if fact in ALWAYS_STATED:
            return pl.lit(False)
        self.signature.setdefault(name, Signal(value))
        return pl.col(name)


class Masks:
    """Sets of labels held as Int64 bit masks per row, turned into sorted lists once per distinct mask."""

    def __init__(self) -> None:
        self.labels: dict[str, list[list[str]]] = {}  # column prefix -> labels of each mask column

    def add(self, name: str, parts: Sequence[tuple[pl.Expr, str]]) -> list[pl.Expr]:
        chunks = [parts[i : i + MASK_BITS] for i in range(0, len(parts), MASK_BITS)] or [[]]
        self.labels[name] = [[label for _, label in chunk] for chunk in chunks]
        return [
            _bits([(cond, bit) for bit, (cond, _) in enumerate(chunk)]).alias(f"{name}#{i}")
            for i, chunk in enumerate(chunks)
        ]

    def lists(self, frame: pl.DataFrame, names: Sequence[str]) -> list[pl.Expr]:
        """Each row's labels under each name, sorted (as the online decider lists them): columns
        over `frame`, whose distinct masks are all read at once (one query, not one a column)."""
        columns = [f"{name}#{i}" for name in names for i in range(len(self.labels[name]))]
        distinct = dict(zip(columns, frame.select(pl.col(c).unique().implode() for c in columns).row(0), strict=True))
        exprs = []
        for name in names:
            found = []
            for i, labels in enumerate(self.labels[name]):
                masks = distinct[f"{name}#{i}"]
                lists = pl.Series([sorted(x for b, x in enumerate(labels) if m >> b & 1) for m in masks])
                index = pl.col(f"{name}#{i}").replace_strict(masks, list(range(len(masks))), return_dtype=pl.UInt32())
                found.append(pl.lit(lists.cast(pl.List(pl.String()))).gather(index))
            exprs.append(found[0] if len(found) == 1 else pl.concat_list(found).list.sort())
        return exprs


@dataclass
class Plan:
    """What deciding a batch builds from its programs in force and its keys alone, before any row
    is read: the compiled comparisons (the signals the passes pack), the expressions over the
    distinct combinations in the order they run (`stages`), the labels of their bit masks, and
    the columns every combination takes from its key (`source`). A decider keeps the last few
    (`PLANS`): a job's chunks and a repeated run have the same keys, and building a plan costs
    about 0.02 s of Python a batch."""

    compiler: Compiler
    coded: dict[str, list[Any]]
    fixed_part: dict[str, Signal]
    dated_part: dict[str, Signal]
    dated_facts: list[str]
    shared: list[pl.Expr]
    stages: list[list[pl.Expr]] = field(default_factory=list)
    masks: Masks = field(default_factory=Masks)
    source: list[pl.Expr] = field(default_factory=list)
    key_refused: bool = False
    null_row: pl.DataFrame | None = None  # `_source`'s, made once (5 ms a time)
    classes: pl.Series = field(default_factory=pl.Series)  # each key's class (Compiler.classes)


class ColumnarDecider:
    """A policy set compiled for whole tables of people (the `Decider` of population/backends.py)."""

    def __init__(self, policy: PolicySet):
        self.policy = policy
        self.version = policy.version
        self.programs = list(policy.programs)
        self.keys = KeyTable(policy)
        self.defaults = {n: f.default for n, f in policy.facts.items() if f.default is not None}
        self.interactions = [ex.id for ex in policy.exclusions] + [c.id for c in policy.combinations]
        self._leaf_numbers: dict[Cmp, int] = {}
        self._plans: OrderedDict[tuple[tuple[str, ...], tuple[int, ...]], Plan] = OrderedDict()
        # (program, the values its amounts read) -> the key's rows of `_amount`'s tables
        self._amounts: dict[tuple[str, tuple[Any, ...]], tuple[list[int | None], list[int | None]]] = {}
        # Amounts are computed per region and date (exactly, in Python): one that read a person's
        # fact would need a per-row formula, which no policy has; refuse it rather than guess.
        by_key = key_facts(policy)
        for rule in policy.rules:
            for formula in (rule.amount, rule.multiply):
                read = [r.name for r in operand_refs(formula) if isinstance(r, Fact)] if formula is not None else []
                if any(name not in by_key for name in read):
                    raise NotImplementedError(f"rule {rule.id}: the columnar backend has no amount that reads {read}")

    @classmethod
    def load(cls, policies: Path) -> ColumnarDecider:
        return cls(load_policies(policies))

    # The table ---------------------------------------------------------------------------------

    def _persons(self, persons: pl.DataFrame) -> pl.DataFrame:
        """The person columns in the schema's types (a column left out: unstated for every row)."""
        return persons.select(
            [
                pl.col(c).cast(dtype) if c in persons.columns else pl.lit(None, dtype).alias(c)
                for c, dtype in s.PERSON_SCHEMA.items()
            ]
        )

    def decide_many(self, persons: pl.DataFrame, dates: list[dt.date]) -> pl.DataFrame:
        """The decision table for each date, one after the other (see `decide_each`)."""
        tables = list(self.decide_each(persons, dates))
        if not tables:
            carried = {c: persons.schema[c] for c in (s.REFERENCE, s.WEIGHT) if c in persons.columns}
            return pl.DataFrame(schema={**carried, **s.decision_schema(self.programs)})
        return pl.concat(tables, how="vertical")

    def decide_each(self, persons: pl.DataFrame, dates: Iterable[dt.date]) -> Iterator[pl.DataFrame]:
        """Each date's decision table in turn (for tables too large to hold for every date at
        once). What does not depend on the date (most comparisons, which facts are unknown) is
        computed once for all of them."""
        # The person columns as they come, when they are cut in the same few pieces (a Parquet
        # file's row groups): one piece would copy all of them, while the caller holds the table.
        frame = self._persons(persons)
        if frame.n_chunks() > MAX_PIECES or len({tuple(c.chunk_lengths()) for c in frame.get_columns()}) > 1:
            frame = frame.rechunk()  # eager work on a frame of many pieces pays for each of them
        # In one piece, as the decision columns are (an eager query on a table cut unevenly copies it).
        carried = persons.select([c for c in (s.REFERENCE, s.WEIGHT) if c in persons.columns]).rechunk()
        codes = frame["region_code"].unique().drop_nulls().sort().to_list()
        read = {n for r in self.policy.rules for n in _reads(r)}
        undated = {n: e for n, e in row_facts(self.policy, dt.date(2000, 1, 1)).items() if n in read and n not in DATED}
        flags = [
            suspect(_today(self.policy)).alias(SUSPECT),
            pl.col("region_code").cast(pl.Enum(codes)).to_physical().alias(CODE),
            *born(frame["birth_date"]),  # the birth date's parts, read by every pass (ages)
            pl.col(ENUM_COLUMNS),
        ]
        frame = frame.with_columns(cut_like(streamed(frame, [enum_codes()], flags), frame))
        # The facts: never whole columns, made piece by piece in each pass that reads them.
        layers = [[e.alias(fact_column(n)) for n, e in undated.items()]]
        run = Run(frame, layers, carried, codes)
        batch: list[dt.date] = []
        for on in dates:
            full = (len(batch) + 1) * max(frame.height, 1) > BATCH_CELLS
            if batch and (full or self._in_force(on) != self._in_force(batch[0])):
                yield from self._decide_dates(run, batch)
                batch = []
            batch.append(on)
        if batch:
            yield from self._decide_dates(run, batch)

    def decide(self, persons: pl.DataFrame, on: dt.date) -> pl.DataFrame:
        return next(self.decide_each(persons, [on]))

    def _in_force(self, on: dt.date) -> tuple[str, ...] | None:
        """The programs in force on the date (None: the date is outside the policy period)."""
        return tuple(in_force(self.policy, on)) if outside_period(self.policy, on) is None else None

    def _decide_dates(self, run: Run, dates: list[dt.date]) -> Iterator[pl.DataFrame]:
        """Dates with the same programs in force, decided together. Per row and date, only what
        reads the row: its key, its refusal, the comparisons and which facts it lacks, packed
        two bits each. Everything after (rules, outcomes, amounts, interactions, the lists) is a
        function of those, so it is computed once per distinct combination (a few thousand in a
        million people, the key telling the dates apart) for all the dates at once, and picked up
        by each row."""
        policy = self.policy
        frame = run.frame
        in_force_ = self._in_force(dates[0])
        if in_force_ is None:  # outside the policy period: every row refused, nothing decided
            for on in dates:
                refused = self._errors(run, on, {})[1]
                yield self._table(run, None, None, on, refused, outside_period(policy, on))
            return
        programs = list(in_force_)
        local: dict[int, int] = {}  # the run's key index -> the batch's
        found = [self._errors(run, on, local) for on in dates]
        plan = self._plan(programs, tuple(local), dates[0])
        fixed_part = plan.fixed_part

        def layers(on: dt.date) -> Layers:
            dated = [row_facts(policy, on)[n].alias(fact_column(n)) for n in plan.dated_facts]
            return [*run.layers, dated, plan.shared]

        fixed_names = tuple(fixed_part)
        if fixed_names not in run.fixed:
            run.fixed[fixed_names] = self._fixed(run, fixed_part, _with(frame, found[0][0]), layers(dates[0]))
        fixed = run.fixed[fixed_names]
        smalls, indexes = [], []
        dated_bits = sum(signal.bits for signal in plan.dated_part.values())
        # The columns of a combination (`_signatures`): fixed id, key class (nullable), dated word.
        widths = [fixed.table.height.bit_length(), (len(plan.compiler.keys) + 1).bit_length(), dated_bits + 1]
        numbering = Numbering(widths if self._one_word(fixed, plan) else None)
        for on, (key, _, mapping) in zip(dates, found, strict=True):
            small, index = self._signatures(_with(frame, key), layers(on), fixed, plan, mapping, numbering)
            smalls.append(small)
            indexes.append(index)
        small = pl.concat(smalls).rechunk() if len(smalls) > 1 else smalls[0]
        for stage in plan.stages:
            small = small.with_columns(stage)
        refusals = [run.refusals(refused) for _, refused, _ in found]
        said = pl.concat([pl.Series([], dtype=pl.String()), *(told for _, told, _ in refusals)])
        said = said.unique(maintain_order=True)  # the words of every date, each a row of the source
        source = self._source(self._output(small, programs, plan.masks), plan, said)
        previous: tuple[pl.Series, dict[str, pl.Series]] | None = None
        for on, index, (_, refused, _), (rows, told, which) in zip(dates, indexes, found, refusals, strict=True):
            if rows.len():  # a refused row: the source's row of its words
                at = told.replace_strict(said, pl.int_range(said.len(), dtype=pl.UInt32(), eager=True))
                index = index.scatter(rows, at.gather(which) + (source.height - said.len()))
            # A column no row's value of which differs from the date before is that date's column.
            same = self._unchanged(source, previous[0], index) if previous is not None else []
            table = self._table(run, source, index, on, refused, None, previous[1] if previous else None, same)
            # Its own handles on the columns (clones share the data): the caller may change the table.
            previous = (index, {c.name: c.clone() for c in table.get_columns()})
            yield table

    @staticmethod
    def _fixed(run: Run, fixed_part: dict[str, Signal], frame: pl.DataFrame, layers: Layers) -> Fixed:
        """Each row's fixed part with its region code, as a dense number (`Fixed`)."""
        code_bits = len(run.codes).bit_length()
        code = pl.col(CODE).fill_null(len(run.codes)).cast(pl.Int64())
        layout = _layout(fixed_part)
        used = sum(fixed_part[name].bits for name, _ in layout[0]) if len(layout) == 1 else 0
        if len(layout) <= 1 and used + code_bits <= 63:
            # One word with the code on top, dictionary-encoded by Arrow (one hashing pass, a third
            # of polars' unique and a lookup): its entries are the distinct (fixed part, code) at once.
            word = pack(fixed_part, "__fixed")[0] if layout else _int(0).alias("__fixed0")
            words = streamed(frame, layers, [(word + code * (1 << used)).alias(word.meta.output_name())])
            encoded = pc.dictionary_encode(words.to_series().to_arrow())
            index = encoded.indices.to_numpy().view(np.uint32)
            entries = encoded.dictionary.to_numpy()
            table = pl.DataFrame([pl.Series(words.columns[0], entries)]).with_row_index(FIXED_ID)
            bases = (np.arange(len(entries), dtype=np.int64) << code_bits) | (entries >> used)
            return Fixed(pl.Series(FIXED_ID, index), table, bases, index)
        words = streamed(frame, layers, pack(fixed_part, "__fixed"))
        table = words.unique().with_row_index(FIXED_ID)
        ids = words.join(table, on=words.columns, how="left", maintain_order="left")[FIXED_ID]
        base = (ids.to_numpy().astype(np.int64) << code_bits) | frame[CODE].fill_null(len(run.codes)).to_numpy()
        return Fixed(ids, table, *dense(base, table.height << code_bits))

    def _plan(self, programs: list[str], key_ids: tuple[int, ...], on: dt.date) -> Plan:
        """The batch's plan (`Plan`): kept, or built and kept."""
        memo = (tuple(programs), key_ids)
        plan = self._plans.get(memo)
        if plan is not None:
            self._plans.move_to_end(memo)
            return plan
        plan = self._plans[memo] = self._build_plan(programs, [self.keys.keys[i] for i in key_ids], on)
        if len(self._plans) > PLANS:
            self._plans.popitem(last=False)
        return plan

    def _build_plan(self, programs: list[str], keys: list[Key], on: dt.date) -> Plan:
        policy = self.policy
        facts = row_facts(policy, on)  # which facts rows state (the same names on every date)
        compiler = Compiler(policy, keys, facts)
        rules = [r for pid in programs for r in policy.programs[pid].rules] + list(policy.referrals)
        read = {n for r in rules for n in _reads(r)}
        dated_facts = sorted(n for n in facts if n in read and n in DATED)

        # Comparisons, once each (and again with unstated facts unknown where a default is read).
        # Those that read only the key's facts are computed per distinct combination; those that
        # read neither the key nor the date (`fixed`) once for every date.
        fixed_part: dict[str, Signal] = {}
        dated_part: dict[str, Signal] = {}
        coded = self._coded(rules, compiler)
        unknown = Unknown(compiler, fixed_part, coded)
        compiler.sharing = True
        for rule in rules:
            modes = (UNSTATED,) if rule.kind == "referral" else (VALUES, UNSTATED)
            for leaf in leaves(rule.when):
                if compiler.key_only(leaf) or leaf.fact in coded:
                    continue
                for mode in modes:
                    name = self._leaf_name(leaf, mode, compiler)
                    part = fixed_part if compiler.fixed(leaf) else dated_part
                    if name not in part:
                        part[name] = Signal(compiler.leaf(leaf, mode))
            if rule.kind != "referral":
                for n in dict.fromkeys(n for leaf in leaves(rule.when) for n in leaf_facts(leaf)):
                    unknown.missing(n)
                for f in _reads(rule):
                    if f in compiler.defaults:
                        unknown.unset(f)
            else:
                for n in dict.fromkeys(n for leaf in leaves(rule.when) for n in leaf_facts(leaf)):
                    unknown.unset(n)
        compiler.sharing = False
        for fact, values in coded.items():  # the value itself (its index among the fact's values)
            value_code = enum_code(fact, values)  # an enum column's: read from the run's code
            if value_code is None:
                value_code = value_index(pl.col(fact_column(fact)), values)
            fixed_part[f"__code.{fact}"] = Signal(value_code, (len(values) + 1).bit_length(), True)
        shared = [e.alias(name) for name, e in compiler.shared.values()]
        plan = Plan(compiler, coded, fixed_part, dated_part, dated_facts, shared)

        def leaf_in(mode: str) -> Callable[[Cmp], pl.Expr]:
            def column(leaf: Cmp) -> pl.Expr:
                if compiler.key_only(leaf) or leaf.fact in coded:
                    return compiler.leaf(leaf, mode)
                return pl.col(self._leaf_name(leaf, mode, compiler))

            return column

        results: dict[str, pl.Expr] = {}  # rule id -> its result
        unstated: dict[str, pl.Expr] = {}  # rule id -> its result with unstated facts unknown
        exprs = []
        for rule in rules:
            if rule.kind != "referral":
                exprs.append(compiler.condition(rule.when, leaf_in(VALUES)).alias(f"__rule.{rule.id}"))
                results[rule.id] = pl.col(f"__rule.{rule.id}")
            if rule.kind == "referral" or compiler.defaultable(_reads(rule)):
                exprs.append(compiler.condition(rule.when, leaf_in(UNSTATED)).alias(f"__unstated.{rule.id}"))
                unstated[rule.id] = pl.col(f"__unstated.{rule.id}")
            else:
                unstated[rule.id] = results[rule.id]
        outcomes = self._outcomes(programs, compiler, unknown, results, unstated, leaf_in(UNSTATED), plan.masks)
        # Over the distinct combinations: the signals (all of them, those the lists asked for
        # too), the values of the coded facts, the rules, then the outcomes and the rest.
        plan.stages = [
            unpack(fixed_part, "__fixed") + unpack(dated_part, "__dated"),
            self._decoded(coded),
            exprs,
            *outcomes,
        ]
        plan.source, plan.key_refused = self._source_columns(compiler)
        plan.classes = pl.Series(compiler.classes(), dtype=pl.UInt32())
        return plan

    def _coded(self, rules: list[Rule], compiler: Compiler) -> dict[str, list[Any]]:
        """The facts held in the signature by value (an index among their values), their
        comparisons made once per distinct combination: enums and Booleans a row states that are
        only ever tested for equality with literals (another value tests as unequal to each)."""
        policy = self.policy
        read = {n for r in rules for n in _reads(r)}
        found = {
            n: list(f.values or {}) if f.type == "enum" else [True, False]
            for n, f in policy.facts.items()
            if f.type in ("enum", "boolean") and n in read and n in compiler.row_facts and n not in compiler.key_facts
        }
        for rule in rules:
            for formula in (rule.amount, rule.multiply):
                for ref in operand_refs(formula) if formula is not None else ():
                    found.pop(ref.name, None)
            for leaf in leaves(rule.when):
                refs = [] if isinstance(leaf.rhs, tuple) else list(operand_refs(leaf.rhs))
                for ref in refs:
                    found.pop(ref.name, None)
                if refs or leaf.op not in ("eq", "ne", "in"):
                    found.pop(leaf.fact, None)
        return found

    def _decoded(self, coded: dict[str, list[Any]]) -> list[pl.Expr]:
        """The coded facts' values again, where the comparisons read them (another value: OTHER)."""
        exprs = []
        for fact, values in coded.items():
            dtype = DTYPES[self.policy.facts[fact].type]
            code = pl.col(f"__code.{fact}")
            value: Any = pl.when(code == 0).then(pl.lit(None, dtype))  # a when-then chain
            for i, v in enumerate(values, start=1):
                value = value.when(code == i).then(pl.lit(v, dtype))
            other = pl.lit(OTHER if dtype == pl.String() else None, dtype)
            exprs.append(value.otherwise(other).alias(fact_column(fact)))
        return exprs

    @staticmethod
    def _one_word(fixed: Fixed, plan: Plan) -> bool:
        """Whether a row's combination (its fixed part and region code, its dated part) is one word."""
        dated_bits = sum(signal.bits for signal in plan.dated_part.values())
        return dated_bits <= WORD_BITS and dated_bits + len(fixed.bases).bit_length() <= 63

    def _signatures(
        self,
        frame: pl.DataFrame,
        layers: Layers,
        fixed: Fixed,
        plan: Plan,
        mapping: pl.Series,
        numbering: Numbering,
    ) -> tuple[pl.DataFrame, pl.Series]:
        """The (key class, fixed part, dated part) of the rows first seen in the batch on this
        date, and each row's number among the batch's (`numbering`; a refused row's too: the
        refusal decides what it shows). The fixed part and the region code (which gives the key:
        `mapping`, each code's, the last for no code) are one dense number per run (`fixed.base`);
        with the dated part packed in one word below it, the distinct values come from Arrow's
        dictionary encoding (one hashing pass), else from a join on all of it."""
        keys, dated, classes = plan.compiler.keys, plan.dated_part, plan.classes
        code_bits = (len(mapping) - 1).bit_length()  # the mapping's last entry stands for no region code
        dated_bits = sum(signal.bits for signal in dated.values())
        words, by_code, moved = None, None, None
        if self._one_word(fixed, plan):
            word = pack(dated, "__dated")[0] if dated else _int(0)
            combined = word.cast(pl.Int64()) + pl.col(BASE).cast(pl.Int64()) * (1 << dated_bits)
            rows = streamed(_with(frame, pl.Series(BASE, fixed.base)), layers, [combined.alias("__combination")])
            words = rows.to_series().to_numpy()
            by_code = classes.gather(mapping).to_list()
            moved = numbering.moved(words, by_code)  # few: the rest keep their number
            # The distinct words (of the rows that moved), by Arrow's dictionary encoding.
            encoded = pc.dictionary_encode(pa.array(words if moved is None else words[moved]))
            combos = encoded.dictionary.to_numpy()
            base = fixed.bases[combos >> dated_bits]
            triples = pl.DataFrame(
                {
                    FIXED_ID: pl.Series(base >> code_bits, dtype=pl.UInt32()),
                    KEY: classes.gather(mapping.gather(pl.Series(base & ((1 << code_bits) - 1)))),
                    "__dated0": pl.Series(combos & ((1 << dated_bits) - 1), dtype=pl.Int64()),
                }
            )
            local = encoded.indices.to_numpy().view(np.uint32)
        else:
            key = pl.col(KEY).fill_null(len(keys)).cast(pl.Int64())
            rows = pl.concat(
                [
                    frame.select(key.alias(KEY)),
                    fixed.ids.to_frame(),
                    streamed(frame, layers, pack(dated, "__dated")).rechunk(),
                ],
                how="horizontal",
            )
            triples = rows.unique().with_row_index("__index")
            local = rows.join(triples, on=rows.columns, how="left", maintain_order="left")["__index"].to_numpy()
            triples = triples.drop("__index").with_columns(
                classes.gather(pl.when(pl.col(KEY) < len(keys)).then(pl.col(KEY)).cast(pl.UInt32())).alias(KEY)
            )
        numbers, small = numbering.number(triples)
        found = numbering.rows(local if numbers is None else numbers[local], moved)
        if words is not None and by_code is not None:
            numbering.last = (words, found, by_code)
        small = small.join(fixed.table, on=FIXED_ID, how="left", maintain_order="left")
        return small, pl.Series(found.copy(), dtype=pl.UInt32())  # its own: refusals are set in it

    def _leaf_name(self, leaf: Cmp, mode: str, compiler: Compiler) -> str:
        """A comparison's column: the same name on every date (one for both modes when it reads
        no fact with a default)."""
        mode = mode if compiler.defaultable(leaf_facts(leaf)) else VALUES
        number = self._leaf_numbers.setdefault(leaf, len(self._leaf_numbers))
        return f"__leaf{number}.{mode}"

    def _outcomes(
        self,
        programs: list[str],
        compiler: Compiler,
        unknown: Unknown,
        results: dict[str, pl.Expr],
        unstated: dict[str, pl.Expr],
        referral_leaf: Callable[[Cmp], pl.Expr],
        masks: Masks,
    ) -> list[list[pl.Expr]]:
        """The stages from the rule results to each combination's outcomes, amounts, interactions
        and the bit masks of its lists (`_output` makes the decision columns of them)."""
        # The outcomes first, as columns: the lists below read them many times, and an outcome's
        # expression inlined in each would cost far more to plan than to run on a few thousand rows.
        first = []
        for pid in programs:
            program = self.policy.programs[pid]
            first += [
                outcome_expr(program, results).alias(f"__outcome.{pid}"),
                outcome_expr(program, unstated).alias(f"__outcome_unstated.{pid}"),
            ]
        exprs = []
        for pid in programs:
            exprs += self._program(self.policy.programs[pid], compiler, unknown, results, unstated, masks)
        exprs += self._referrals(compiler, unknown, referral_leaf, unstated, masks)
        stages = [first, exprs, *self._interactions(programs, results)]
        stages.append([e for pid in programs for e in masks.add(f"__interactions.{pid}", self._interaction_bits(pid))])
        return stages

    def _output(self, small: pl.DataFrame, programs: list[str], masks: Masks) -> pl.DataFrame:
        """Each distinct combination's decision columns (schema.py), from its stages' columns."""
        labels = pl.Series(OUTCOME_NAMES, dtype=pl.String())
        columns: dict[str, pl.Series | pl.Expr] = {}
        for pid in programs:
            outcome = pl.col(f"__outcome.{pid}")
            columns[s.column(pid, s.OUTCOME)] = pl.lit(labels).gather(outcome.cast(pl.UInt32()))
            columns[s.column(pid, s.AMOUNT)] = pl.col(f"__amount.{pid}")
            columns[s.column(pid, s.AMOUNT_BEFORE)] = pl.col(f"__before.{pid}")
            columns[s.column(pid, s.KEPT)] = pl.when(outcome == OUTCOME_CODES[ELIGIBLE]).then(~pl.col(f"__taken.{pid}"))
        listed = {
            s.column(pid, name): f"{prefix}.{pid}"
            for pid in programs
            for name, prefix in (
                (s.INTERACTIONS, "__interactions"),
                (s.MISSING, "__missing"),
                (s.ASSUMPTIONS, "__assumptions"),
            )
        }
        listed[s.REFERRALS] = "__referrals"
        columns.update(zip(listed, masks.lists(small, list(listed.values())), strict=True))
        columns[s.CONDITIONAL_REFERRALS] = self._conditional(small)
        columns[KEY] = pl.col(KEY)
        return small.select([(c if isinstance(c, pl.Expr) else pl.lit(c)).alias(name) for name, c in columns.items()])

    # Refusals ----------------------------------------------------------------------------------

    def _errors(self, run: Run, on: dt.date, local: dict[int, int]) -> tuple[pl.Series, Refused, pl.Series]:
        """Each row's key on the date (KEY: its region on the date, an index into the batch's keys,
        `local` numbering the run's), the rows the service's own checks refuse on the date with
        its words (null where it takes the row), and each region code's key (the last entry: no
        code). A refusal of the key itself (a parameter not in force) is the key's (`_source`)."""
        policy, frame = self.policy, run.frame
        mapping: list[int | None] = []
        for code in run.codes:
            bad: list[tuple[str, str]] = []
            region = resolve_region(code, policy, "person.region_code", bad, on)
            mapping.append(None if region is None else local.setdefault(self.keys.index(region, on), len(local)))
        by_code = pl.Series([*mapping, None], dtype=pl.UInt32())
        # A row suspect on any date, or without a region, goes through the service's checks (each
        # distinct one once). A row whose only fault is a birth date after this one is refused for
        # that alone: the service's words for one such row are every such row's.
        unresolved = tuple(i for i, k in enumerate(mapping) if k is None)
        suspect = pl.col(SUSPECT) | pl.col(CODE).is_null() | pl.col(CODE).is_in(unresolved)
        keyed = frame.select(
            pl.lit(pl.Series(mapping, dtype=pl.UInt32())).gather(pl.col(CODE)).alias(KEY),
            ((pl.col("birth_date") > pl.lit(on)).fill_null(False) & ~suspect).alias("__late"),
        )
        key, late = keyed[KEY], keyed["__late"].arg_true()
        if unresolved not in run.flagged:
            found = frame.select(suspect).to_series().arg_true()
            run.flagged[unresolved] = (found, *distinct_rows(frame.select(list(s.PERSON_SCHEMA))[found]))
        numbers, distinct, index = run.flagged[unresolved]
        refused: Refused = []
        if numbers.len():
            refused.append((numbers, texts(distinct, policy, on).gather(index)))
        if late.len():
            text = refusal(frame.select(list(s.PERSON_SCHEMA)).row(late[0], named=True), policy, on, _today(policy))
            refused.append((late, pl.repeat(text, late.len(), dtype=pl.String(), eager=True)))
        return key, refused, by_code

    # Programs ----------------------------------------------------------------------------------

    def _program(
        self,
        program: Program,
        compiler: Compiler,
        unknown: Unknown,
        results: dict[str, pl.Expr],
        unstated: dict[str, pl.Expr],
        masks: Masks,
    ) -> list[pl.Expr]:
        pid = program.id
        outcome = pl.col(f"__outcome.{pid}")
        eligible = outcome == OUTCOME_CODES[ELIGIBLE]
        exprs = [self._amount(program, compiler, results, eligible)]
        # The facts each unknown rule lacks (decide._explain `absent`), for an undetermined outcome.
        undetermined = outcome == OUTCOME_CODES[UNDETERMINED]
        missing = []
        for rule in program.rules:
            names = list(dict.fromkeys(n for leaf in leaves(rule.when) for n in leaf_facts(leaf)))
            for name in names:
                held = undetermined & results[rule.id].is_null() & unknown.missing(name)
                missing.append((held, f"{rule.id}:{name}"))
        exprs += masks.add(f"__missing.{pid}", missing)
        # The defaults a rule read that decided it (its result differs with them unknown), listed
        # when leaving them unknown changes the program's outcome or routes (decide._decide_program).
        assumed_parts: list[tuple[pl.Expr, str]] = []
        for rule in program.rules:
            defaulted = [f for f in _reads(rule) if f in compiler.defaults and f not in compiler.key_facts]
            if not defaulted:
                continue
            used = _any(unknown.unset(f) for f in defaulted)
            assumed = used & results[rule.id].ne_missing(unstated[rule.id])
            for f in defaulted:
                label = f"{rule.id}:{f}={spelled(self.defaults[f])}"
                assumed_parts.append((assumed & unknown.unset(f), label))
        if assumed_parts:
            changed = (pl.col(f"__outcome_unstated.{pid}") != outcome) | _any(
                _is_true(results[r.id]) != _is_true(unstated[r.id]) for r in program.routes
            )
            assumed_parts = [(held & changed, label) for held, label in assumed_parts]
        exprs += masks.add(f"__assumptions.{pid}", assumed_parts)
        return exprs

    def _amount(self, program: Program, compiler: Compiler, results: dict[str, pl.Expr], eligible: pl.Expr) -> pl.Expr:
        """The highest amount of the routes that hold, times each adjustment that holds, rounded:
        computed exactly in Python for each key, each rank of route amount and each set of
        adjustments, and picked per row by index."""
        routes, adjustments = program.routes, program.adjustments
        keys = compiler.keys
        sets = 1 << len(adjustments)
        width = len(routes) * sets
        table: list[int | None] = []
        ranks: list[list[int | None]] = [[] for _ in routes]
        formulas = [r.amount for r in routes] + [a.multiply for a in adjustments]
        refs = sorted({ref for f in formulas if f is not None for ref in operand_refs(f)}, key=repr)
        rows = []
        for k in keys:
            # Most keys of a date read the same values as a key of an earlier date: computed once.
            read = tuple(k.facts.get(r.name) if isinstance(r, Fact) else k.params.get(r.name) for r in refs)
            memo = self._amounts.get((program.id, read))
            if memo is None:
                memo = self._amounts[(program.id, read)] = self._amount_rows(program, k)
            for i, rank in enumerate(memo[0]):
                ranks[i].append(rank)
            table += memo[1]
            rows.append(memo)
        compiler.key_reads.append(rows)  # the table is picked by key, not through `const`
        best = pl.max_horizontal(
            [pl.when(_is_true(results[r.id])).then(compiler.const(ranks[i], pl.Int64())) for i, r in enumerate(routes)]
        )
        chosen_set = _bits([(results[a.id], j) for j, a in enumerate(adjustments)])
        index = pl.col(KEY).cast(pl.Int64()) * width + best * sets + chosen_set
        amount = pl.lit(pl.Series(table, dtype=pl.Int64())).gather(index)
        return pl.when(eligible).then(amount).otherwise(_int(0)).alias(f"__before.{program.id}")

    @staticmethod
    def _amount_rows(program: Program, k: Key) -> tuple[list[int | None], list[int | None]]:
        """For one key: each route amount's rank among the distinct ones, and the amount of each
        rank and set of adjustments (`_amount`'s table)."""
        routes, adjustments = program.routes, program.adjustments
        amounts = [None if r.amount is None else evaluate_operand(r.amount, k.facts, k.params) for r in routes]
        ordered = sorted({Decimal(a) for a in amounts if a is not None})
        ranks = [None if a is None else ordered.index(Decimal(a)) for a in amounts]
        factors = [None if a.multiply is None else evaluate_operand(a.multiply, k.facts, k.params) for a in adjustments]
        table: list[int | None] = []
        for rank in range(len(routes)):
            for chosen in range(1 << len(adjustments)):
                value: Decimal | None = ordered[rank] if rank < len(ordered) else None
                for j, factor in enumerate(factors):
                    if value is not None and chosen >> j & 1:
                        value = None if factor is None else value * factor
                table.append(None if value is None else ROUNDING[program.rounding](value))
        return ranks, table

    # Interactions ------------------------------------------------------------------------------

    def _interactions(self, programs: list[str], results: dict[str, pl.Expr]) -> list[list[pl.Expr]]:
        """decide.Engine._interactions, in the policy's order, over the programs in force: a stage
        each (each reads the columns the one before it wrote)."""
        policy = self.policy
        code = OUTCOME_CODES[ELIGIBLE]
        stages = [
            [pl.col(f"__before.{p}").alias(f"__amount.{p}") for p in programs]
            + [pl.lit(False).alias(f"__taken.{p}") for p in programs]
            + [pl.lit(0, pl.Int64()).alias(f"__inter.{p}") for p in programs]
        ]

        def out(p: str) -> pl.Expr:
            return pl.col(f"__outcome.{p}")

        def amount(p: str) -> pl.Expr:
            return pl.col(f"__amount.{p}")

        def mark(p: str, applied: pl.Expr, bit: int) -> pl.Expr:
            return (pl.col(f"__inter.{p}") | pl.when(applied).then(_int(1 << bit)).otherwise(_int(0))).alias(
                f"__inter.{p}"
            )

        for bit, ex in enumerate(policy.exclusions):
            if ex.program not in programs or ex.excludes not in programs:
                continue
            applied = (
                (out(ex.program) == code) & _any(_is_true(results[r]) for r in ex.routes) & (out(ex.excludes) == code)
            )
            stages.append(
                [
                    pl.when(applied)
                    .then(pl.lit(OUTCOME_CODES[INELIGIBLE], pl.Int8()))
                    .otherwise(out(ex.excludes))
                    .alias(f"__outcome.{ex.excludes}"),
                    pl.when(applied).then(_int(0)).otherwise(amount(ex.excludes)).alias(f"__amount.{ex.excludes}"),
                    mark(ex.program, applied, bit),
                    mark(ex.excludes, applied, bit),
                ]
            )
        for i, combo in enumerate(policy.combinations):
            bit = len(policy.exclusions) + i
            first, second = combo.programs
            if first not in programs or second not in programs:
                continue
            applied = (out(first) == code) & (out(second) == code)
            exprs = [mark(first, applied, bit), mark(second, applied, bit)]
            if combo.mode == "take_higher":
                first_kept = amount(first) >= amount(second)  # the first listed on a tie
                for p, dropped in ((first, applied & ~first_kept), (second, applied & first_kept)):
                    exprs += [
                        pl.when(dropped).then(_int(0)).otherwise(amount(p)).alias(f"__amount.{p}"),
                        (pl.col(f"__taken.{p}") | dropped).alias(f"__taken.{p}"),
                    ]
            stages.append(exprs)
        return stages

    def _interaction_bits(self, pid: str) -> list[tuple[pl.Expr, str]]:
        return [((pl.col(f"__inter.{pid}") & _int(1 << b)) != 0, name) for b, name in enumerate(self.interactions)]

    # Referrals ---------------------------------------------------------------------------------

    def _referrals(
        self,
        compiler: Compiler,
        unknown: Unknown,
        leaf_column: Callable[[Cmp], pl.Expr],
        unstated: dict[str, pl.Expr],
        masks: Masks,
    ) -> list[pl.Expr]:
        """A referral holds on stated facts alone; it is conditional when only unstated facts stand
        between the person and it (decide.Engine.evaluate)."""
        parts: list[tuple[pl.Expr, str]] = []
        exprs = []
        for i, rule in enumerate(self.policy.referrals):
            names = list(dict.fromkeys(n for leaf in leaves(rule.when) for n in leaf_facts(leaf)))
            bits = {n: 1 << b for b, n in enumerate(names)}
            unset = {n: unknown.unset(n) for n in names}
            open_mask = compiler.open_bits(rule.when, leaf_column, bits, unset).alias(f"__open.{i}")
            exprs.append(open_mask)
            parts.append((_is_true(unstated[rule.id]), rule.id))
        exprs += masks.add("__referrals", parts)
        return exprs

    # Output ------------------------------------------------------------------------------------

    def _source_columns(self, compiler: Compiler) -> tuple[list[pl.Expr], bool]:
        """The columns a combination takes from its key (`_source`), and whether any key is refused."""
        keys = compiler.keys
        city = [
            k.region.code[:4] + "00" if k.region.in_zhejiang and k.region.level != "province" else None for k in keys
        ]
        columns = [
            compiler.const([k.region.code for k in keys], pl.String()).alias(s.REGION),
            compiler.const(city, pl.String()).alias(s.CITY),
            compiler.const([k.region.in_zhejiang for k in keys], pl.Boolean()).alias(s.IN_ZHEJIANG),
            pl.exclude(KEY),
            compiler.const([k.error for k in keys], pl.String()).alias(ERROR),
        ]
        return columns, any(k.error for k in keys)

    def _source(self, small: pl.DataFrame, plan: Plan, said: pl.Series) -> pl.DataFrame:
        """The decision columns of each combination, with its region's (the key is part of it)
        and its key's refusal (ERROR), so that every column of a row but the date and the version
        is one gather; and after them a row for each of the words refusing rows (`said`), all
        null but those words, for a refused row (a gather by an index without nulls is measured
        faster than one with them, and than a scatter of the words into a column of every row)."""
        small = small.select(plan.source)
        if plan.key_refused:  # a key refused: nothing of its combinations is shown
            refused = pl.col(ERROR).is_not_null()
            small = small.with_columns(pl.when(~refused).then(pl.col(c)).alias(c) for c in small.columns if c != ERROR)
        schema = s.decision_schema(self.programs)  # the decision table's types, set here on a few rows
        small = small.cast({c: schema[s.ERROR if c == ERROR else c] for c in small.columns})
        if plan.null_row is None or plan.null_row.schema != small.schema:
            plan.null_row = small.clear(1)
        refusing = plan.null_row[[0] * said.len()].with_columns(said.alias(ERROR))
        return pl.concat([small, refusing]).rechunk()

    def _table(
        self,
        run: Run,
        source: pl.DataFrame | None,
        index: pl.Series | None,
        on: dt.date,
        refused: Refused,
        refusal: str | None,
        before: dict[str, pl.Series] | None = None,
        same: Sequence[str] = (),
    ) -> pl.DataFrame:
        """Each row's decision on the date: its combination's columns (`source` by `index`), or
        null and its refusal (its own, `refused`; its key's; or the date's, `refusal`). The source
        columns `same` are taken as they are from `before`, the table of the date before."""
        height = run.frame.height
        schema = s.decision_schema(self.programs)
        columns: dict[str, pl.Series] = {
            s.AS_OF: pl.repeat(on, height, dtype=pl.Date(), eager=True),
            s.POLICY_VERSION: run.version(self.version),
        }
        if source is None or index is None:
            rows, words, which = run.refusals(refused)
            errors = pl.repeat(refusal, height, dtype=pl.String(), eager=True)
            columns[s.ERROR] = errors.scatter(rows, words.gather(which)) if rows.len() else errors
        else:  # a refused row's index is already its words' row (`_source`)
            named = {c: s.ERROR if c == ERROR else c for c in source.columns}
            if before is not None:
                columns.update({named[c]: before[named[c]] for c in same})
            # The frame's gather, not each column's: one bounds check of the index for all of them
            # (measured a fifth faster than a select of 37 gathers); already in the schema's types.
            changed = [c for c in source.columns if c not in same]
            if changed:
                columns.update({named[c]: column for c, column in source.select(changed)[index].to_dict().items()})
        out = []
        for c, dtype in schema.items():
            part = columns.get(c)  # each in its type already (`_source`)
            out.append(pl.repeat(None, height, dtype=dtype, eager=True).alias(c) if part is None else part.alias(c))
        return pl.DataFrame([*run.carried.get_columns(), *out])

    @staticmethod
    def _unchanged(source: pl.DataFrame, before: pl.Series, after: pl.Series) -> list[str]:
        """The source's columns in which every row has the same value with its combination on the
        date before (`before`) as with its combination now (`after`), found on the distinct pairs
        of the two (of the rows whose combination is another: few, most keep their row,
        `Numbering`), so that a month's table gathers only the columns that change (in the
        bench's population, about half of them from one month end to the next)."""
        height = source.height
        was, now = before.to_numpy(), after.to_numpy()
        moved = np.flatnonzero(was != now)
        was, now = was[moved], now[moved]
        pairs = pc.unique(pa.array(was.astype(np.int64) * height + now)).to_numpy()
        first = source[pl.Series(pairs // height, dtype=pl.UInt32())]
        second = source[pl.Series(pairs % height, dtype=pl.UInt32())]
        return same_columns(first, second)

    def _conditional(self, frame: pl.DataFrame) -> pl.Series:
        """`rule_id:fact,fact` for each referral whose unknown result only unstated facts decide."""
        referrals = self.policy.referrals
        if not referrals:
            return pl.Series([[]] * frame.height, dtype=pl.List(pl.String()))
        opens = frame.select([pl.col(f"__open.{i}") for i in range(len(referrals))])
        combos = opens.unique()
        names = [list(dict.fromkeys(n for leaf in leaves(r.when) for n in leaf_facts(leaf))) for r in referrals]
        lists = []
        for row in combos.iter_rows():
            found = []
            for rule, masked, facts in zip(referrals, row, names, strict=True):
                if masked:
                    chosen = sorted(f for b, f in enumerate(facts) if masked >> b & 1)
                    found.append(f"{rule.id}:{','.join(chosen)}")
            lists.append(sorted(found))
        table = combos.with_columns(pl.Series("__list", lists, dtype=pl.List(pl.String())))
        return opens.join(table, on=opens.columns, how="left", maintain_order="left", nulls_equal=True)["__list"]


def _today(policy: PolicySet) -> dt.date:
    from ...request import today

    return today(policy)
