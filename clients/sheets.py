"""Reading the files offices keep: CSV as Excel saves it (UTF-8 with or without BOM, or GB18030 on
Chinese Windows) and .xlsx workbooks, headed by Chinese or English column names.

A heading the client does not know is the office's own column (names, case numbers): it is kept and
copied to the output unchanged. Two headings for the same field are an error naming both.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clients.facts import KEYS, REF, REQUIRED, build_request, column_key, key_label
from clients.texts import ClientError, bad_input
from service.api import eligibility_pb2 as pb

XLSX = (".xlsx", ".xlsm")
# Tried in order when --encoding is not given: UTF-8 first (it fails loudly on GBK bytes), then the
# superset of GBK that Excel on Chinese Windows writes.
ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass
class Row:
    line: int  # the line (CSV) or row (xlsx) number a caseworker sees
    cells: list[object]  # every cell as read, the office's own columns included
    request: pb.EvaluateRequest | None = None
    ref: str = ""
    error: ClientError | None = None


@dataclass
class Sheet:
    header: list[str]
    keys: list[str | None]  # per column: the field it holds, or None for the office's own column
    rows: Iterator[Row] = field(repr=False)


def _decode(path: Path, data: bytes, encoding: str | None) -> str:
    for name in (encoding,) if encoding else ENCODINGS:
        try:
            return data.decode(name)
        except UnicodeDecodeError:
            continue
        except LookupError:
            raise bad_input("unreadable", path=path, detail=f"--encoding {encoding}") from None
    raise bad_input("encoding", path=path)


def _records_csv(path: Path, encoding: str | None) -> Iterator[tuple[int, list[object]]]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise bad_input("unreadable", path=path, detail=error.strerror) from None
    reader = csv.reader(io.StringIO(_decode(path, data, encoding), newline=""))
    try:
        for record in reader:
            yield reader.line_num, list(record)
    except csv.Error as error:
        raise bad_input("unreadable", path=path, detail=str(error)) from None


def _records_xlsx(path: Path) -> Iterator[tuple[int, list[object]]]:
    import openpyxl  # only when a workbook is read: it takes a while to import
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, KeyError, ValueError) as error:
        raise bad_input(
            "unreadable", path=path, detail=getattr(error, "strerror", None) or type(error).__name__
        ) from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, ["" if value is None else value for value in values]
    finally:
        workbook.close()


def _resolve_header(header: Sequence[object]) -> list[str | None]:
    keys: list[str | None] = []
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        key = column_key(name)
        if key is not None and key in seen:
            first = seen[key]
            raise bad_input(
                "duplicate_column", first=first + 1, a=header[first], second=position + 1, b=header[position]
            )
        if key is not None:
            seen[key] = position
        keys.append(key)
    if not seen:
        raise bad_input("no_header")
    missing = [key for key in REQUIRED if key not in seen]
    if missing:
        unknown = [str(name) for name, key in zip(header, keys, strict=True) if key is None and str(name).strip()]
        close = [
            name
            for name in unknown
            if difflib.get_close_matches(name.lower(), [*KEYS, *(key_label(k, "zh") for k in missing)], cutoff=0.75)
        ]
        hint = ", ".join(close)
        raise bad_input(
            "missing_columns",
            columns=", ".join(f"{key_label(k, 'zh')} ({k})" for k in missing),
            hint=f"（{hint}？）" if hint else "",
        )
    return keys


def _blank_row(cells: Sequence[object]) -> bool:
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells)


def open_sheet(path: Path, encoding: str | None = None, as_of: str = "") -> Sheet:
    """The header, resolved now (so that a bad header fails before anything is sent or written), and
    the rows as an iterator, each parsed into a request or the error that stops it."""
    records = _records_xlsx(path) if path.suffix.lower() in XLSX else _records_csv(path, encoding)
    first = next((r for _, r in records if not _blank_row(r)), [])
    if not first:
        raise bad_input("no_header")
    header = [str(name).strip() for name in first]
    keys = _resolve_header(header)
    xlsx = path.suffix.lower() in XLSX

    def rows() -> Iterator[Row]:
        for line, cells in records:
            if _blank_row(cells):  # Excel leaves empty lines at the end of a sheet
                continue
            if xlsx:  # a workbook row ends at its last filled cell; the rest are empty cells, not missing
                cells = cells + [""] * (len(header) - len(cells))
            row = Row(line, cells)
            facts = {key: cells[i] for i, key in enumerate(keys) if key is not None and i < len(cells)}
            row.ref = str(facts.pop(REF, "") or "").strip()
            try:
                if len(cells) < len(header):
                    raise bad_input("short_row", got=len(cells), want=len(header))
                if len(cells) > len(header) and not _blank_row(cells[len(header) :]):
                    raise bad_input("extra_values", got=len(cells), want=len(header))
                row.request = build_request(facts, as_of)
            except ClientError as error:
                row.error = error
            yield row

    return Sheet(header, keys, rows())


def load_person_file(path: Path) -> dict[str, object]:
    """A YAML or JSON file of 'field: value' for one person (check --file)."""
    import json

    import yaml

    try:
        text = _decode(path, path.read_bytes(), None)
    except OSError as error:
        raise bad_input("unreadable", path=path, detail=error.strerror) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise bad_input("syntax", path=path, line=error.lineno) from None
    except yaml.YAMLError as error:
        # Only the position: yaml's own message quotes the offending line, which may hold an ID number.
        mark = getattr(error, "problem_mark", None)
        raise bad_input("syntax", path=path, line=mark.line + 1 if mark else "?") from None
    if not isinstance(data, dict):
        raise bad_input("not_mapping", path=path)
    return data
