"""How long `subsidy-caseworker batch` takes for a file of N people against a local service.

    python -m bench.client_batch [--rows 30000] [--workers 1] [--rounds 1] [--keep DIR]

Writes a CSV of N varied people (bench.people, the same mix as the service benchmarks, with the
client's column names), starts the service on a free port, runs the client as a caseworker would
(a subprocess, output to a new file) and prints rows per second. The client's time includes its
start-up, reading the file and writing the output: that is what an office waits for.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from service.api import eligibility_pb2 as pb

from .grpc_bench import ROOT, service, tree_cpu_seconds
from .local import free_port
from .people import people

COLUMNS = [
    "ref",
    "id_number",
    "birth_date",
    "region_code",
    "household_status",
    "household_income_per_head_yuan",
    "own_income_yuan",
    "disability_grade",
    "disability_category",
    "long_term_care_need",
    "self_care",
    "capacity_level",
    "capacity_assessed_on",
    "child_status",
    "serious_illness",
    "as_of",
]


def _enum(enum_type, number: int) -> str:
    if not number:
        return ""
    prefix = enum_type.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    return enum_type.Name(number).removeprefix(prefix).lower()


def _yuan(person: pb.Person, field: str) -> str:
    return str(Decimal(getattr(person, field)).scaleb(-2)) if person.HasField(field) else ""


def _bool(person: pb.Person, field: str) -> str:
    return ("yes" if getattr(person, field) else "no") if person.HasField(field) else ""


def row(i: int, request: pb.EvaluateRequest) -> dict[str, str]:
    p = request.person
    has_disability = p.HasField("disability")
    has_capacity = p.HasField("capacity_assessment")
    return {
        "ref": f"case-{i:05d}",
        "id_number": p.id_number,
        "birth_date": p.birth_date,
        "region_code": p.region_code,
        "household_status": _enum(pb.HouseholdStatus, p.household_status),
        "household_income_per_head_yuan": _yuan(p, "household_income_per_head_fen"),
        "own_income_yuan": _yuan(p, "own_income_fen"),
        "disability_grade": str(p.disability.grade) if has_disability else "",
        "disability_category": _enum(pb.DisabilityCategory, p.disability.category) if has_disability else "",
        "long_term_care_need": _bool(p, "long_term_care_need"),
        "self_care": _enum(pb.SelfCare, p.self_care),
        "capacity_level": _enum(pb.CapacityLevel, p.capacity_assessment.level) if has_capacity else "",
        "capacity_assessed_on": p.capacity_assessment.assessed_on if has_capacity else "",
        "child_status": _enum(pb.ChildStatus, p.child_status),
        "serious_illness": _bool(p, "serious_illness"),
        "as_of": request.as_of,
    }


def write_people(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(row(i, r) for i, r in enumerate(people(n)))


@dataclass
class Run:
    seconds: float  # wall clock, what the office waits
    client_cpu: float  # CPU seconds of the client process
    service_cpu: float  # CPU seconds of the service's processes meanwhile


def run_client(address: str, source: Path, target: Path, root: Path, service_pid: int) -> Run:
    """One run; CPU seconds too, since on a shared machine the wall clock says as much about the
    neighbours as about the client."""
    target.unlink(missing_ok=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    service_before = tree_cpu_seconds(service_pid)
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.caseworker",
            "batch",
            "--address",
            address,
            "-i",
            str(source),
            "-o",
            str(target),
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1, 5):  # decided, with some row errors, or some undetermined
        raise RuntimeError(f"client failed ({result.returncode}): {result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return Run(elapsed, client_cpu, tree_cpu_seconds(service_pid) - service_before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--rounds", type=int, default=1, help="runs of the client; the median is shown")
    parser.add_argument("--keep", type=Path, help="directory to keep the input and output files in")
    parser.add_argument(
        "--client-root",
        type=Path,
        default=ROOT,
        help="checkout to run the client from, e.g. an older commit unpacked with `git archive` (for before/after)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        source, target = directory / "people.csv", directory / "results.csv"
        write_people(source, args.rows)
        port = free_port()
        # The decision cache off: every row is decided, as on a first run over a new file.
        with service(port, "--workers", str(args.workers), "--cache-ttl", "0") as proc:
            runs = [
                run_client(f"127.0.0.1:{port}", source, target, args.client_root, proc.pid) for _ in range(args.rounds)
            ]
    median = sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]
    print(
        f"{args.rows} rows: {median.seconds:.1f} s, {args.rows / median.seconds:,.0f} rows/s; CPU: client "
        f"{median.client_cpu:.1f} s, service {median.service_cpu:.1f} s; load average {os.getloadavg()[0]:.1f} "
        f"(client batch, median of {len(runs)})"
    )


if __name__ == "__main__":
    main()
