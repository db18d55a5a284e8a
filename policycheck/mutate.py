"""`make mutate`: how strong the policy cases are.

Each mutant is a copy of policies/ with one small change (policycheck.mutants). The policy cases
(policies/tests/*.yaml) run against it in-process, through the same decision core the gRPC layer
calls (policycheck.cases). A mutant is
  killed          some case fails;
  loader-killed   the policy set refuses to load (the loader's checks caught it);
  timed out       it ran longer than --timeout (counted as killed, reported apart);
  equivalent      every case passes and the decisions equal the original's for every one of a
                  generated sample of people, dates and regions (policycheck.sample): it changes
                  nothing observable, as far as the sample can see;
  survived        every case passes, yet some generated person is decided differently.
The score is killed (with loader-killed and timed out) over all mutants but the equivalent ones.

    .venv/bin/python -m policycheck.mutate [--seconds 3600] [--timeout 300] [--sample 1000]
        [--only TEXT ...] [--json report.json]

Mutants run one at a time in a worker process; one that runs past --timeout is stopped by killing
the worker, which is then restarted. When --seconds runs out the rest are reported as not run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .mutants import Mutant, mutants

ROOT = Path(__file__).resolve().parent.parent
STATUSES = ("killed", "loader-killed", "timed out", "survived", "equivalent")
KILLED = ("killed", "loader-killed", "timed out")


@dataclass(frozen=True)
class Result:
    mutant: Mutant
    status: str
    detail: str  # the first case that failed, the loader's message, or the first person decided otherwise


def _worker(conn: Connection, policies: Path, sample_size: int) -> None:
    """Runs mutants sent over `conn` against a private copy of the policies and sends back results."""
    work = Path(tempfile.mkdtemp(prefix="policy-mutant-"))
    try:
        judge = Judge(policies, work / "policies", sample_size)
        conn.send("ready")
        while (item := conn.recv()) is not None:
            conn.send(judge(Mutant(**item)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Judge:
    """Decides one mutant's status on a private copy of the policies (in the worker process)."""

    def __init__(self, policies: Path, copy: Path, sample_size: int):
        # Imported here, in the worker: the parent process never loads the engine.
        from service.cache import LocalCache
        from service.decisions import DecisionService, PolicyHolder

        from . import cases, sample

        self.cases, self.check, self.canonical = cases.load_cases(policies / "tests"), cases.check, sample.canonical
        self.copy = copy
        shutil.copytree(policies, copy)
        self.service_for = lambda: DecisionService(PolicyHolder(copy), LocalCache(ttl=0), b"mutation")
        original = self.service_for()
        self.people = sample.People(copy, original, sample_size) if sample_size else None
        self.expected = [self.canonical(original, r) for r in self.people or ()]
        self.original = original.holder.engine.policy
        original.holder.engine.close()

    def __call__(self, mutant: Mutant) -> tuple[str, str]:
        target = self.copy / mutant.file
        before = target.read_text(encoding="utf-8")
        target.write_text(mutant.text, encoding="utf-8")
        try:
            return self._judge()
        finally:
            target.write_text(before, encoding="utf-8")

    def _judge(self) -> tuple[str, str]:
        try:
            service = self.service_for()
        except Exception as exc:  # the loader's refusal is what it is for
            return "loader-killed", (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        try:
            for case in self.cases:
                problems = self.check(service, case)
                if problems:
                    return "killed", f"{case.name}: {problems[0]}"[:300]
            if self.people is None:
                return "survived", "no sample taken (--sample 0)"
            if _same_policy(self.original, service.holder.engine.policy, self.people):
                return "equivalent", "same rules, and the same parameter values on every sampled date and region"
            for i, (request, want) in enumerate(zip(self.people, self.expected, strict=True)):
                if self.canonical(service, request) != want:
                    where = f"{request.as_of}, {request.person.region_code}"
                    return "survived", f"generated person {i} ({where}) decided otherwise"
            return "equivalent", f"same decisions for all {len(self.expected)} generated people"
        finally:
            service.holder.engine.close()


def _same_policy(original: Any, mutant: Any, people: Any) -> bool:
    """A quick proof of equivalence before the sample: the mutant loads to the same rules, facts,
    interactions and period, resolves every sampled region alike, and reads the same parameter
    values (and where they were found) on every sampled date. A date moved outside the period,
    for instance, changes nothing. Anything this cannot compare leaves the question to the sample."""
    try:
        same = (
            mutant.rules == original.rules
            and mutant.facts == original.facts
            and mutant.exclusions == original.exclusions
            and mutant.combinations == original.combinations
            and mutant.manifest == original.manifest
        )
        if not same:
            return False
        for code in people.codes:
            region = original.regions.resolve(code)
            if mutant.regions.resolve(code) != region:
                return False
            for on in people.decided:
                a, b = original.resolve_parameters(region, on), mutant.resolve_parameters(region, on)
                if {k: (v.value, v.region) for k, v in a.items()} != {k: (v.value, v.region) for k, v in b.items()}:
                    return False
        return True
    except Exception:  # e.g. a region the mutant cannot resolve: not provably the same
        return False


class Runner:
    """A worker process and the per-mutant timeout around it."""

    def __init__(self, policies: Path, sample_size: int, start_timeout: float):
        self.policies, self.sample_size, self.start_timeout = policies, sample_size, start_timeout
        self.proc: mp.process.BaseProcess | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no durable-rules state from the parent
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.policies, self.sample_size), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(self.start_timeout):
            raise RuntimeError(f"the mutation worker did not start within {self.start_timeout}s")
        self.conn.recv()

    def run(self, mutant: Mutant, timeout: float) -> tuple[str, str]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(asdict(mutant))
        if self.conn.poll(timeout):
            return self.conn.recv()
        self.stop()
        return "timed out", f"no result within {timeout}s"

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)
        self.stop()


