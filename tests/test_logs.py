"""The JSON log lines, and the writer thread that takes the audit lines off the event loop."""

from __future__ import annotations

import io
import json
import logging
import re
import threading

import pytest

from service import logs


@pytest.fixture
def stderr(monkeypatch):
    """logs.setup writing to a buffer; logging as it was afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    logs.setup("INFO")
    yield buffer
    logs.close()
    root.handlers[:], root.level = saved


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_queued_line_is_the_line_logging_would_write(stderr):
    fields = {
        "event": "decision",
        "programs": {"p": {"outcome": "eligible", "rules": ["r.1"]}},
        "n": 3,
        "text": '中文 "quoted"',
    }
    logging.getLogger("audit").info("decision", extra={**fields, "method": "Evaluate", "hit": False})
    logs.info_line(logging.getLogger("audit"), "decision", fields, (("method", "Evaluate"), ("hit", False)))
    logs.close()
    by_formatter, by_writer = lines(stderr)
    times = by_formatter.pop("time"), by_writer.pop("time")  # the same format, not the same millisecond
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", t) for t in times)
    assert by_writer == by_formatter


def test_every_line_is_written_whole_when_closed(stderr):
    log = logging.getLogger("audit")

    def write(worker: int) -> None:
        for i in range(500):
            logs.info_line(log, "decision", {"worker": worker, "i": i})
            if i % 100 == 0:
                logging.getLogger("service").warning("ordinary", extra={"worker": worker})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs.close()
    written = lines(stderr)  # every line parses: none interleaved with another
    audit = [(line["worker"], line["i"]) for line in written if line["name"] == "audit"]
    assert sorted(audit) == [(w, i) for w in range(4) for i in range(500)]
    for w in range(4):  # each thread's lines in the order it queued them
        assert [i for worker, i in audit if worker == w] == list(range(500))
    assert sum(line["message"] == "ordinary" for line in written) == 20


def test_lines_below_the_level_are_not_written(stderr):
    logging.getLogger().setLevel("WARNING")
    logs.info_line(logging.getLogger("audit"), "decision", {"x": 1})
    logs.close()
    assert stderr.getvalue() == ""


def test_a_logger_configured_otherwise_gets_the_record(stderr):
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    log = logging.getLogger("audit.elsewhere")
    log.addHandler(handler)
    try:
        logs.info_line(log, "decision", {"x": 1})
    finally:
        log.removeHandler(handler)
    assert records and records[0].__dict__["x"] == 1
