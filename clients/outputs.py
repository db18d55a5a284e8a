"""Batch output: one result row per input row, written so that no file is ever lost.

- The input is never the output; an existing output is replaced only with --force.
- Rows go to a temporary file beside the output, renamed into place at the end: a failure leaves
  nothing behind, and a reader never sees half a file under the output's name.
- When the service stops mid-batch, the rows decided so far are kept as `<name>.incomplete<ext>`,
  and `--resume` continues from the row after the last decided one, ending with the same file an
  uninterrupted run writes.

Columns: the line number, the office's own columns as they were (its reference, names, case
numbers; never the facts such as the ID number), then status, error, evaluation date, policy
version, and per program the outcome, the amount, the deciding reason and the missing facts.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from clients import explain
from clients.calls import batch_error_text
from clients.facts import fen_to_yuan
from clients.sheets import XLSX, Row, Sheet
from clients.texts import TEXT, ClientError, ExitCode, bad_input
from service.api import eligibility_pb2 as pb

SUFFIXES = (".csv", ".xlsx")


def new_temp(target: Path) -> Path:
    """An empty file beside `target` to write into and rename over it, with the permissions a new file
    gets (mkstemp's are owner-only)."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def incomplete_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.incomplete{output.suffix}")


def check_paths(source: Path, output: Path, force: bool, resume: bool) -> None:
    """Refuse, before anything is read or written, what would destroy a file."""
    if output.suffix.lower() not in SUFFIXES:
        raise bad_input("output_type", suffix=output.suffix or "''", choices=", ".join(SUFFIXES))
    if not output.parent.is_dir():
        raise bad_input("no_directory", path=output.parent)
    if output.exists() and (output.resolve() == source.resolve() or os.path.samefile(output, source)):
        raise bad_input("same_file", path=output)
    if output.exists() and not force:
        raise bad_input("exists", path=output)
    if resume and not incomplete_path(output).is_file():
        raise bad_input("nothing_to_resume", path=incomplete_path(output))


@dataclass
class Layout:
    """Which columns the output has, and how a decided or failed row fills them."""

    programs: list[pb.ProgramInfo]
    kept: list[int]  # input columns copied as they are
    header: list[str]
    lang: str

    @classmethod
    def of(cls, sheet: Sheet, programs: list[pb.ProgramInfo], lang: str) -> Layout:
        t = TEXT[lang]
        kept = [i for i, key in enumerate(sheet.keys) if key is None or key == "ref"]
        header = [t["col_line"], *(sheet.header[i] for i in kept)]
        header += [t["col_status"], t["col_error"], t["col_date"], t["col_version"]]
        for p in programs:
            name = explain.in_lang(p, "name", lang) if lang == "zh" else p.program_id
            header += [t[f"col_{part}"].format(program=name) for part in ("outcome", "amount", "reason", "missing")]
        header.append(t["col_total"])
        return cls(programs, kept, header, lang)

    def cells(self, row: Row, answer: pb.EvaluateBatchResponse | None) -> list[str]:
        t, lang = TEXT[self.lang], self.lang
        out = [str(row.line), *(_text(row.cells[i]) if i < len(row.cells) else "" for i in self.kept)]
        if row.error is not None or answer is None or answer.HasField("error"):
            problem = row.error.text(lang) if row.error is not None else batch_error_text(answer.error, lang)  # type: ignore[union-attr]
            return out + [t["status_error"], problem] + [""] * (len(self.header) - len(out) - 2)
        reply = answer.response
        names = explain.names_of(reply, lang)
        decided = {d.program_id: d for d in reply.decisions}
        out += [t["status_ok"], "", reply.evaluation_date, reply.policy_version]
        joiner = "；" if lang == "zh" else "; "
        for p in self.programs:
            d = decided.get(p.program_id)
            if d is None:
                out += ["", "", "", ""]
                continue
            missing = joiner.join(explain.missing_label(m, lang) for m in d.missing_facts)
            out += [
                explain.outcome_text(d, lang),
                fen_to_yuan(d.monthly_amount.fen),
                joiner.join(explain.deciding_reasons(d, lang, names)),
                missing,
            ]
        out.append(fen_to_yuan(reply.total_monthly_amount.fen))
        return out


def _text(value: object) -> str:
    return "" if value is None else str(value)


@functools.cache
def _outcome_words(lang: str) -> dict[str, int]:
    """Outcome as written in the output -> Outcome number."""
    t = TEXT[lang]
    words = {t[explain.outcome_key(v.number)]: v.number for v in pb.Outcome.DESCRIPTOR.values if v.number}
    words[t["not_paid"]] = pb.OUTCOME_ELIGIBLE
    return words


@dataclass
class Tally:
    """Per program: people by outcome and the amount paid, counted from the output cells (so that rows
    carried over by --resume count the same as rows decided now)."""

    rows: int = 0
    errors: int = 0
    undetermined: int = 0

    def __post_init__(self) -> None:
        self.people: dict[str, Counter] = defaultdict(Counter)
        self.paid: Counter = Counter()

    def add(self, layout: Layout, cells: list[str]) -> None:
        t = TEXT[layout.lang]
        outcomes = _outcome_words(layout.lang)
        self.rows += 1
        status = cells[1 + len(layout.kept)]
        if status != t["status_ok"]:
            self.errors += 1
            return
        first = 1 + len(layout.kept) + 4
        row_undetermined = False
        for n, p in enumerate(layout.programs):
            outcome_cell, amount_cell = cells[first + 4 * n], cells[first + 4 * n + 1]
            if outcome_cell in outcomes:
                self.people[p.program_id][outcomes[outcome_cell]] += 1
                row_undetermined |= outcomes[outcome_cell] == pb.OUTCOME_UNDETERMINED
            with contextlib.suppress(InvalidOperation):  # an error row has no amounts
                self.paid[p.program_id] += int(Decimal(amount_cell or "0") * 100)
        self.undetermined += row_undetermined


class _CsvFile:
    def __init__(self, path: Path) -> None:
        # utf-8-sig: Excel on Windows reads the Chinese right only with a BOM.
        self.handle = path.open("w", newline="", encoding="utf-8-sig")
        self.writer = csv.writer(self.handle)

    def write(self, cells: list[str]) -> None:
        self.writer.writerow(cells)

    def close(self) -> None:
        self.handle.close()


class _XlsxFile:
    def __init__(self, path: Path) -> None:
        import openpyxl

        self.path = path
        self.book = openpyxl.Workbook(write_only=True)
        self.sheet = self.book.create_sheet()

    def write(self, cells: list[str]) -> None:
        self.sheet.append(cells)

    def close(self) -> None:
        self.book.save(self.path)


def read_back(path: Path) -> list[list[str]]:
    """The rows of an output file this module wrote (the header first)."""
    try:
        if path.suffix.lower() in XLSX:
            import openpyxl

            book = openpyxl.load_workbook(path, read_only=True)
            try:
                return [[_text(v) for v in row] for row in book.worksheets[0].iter_rows(values_only=True)]
            finally:
                book.close()
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.reader(handle))
    except (OSError, ValueError, KeyError, csv.Error) as error:
        raise bad_input(
            "unreadable", path=path, detail=getattr(error, "strerror", None) or type(error).__name__
        ) from None


