"""blitd's log lines: human text or one JSON object per line; the line a transfer ends with."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

HUMAN = "%(asctime)s %(name)s %(levelname)s %(message)s"

log = logging.getLogger("blitd")


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, plus the record's `fields`
    (structured facts such as a transfer's counts, so a log shipper need not parse prose)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def setup(fmt: str) -> None:
    """Send every log record of the process to stderr in `fmt` ("human" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(HUMAN))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Warnings and crashes of worker threads would otherwise bypass logging and print prose
    # into a stream a JSON log shipper reads.
    logging.captureWarnings(True)
    threading.excepthook = _thread_crashed


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.error("thread %s crashed", name,
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]


def log_transfer(fields: dict[str, Any]) -> None:
    """The one line a transfer ends with; `fields` also become the JSON line's keys."""
    log.info("transfer %s %s %s from %s: %s, %s files, %s bytes, %s failed, carrier %s, %.3f s",
             fields["id"], fields["direction"], fields["module"], fields["client"] or "?",
             fields["outcome"], fields["files"], fields["bytes"], fields["failed"],
             fields["carrier"], fields["duration_s"], extra={"fields": fields})
