"""Growth: the policy set grown tenfold with synthetic programs, and memory over many evaluations.

Synthetic programs are copies of the real ones under new program and rule ids (their conditions
read the same facts and parameters), written to a temporary policy directory.
"""

from __future__ import annotations

import gc
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

from service.engine.decide import Engine
from service.policy.loader import load_policies
from service.request import to_case

from .people import people

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def grown_policies(target: Path, factor: int) -> Path:
    shutil.copytree(POLICIES, target)
    for program in sorted((POLICIES / "programs").glob("*.yaml")):
        text = program.read_text()
        for n in range(1, factor):
            copy = re.sub(r"^id: (\w+)$", rf"id: \1_syn{n}", text, flags=re.M)
            copy = re.sub(r"- id: (\w+)\.", rf"- id: \1_syn{n}.", copy)
            (target / "programs" / f"{program.stem}_syn{n}.yaml").write_text(copy)
    return target


def _per_person_us(engine: Engine, cases, programs, seconds: float) -> float:
    for c in cases:
        engine.evaluate(c.facts, c.region, c.on, programs)
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for c in cases:
            engine.evaluate(c.facts, c.region, c.on, programs)
        n += len(cases)
    return (time.process_time() - start) / n * 1e6


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def run(seconds: float = 2.0, factor: int = 10, evaluations: int = 1_000_000) -> list[tuple[str, float]]:
    base_policy = load_policies(POLICIES)
    requests = people(500)
    base = Engine(base_policy)
    cases = [to_case(r, base_policy) for r in requests]
    real = tuple(base_policy.programs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        grown_policy = load_policies(grown_policies(Path(tmp) / "policies", factor))
        grown = Engine(grown_policy)
        us_base = _per_person_us(base, cases, real, seconds)
        us_grown = _per_person_us(grown, cases, real, seconds)
        us_grown_all = _per_person_us(grown, cases, None, seconds)
        rows += [
            (f"rules: {len(base.rules)} -> {len(grown.rules)}", float(len(grown.rules)) / len(base.rules)),
            ("us per person, real policy set", us_base),
            (f"us per person, {factor}x policy set, the four real programs", us_grown),
            ("  ratio (target <= 2)", us_grown / us_base),
            (f"us per person, {factor}x policy set, all {len(grown_policy.programs)} programs", us_grown_all),
            ("  ratio", us_grown_all / us_base),
        ]
        grown.close()
    # Memory over many evaluations of the real set: RSS after a warm-up and at the end.
    gc.collect()
    for c in cases:
        base.evaluate(c.facts, c.region, c.on)
    start_rss, done = rss_kib(), 0
    while done < evaluations:
        for c in cases:
            base.evaluate(c.facts, c.region, c.on)
        done += len(cases)
    gc.collect()
    end_rss = rss_kib()
    rows += [
        ("RSS KiB after warm-up", float(start_rss)),
        (f"RSS KiB after {done} evaluations", float(end_rss)),
        ("  ratio (target <= 1.10)", end_rss / start_rss),
        ("max RSS KiB", float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)),
    ]
    base.close()
    return rows


if __name__ == "__main__":
    for name, value in run(evaluations=50_000):
        print(f"{value:14.2f}  {name}")
