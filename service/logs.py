"""JSON-lines logging. Callers log ids, codes and hashes only, never ID numbers or names.

The audit line of every decision is on the hot path, so `info_line` writes it without the logging
machinery: it encodes the same JSON line as the formatter would, and a writer thread puts the
queued lines on stderr in batches every few milliseconds. The event loop never waits on a write
(a slow log pipe would otherwise stall every call), and a clean exit (`close`) writes every line
queued; only a crash can lose the last few milliseconds of lines.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import queue
import sys
import threading
import time
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

WRITE_INTERVAL = 0.005  # seconds between the writer thread's batches


class LineWriter:
    """Writes whole lines to a handler's stream from a thread of its own, in batches."""

    def __init__(self, handler: logging.StreamHandler[TextIO], interval: float = WRITE_INTERVAL):
        self.handler = handler
        self.interval = interval
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-writer")
        self._thread.start()

    def put(self, line: str) -> None:
        self._lines.put(line)

    def _write_queued(self) -> None:
        lines = []
        try:
            while True:
                lines.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        if lines:
            self.handler.acquire()  # the lock logging's own writes take: lines never interleave
            try:
                self.handler.stream.write("".join(lines))
                self.handler.flush()
            finally:
                self.handler.release()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._write_queued()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._write_queued()


_handler: logging.StreamHandler[TextIO] | None = None  # the one `setup` installed
_writer: LineWriter | None = None


def setup(level: str = "INFO") -> None:
    global _handler, _writer
    close()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "asctime": "time"}
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _handler, _writer = handler, LineWriter(handler)


def close() -> None:
    """Write every queued line; logging goes on through the handlers alone."""
    global _writer
    if _writer is not None:
        _writer.close()
        _writer = None


atexit.register(close)

_second = (0, "")


def _asctime(now: float) -> str:
    """The time as JsonFormatter writes it (logging's default: local time, comma, milliseconds)."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)))
    return f"{_second[1]},{int(now % 1 * 1000):03d}"


def info_line(
    logger: logging.Logger, message: str, fields: dict[str, Any], repeated: tuple[tuple[str, Any], ...] = ()
) -> None:
    """`logger.info(message, extra=fields | dict(repeated))`: the same JSON line, queued for the
    writer thread. `repeated` holds (name, value) pairs that recur from line to line (a method, a
    caller, a version): they are encoded once. Falls back to logging itself whenever logging is
    configured other than by `setup`."""
    if not logger.isEnabledFor(logging.INFO):
        return
    writer = _writer
    handlers = logging.root.handlers
    if writer is None or logger.handlers or not logger.propagate or len(handlers) != 1 or handlers[0] is not _handler:
        logger.info(message, extra={**dict(repeated), **fields})
        return
    line = (
        f'{{"time": "{_asctime(time.time())}", "level": "INFO", "name": {_quoted(logger.name)}, '
        f'"message": {_quoted(message)}{_members(repeated)}'
    )
    writer.put(f"{line}, {_encode(fields)[1:]}\n" if fields else line + "}\n")


_encode = json.JSONEncoder(default=str).encode
_quoted = functools.lru_cache(maxsize=256)(_encode)


@functools.lru_cache(maxsize=1024)
def _members(pairs: tuple[tuple[str, Any], ...]) -> str:
    """`, "name": value, ...` for (name, value) pairs."""
    return "".join(f", {_quoted(name)}: {_encode(value)}" for name, value in pairs)
