"""The mutation run (`make mutate`, policycheck.mutate) on a handful of mutants, and its operators
on a small file. Its full run is outside `make test`: it takes many minutes."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from support import POLICIES, ROOT

from policycheck.mutants import file_mutants, mutants

TINY = """\
facts:
  flag: {type: boolean, default: false}
  kind: {type: enum, values: {a: x, b: y}, default: a}
shared: &rows
  - {from: 2020-01-01, value: 1.5}
again: *rows
when:
  all:
    - {fact: age, lt: 18}
    - {fact: kind, in: [a, b]}
pair: [first, second]
"""


def test_operators_on_a_small_file():
    found = {(m.kind, m.where, m.change) for m in file_mutants(TINY, "tiny.yaml")}
    for expected in [
        ("boolean", "facts/flag/default", "false -> true"),
        ("default", "facts/flag", "drop the default"),
        ("default", "facts/kind/default", "a -> b"),
        ("date", "shared/0/from", "2020-01-01 -> 2019-12-31"),
        ("date", "shared/0/from", "2020-01-01 -> 2020-01-02"),
        ("number", "shared/0/value", "1.5 -> 1.4"),
        ("number", "shared/0/value", "1.5 -> 1.6"),
        ("operator", "when/all/0", "lt -> le"),
        ("number", "when/all/0/lt", "18 -> 17"),
        ("combinator", "when", "all -> any"),
        ("drop-item", "when/all", "drop fact age"),
        ("drop-item", "when/all/1/in", "drop b"),
        ("swap", "pair", "swap first and second"),
    ]:
        assert expected in found
    # The anchored rows are one place in the text: mutated once, not once per alias.
    assert not any(m.where.startswith("again") for m in file_mutants(TINY, "tiny.yaml"))
    assert not any(m.kind == "swap" and "/in" in m.where for m in file_mutants(TINY, "tiny.yaml"))
    for m in file_mutants(TINY, "tiny.yaml"):  # each mutant is valid YAML differing from the original
        assert yaml.safe_load(m.text) != yaml.safe_load(TINY), m.label


def test_a_mutation_run_on_a_handful_of_mutants(tmp_path):
    """The nursing share's file: its values pinned by the cases (killed), its only row or region
    dropped (the loader refuses: no value in force), its 2016-01-01 start a day later (the loader
    refuses: the program starts that day) or a day earlier (killed: a case asserts it is not in the
    receipt of a decision on 2015-12-31)."""
    only = "parameters/disability/nursing_share_fully_dependent.yaml"
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "policycheck.mutate", "--only", only, "--sample", "60", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert sorted(r["label"] for r in results) == sorted(m.label for m in mutants(POLICIES) if only in m.label)
    by_kind: dict[str, set[str]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], set()).add(r["status"])
    assert by_kind["number"] == {"killed"}
    assert by_kind["drop-entry"] == {"loader-killed"}
    dates = {r["label"].rsplit(": ", 1)[1]: r["status"] for r in results if r["kind"] == "date"}
    assert dates == {"2016-01-01 -> 2016-01-02": "loader-killed", "2016-01-01 -> 2015-12-31": "killed"}
    counts = {s: sum(r["status"] == s for r in results) for s in ("killed", "loader-killed", "survived")}
    row = next(line for line in run.stdout.splitlines() if line.startswith(only))
    assert row.split()[1:6] == [str(len(results)), str(counts["killed"]), str(counts["loader-killed"]), "0", "0"]
    assert "score: 6 of 6 mutants that change behaviour killed (100.0%)" in run.stdout
