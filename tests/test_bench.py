"""The benchmark stays runnable: every section, briefly, end to end (no timing is asserted here;
the numbers come from `make bench` on a quiet machine)."""

from __future__ import annotations

import re
import subprocess
import sys

from support import ROOT


def test_every_benchmark_section_runs_and_prints_its_ratios():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--seconds",
            "0.2",
            "--load-seconds",
            "1",
            "--rounds",
            "1",
            "--evaluations",
            "3000",
            "--persons",
            "20000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for ratio in (
        "Evaluate / no-op",
        "cache hit / no-op",
        "two workers / one",
        "batch people/s / unary",
        "p99 / p50 at half load",
    ):
        assert re.search(rf"^{re.escape(ratio)}:\s+\d+\.\d\d  \(target", text, re.M), (ratio, text)
    assert re.search(r"\d+\.\d\dx  ratio: hit \(Redis\) / miss", text), text
    assert len(re.findall(r"^\s+\d+\.\d\d\s+ratio \(target <= ", text, re.M)) == 2, text  # growth, memory
    assert re.search(r"^\s+0\s+\(eligible decisions where plain Python disagrees", text, re.M), text
    assert re.search(r"^\s+\d[\d,]*x  columnar / online \(target >= 1000x\)", text, re.M), text
    assert re.search(r"^\s+0  differential: rows that differ \(must be 0\)", text, re.M), text
    assert re.search(r"^peak RSS 10x persons / 1x:\s+\d+\.\d\d  \(target <= 1\.5\)", text, re.M), text
    assert re.search(r"^LocalCluster 2 workers / one process, time:\s+\d+\.\d\d", text, re.M), text