class Output:
    """A new output file written under a temporary name and put in place only when complete."""

    def __init__(self, target: Path, layout: Layout) -> None:
        self.target, self.layout = target, layout
        self.temp = new_temp(target)
        self.file = _XlsxFile(self.temp) if target.suffix.lower() in XLSX else _CsvFile(self.temp)
        self.tally = Tally()
        self.file.write(layout.header)

    def write(self, cells: list[str]) -> None:
        self.file.write(cells)
        self.tally.add(self.layout, cells)

    def finish(self, path: Path) -> None:
        self.file.close()
        os.replace(self.temp, path)

    def discard(self) -> None:
        try:
            self.file.close()
        finally:
            self.temp.unlink(missing_ok=True)


def resumed_rows(output: Path, layout: Layout, rows: Iterator[Row]) -> tuple[list[list[str]], Iterator[Row]]:
    """The rows an interrupted run decided, checked against the input, and the input rows after them."""
    path = incomplete_path(output)
    done = read_back(path)
    if not done or done[0] != layout.header:
        raise bad_input("resume_mismatch", path=path, line=1)
    done = done[1:]
    for cells in done:
        row = next(rows, None)
        if row is None or not cells or cells[0] != str(row.line):
            raise bad_input("resume_mismatch", path=path, line=cells[0] if cells else "?")
    return done, rows


def exit_code(tally: Tally) -> ExitCode:
    if tally.errors:
        return ExitCode.ROW_ERRORS
    return ExitCode.UNDETERMINED if tally.undetermined else ExitCode.OK


class InterruptedBatch(ClientError):
    def __init__(self, done: int, path: Path) -> None:
        super().__init__(ExitCode.INCOMPLETE, "interrupted", done=done, path=path)
