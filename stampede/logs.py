"""Structured JSON logs (structlog). Never one line per request on the hot path.

Every line a process writes to stderr is one JSON object: structlog's own
loggers, the standard library's (`logging.getLogger(...)`, used by the
durable side, asyncio's exception handler and libraries) through the same
processors, and a crash that would print a traceback (`log_crash`). A
repeating error is rate-limited: the same event with the same error is
written at most once per `REPEAT_WINDOW_S`, the next one carrying how many
were suppressed in between.
"""

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

REPEAT_WINDOW_S = 10.0
"""The same event+error is logged at most once in this many seconds."""

_configured = False


class RepeatLimiter:
    """Drops repeats of an error within a window; bounded in memory.

    Only lines that carry an error (an exception, an `error` field, or level
    error and above) are limited: a loop failing 1000 times a second writes
    one line per window, with `suppressed` = how many were dropped before it.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, max_keys: int = 1024) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, event: str, error: str) -> int | None:
        """None: drop this line; else write it, with this many suppressed before it."""
        key = (event, error)
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.window_s:
                self._seen[key] = (last, suppressed + 1)
                return None
            if len(self._seen) >= self.max_keys:  # forget the oldest
                del self._seen[min(self._seen, key=lambda k: self._seen[k][0])]
            self._seen[key] = (now, 0)
        return suppressed

    def __call__(self, _logger: Any, method: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """As a structlog processor."""
        error = _error_of(event_dict.get("exc_info"), event_dict.get("error"),
                          method in ("error", "critical", "exception"))
        if error is not None:
            suppressed = self.admit(str(event_dict.get("event", "")), error)
            if suppressed is None:
                raise structlog.DropEvent
            if suppressed:
                event_dict["suppressed"] = suppressed
        return event_dict

    def filter(self, record: logging.LogRecord) -> bool:
        """As a logging filter (the template, not the formatted message, is the event)."""
        error = _error_of(record.exc_info, getattr(record, "error", None),
                          record.levelno >= logging.ERROR)
        if error is None:
            return True
        suppressed = self.admit(f"{record.name}:{record.msg}", error)
        if suppressed is None:
            return False
        if suppressed:
            record.suppressed = suppressed
        return True


def _error_of(exc_info: Any, error: Any, is_error: bool) -> str | None:
    """What went wrong, as a short key: the exception's type and text, or `error`."""
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else \
        exc_info[1] if isinstance(exc_info, tuple) else None
    if exc is not None:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if error is not None:
        return str(error)[:200]
    return "" if is_error else None


def _suppressed_of(_logger: Any, _method: str,
                   event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord) and hasattr(record, "suppressed"):
        event_dict["suppressed"] = record.suppressed
    return event_dict


def configure(level: str = "INFO", window_s: float = REPEAT_WINDOW_S) -> None:
    """JSON lines on stderr for structlog and the standard library's logging alike."""
    global _configured
    limiter = RepeatLimiter(window_s)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, limiter, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared, _suppressed_of],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()]))
    handler.addFilter(limiter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


def configured() -> bool:
    return _configured


def asyncio_exceptions(_loop: Any, context: dict[str, Any]) -> None:
    """For `loop.set_exception_handler`: a task's unretrieved error as one JSON line."""
    source = context.get("task") or context.get("future") or context.get("handle")
    log.error("asyncio: " + str(context.get("message", "unhandled exception")),
              exc_info=context.get("exception"), source=repr(source)[:200] if source else None)


def relay(stream: IO[bytes], source: str) -> None:
    """Copy a child's stderr into ours: its JSON lines as they are, anything else
    (a child's plain output) wrapped in a JSON line. Runs until the stream ends,
    then closes it (the pipe is ours alone)."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("{") and line.endswith("}"):
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            elif line.strip():
                log.warning("child output", source=source, line=line)


def log_crash(exc: BaseException) -> None:
    """An exception that ends the process, as one JSON line instead of a traceback."""
    log.critical("crashed", exc_info=exc)


log = structlog.get_logger("stampede")
