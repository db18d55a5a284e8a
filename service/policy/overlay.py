"""Policy overlays: a proposed change of parameter values, from a date, on top of a policy set.

An overlay is a YAML file (or a directory of them) that replaces or adds dated values:

    description: {zh: 杭州市区低保标准提高到1150元, en: Hangzhou urban dibao standard to 1,150 yuan}
    changes:
      - parameter: dibao_standard
        regions: ["330102", "330103"]
        values:
          - {from: 2021-01-01, value: 1150, source: reference}

For each named region the base values dated on or after the first new value's date are dropped and
the new ones take over from that date; before it nothing changes. Values are the parameter files'
own DatedValue rows, validated by the same models. A value for a city or the province reaches only
the counties with no value of their own (lookups go county, city, province), so the overlay lists
those counties in `shadowed` for whoever applies it to say so.

A policy directory may carry its overlays in `overlays/` (how a proposed set is written out for any
decider that loads a directory: `materialize`); they are part of its version, as every file is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, ValidationError

from . import model
from .policyset import Parameter, Regions
from .yamlio import PolicyFileError, YamlDoc

OVERLAY_DIR = "overlays"


class Change(model._Strict):
    parameter: str
    regions: list[model.RegionCode] = Field(min_length=1)
    values: list[model.DatedValue] = Field(min_length=1)


class OverlayFile(model._Strict):
    description: model.Text | None = None
    changes: list[Change] = Field(min_length=1)


@dataclass(frozen=True)
class LoadedChange:
    change: Change
    doc: YamlDoc
    index: int

    def where(self, *loc: str | int) -> str:
        return self.doc.where(("changes", self.index, *loc))


@dataclass
class Overlay:
    files: list[Path]
    changes: list[LoadedChange]
    digests: list[str]  # content hash of each file, folded in turn into the policy version
    # (parameter, region, counties): counties under a city or province code that keep their own value
    shadowed: list[tuple[str, str, list[str]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "+".join(p.stem for p in self.files)


def overlay_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.yaml"))
        if not files:
            raise PolicyFileError(f"{path}: an overlay directory with no .yaml file")
        return files
    if not path.is_file():
        raise PolicyFileError(f"{path}: no such overlay file or directory")
    return [path]


def load_overlay(path: str | Path) -> Overlay:
    """Parse and validate an overlay's files on their own (references are checked by `apply`)."""
    files = overlay_files(Path(path))
    digests: list[str] = []
    changes: list[LoadedChange] = []
    for file in files:
        doc = YamlDoc(file)
        try:
            parsed = OverlayFile.model_validate(doc.data)
        except ValidationError as exc:
            problems = [
                f"{doc.where(tuple(e['loc']))}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            ]
            raise PolicyFileError("invalid overlay file:\n  " + "\n  ".join(problems)) from None
        digests.append(file_digest(file))
        changes += [LoadedChange(c, doc, i) for i, c in enumerate(parsed.changes)]
    return Overlay(files, changes, digests)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def overlaid_version(base_version: str, digests: list[str]) -> str:
    """The version of a set with overlays applied in turn: the same whether the overlays are given
    to the loader or written into the directory's overlays/ (file names do not count, content does)."""
    version = base_version
    for digest in digests:
        version = hashlib.sha256(f"{version}\0overlay\0{digest}".encode()).hexdigest()[:16]
    return version


def apply(
    overlay: Overlay, parameters: dict[str, Parameter], regions: Regions, period: model.PolicyPeriod
) -> dict[str, Parameter]:
    """The parameters with the overlay's values in place; any problem names the overlay file and line."""
    problems: list[str] = []
    known = set(regions.all_codes())
    values = {pid: dict(p.file.values) for pid, p in parameters.items()}
    touched: dict[tuple[str, str], str] = {}
    for loaded in overlay.changes:
        change = loaded.change
        if change.parameter not in parameters:
            problems.append(f"{loaded.where('parameter')}: unknown parameter {change.parameter!r} (parameters/)")
            continue
        dates = [v.from_ for v in change.values]
        if dates != sorted(set(dates)):
            problems.append(f"{loaded.where('values')}: dated values must be in order, without repeats")
            continue
        outside = [d for d in dates if not period.effective_from <= d <= period.effective_until]
        if outside:
            problems.append(
                f"{loaded.where('values')}: {outside[0]} is outside the policy period "
                f"{period.effective_from} to {period.effective_until}"
            )
        for i, code in enumerate(change.regions):
            where = loaded.where("regions", i)
            if code not in known:
                problems.append(f"{where}: unknown region {code} (regions.yaml)")
                continue
            key = (change.parameter, code)
            if key in touched:
                problems.append(f"{where}: {change.parameter} for {code} is already changed at {touched[key]}")
                continue
            touched[key] = where
            kept = [r for r in values[change.parameter].get(code, []) if r.from_ < dates[0]]
            values[change.parameter][code] = kept + [_noted(v, loaded.doc.path.stem) for v in change.values]
            below = _own_values_below(code, values[change.parameter], regions)
            if below:
                overlay.shadowed.append((change.parameter, code, below))
    if problems:
        raise PolicyFileError("overlay does not apply:\n  " + "\n  ".join(problems))
    out = dict(parameters)
    for pid in {c.change.parameter for c in overlay.changes}:
        data = parameters[pid].file.model_dump(by_alias=True)
        data["values"] = {code: [r.model_dump(by_alias=True) for r in rows] for code, rows in values[pid].items()}
        try:
            out[pid] = Parameter(pid, model.ParameterFile.model_validate(data))
        except ValidationError as exc:
            files = ", ".join(str(f) for f in overlay.files)
            raise PolicyFileError(f"overlay {files}: parameter {pid} is invalid once overlaid: {exc}") from None
    return out


def _noted(value: model.DatedValue, name: str) -> model.DatedValue:
    """A proposed value says so on every receipt that uses it (a value_note caveat)."""
    if value.note is not None:
        return value
    return value.model_copy(update={"note": model.Text(zh=f"拟议值（{name}）", en=f"proposed value ({name})")})


def _own_values_below(code: str, values: dict[str, list[model.DatedValue]], regions: Regions) -> list[str]:
    """The counties (or cities) under a city or province code that have values of their own."""
    if code == regions.province_code:
        under = [c for c in regions.all_codes() if c != code]
    elif code in regions.cities:
        under = [c for c in regions.divisions if c[:4] == code[:4]]
    else:
        return []
    return sorted(c for c in under if values.get(c))


def materialize(base: Path, overlay: Path, dest: Path) -> Path:
    """A copy of the policy directory `base` with the overlay's files in `dest/overlays/`: a directory
    any decider loads as the proposed set (its version hashes the overlay in, as every file is)."""
    load_overlay(overlay)  # refuse a malformed overlay before copying anything
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("tests"))
    target = dest / OVERLAY_DIR  # a base that is itself a proposal keeps its overlays, applied first
    target.mkdir(exist_ok=True)
    start = len(list(target.glob("*.yaml")))
    for i, file in enumerate(overlay_files(overlay), start):
        shutil.copyfile(file, target / f"{i:03d}-{file.name}")
    return dest


def describe(overlay: Overlay) -> list[str]:
    """One line per change, for reports: parameter, regions, from when, to what."""
    lines = []
    for loaded in overlay.changes:
        c = loaded.change
        values = ", ".join(f"{v.value} from {v.from_}" for v in c.values)
        lines.append(f"{c.parameter} in {', '.join(c.regions)}: {values}")
    for pid, code, below in overlay.shadowed:
        lines.append(f"note: {pid} for {code} does not reach {', '.join(below)}, which have values of their own")
    return lines


def first_date(overlay: Overlay) -> dt.date:
    return min(v.from_ for c in overlay.changes for v in c.change.values)