def run(
    policies: Path, seconds: float, timeout: float, sample_size: int, only: list[str], log=sys.stderr
) -> tuple[list[Result], list[Mutant]]:
    todo = [m for m in mutants(policies) if not only or any(o in m.label for o in only)]
    results: list[Result] = []
    runner = Runner(policies, sample_size, start_timeout=max(timeout, 300))
    deadline = time.monotonic() + seconds
    try:
        for i, mutant in enumerate(todo):
            if time.monotonic() > deadline:
                return results, todo[i:]
            status, detail = runner.run(mutant, timeout)
            results.append(Result(mutant, status, detail))
            print(f"[{i + 1}/{len(todo)}] {status:13} {mutant.label}", file=log, flush=True)
    finally:
        runner.close()
    return results, []


def score(counts: Counter) -> float | None:
    """Killed (any way) over the mutants that change behaviour: all but the equivalent ones."""
    changing = sum(counts[s] for s in STATUSES if s != "equivalent")
    return None if not changing else sum(counts[s] for s in KILLED) / changing


def report(results: list[Result], not_run: list[Mutant]) -> str:
    by_file: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        by_file[r.mutant.file][r.status] += 1
    total: Counter = sum(by_file.values(), Counter())
    head = ["file", "mutants", "killed", "loader-killed", "timed out", "survived", "equivalent", "score"]
    rows = [head]
    for name, counts in [*sorted(by_file.items()), ("total", total)]:
        s = score(counts)
        rows.append(
            [name, str(sum(counts.values())), *(str(counts[k]) for k in STATUSES), "-" if s is None else f"{s:.0%}"]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    out = ["\n".join(lines)]
    s = score(total)
    if s is not None:
        killed = sum(total[k] for k in KILLED)
        changing = killed + total["survived"]
        out.append(
            f"\nscore: {killed} of {changing} mutants that change behaviour killed ({s:.1%}); "
            f"{total['equivalent']} equivalent; {sum(total.values())} mutants in all"
        )
    for status in ("survived", "equivalent"):
        listed = [r for r in results if r.status == status]
        if listed:
            out.append(f"\n{status} ({len(listed)}):")
            out += [f"  {r.mutant.label}  [{r.detail}]" for r in listed]
    if not_run:
        out.append(f"\nnot run ({len(not_run)}, the --seconds budget ran out):")
        out += [f"  {m.label}" for m in not_run]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policycheck.mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", type=Path, default=ROOT / "policies")
    parser.add_argument("--seconds", type=float, default=3600, help="budget for the whole run (default 3600)")
    parser.add_argument("--timeout", type=float, default=300, help="per mutant, a guard against hangs (default 300)")
    parser.add_argument("--sample", type=int, default=1000, help="generated people for equivalence (default 1000)")
    parser.add_argument("--only", action="append", default=[], help="run only mutants whose label contains this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the worker too (Runner.close)
    results, not_run = run(args.policies.resolve(), args.seconds, args.timeout, args.sample, args.only)
    print(report(results, not_run))
    if args.json:
        data = {
            "results": [
                {
                    "file": r.mutant.file,
                    "line": r.mutant.line,
                    "kind": r.mutant.kind,
                    "label": r.mutant.label,
                    "status": r.status,
                    "detail": r.detail,
                }
                for r in results
            ],
            "not_run": [m.label for m in not_run],
        }
        args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
