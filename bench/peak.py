"""A command's peak memory (RSS), measured without the measuring process's own.

Linux carries a process's peak RSS across exec: a child that a large process starts (Python's
subprocess uses vfork) reports the parent's peak as its own when its own is smaller, and so does
wait4. So the command is started by a small process of its own (`python -m bench.peak FILE CMD...`),
which waits for it with wait4 (its reaped children, such as a LocalCluster's workers, included) and
writes the peak to FILE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def measured(cmd: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[Any], float]:
    """Runs `cmd` as subprocess.run(cmd, **kwargs) would; returns its result and its peak RSS in MiB."""
    with tempfile.TemporaryDirectory(prefix="peak-") as tmp:
        report = Path(tmp) / "peak.json"
        done = subprocess.run([sys.executable, "-m", "bench.peak", str(report), *cmd], **kwargs)
        peak = json.loads(report.read_text())["peak_mib"] if report.exists() else float("nan")
    return done, peak


def main() -> None:
    report, cmd = sys.argv[1], sys.argv[2:]
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)
    Path(report).write_text(json.dumps({"peak_mib": usage.ru_maxrss / 1024}))  # KiB on Linux
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
