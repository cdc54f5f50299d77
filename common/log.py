"""Structured logging: one event per line on stderr, JSON for machines, key=value for people.

`configure_logging()` is called once by each entry point; `set_level()` changes the level
later (bgpd follows BGPConfiguration logSeverityScreen). Modules hold a logger from
`get_logger(__name__)` and log events as short dotted names with fields:
`log.info("session.established", peer="10.0.0.2", hold_time=90)`. Records from the standard
`logging` module (asyncio, pyroute2) are rendered the same way, so stderr stays one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from common.hidden import hidden

# structlog needs colorama for colours on Windows only (elsewhere it writes the same ANSI
# codes itself); importing it anyway loads ctypes and libffi, half a megabyte per process.
with hidden(*(() if sys.platform == "win32" else ("colorama",))):
    import structlog
from structlog.typing import FilteringBoundLogger, Processor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _StderrLogger:
    """Writes each rendered event as one line to whatever `sys.stderr` is at that moment, so
    a replaced stderr (a test's capture, a reopened file) is followed, never a closed one."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = err = critical = fatal = exception = log = msg


_LOGGERS: dict[str, _StderrLogger] = {}


def _logger_factory(*args: Any) -> _StderrLogger:
    name = str(args[0]) if args else "bgpd"
    logger = _LOGGERS.get(name)
    if logger is None:
        logger = _LOGGERS[name] = _StderrLogger(name)
    return logger


class _StderrHandler(logging.Handler):
    """Renders stdlib records to the current `sys.stderr`, for the same reason."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


_FIRST = ("timestamp", "level", "logger", "event")


def _leading_keys(logger: Any, method: str, event_dict: Any) -> Any:
    """Put the fixed keys first in a JSON line, so people reading raw logs find them."""
    head = {k: event_dict.pop(k) for k in _FIRST if k in event_dict}
    head.update(event_dict)
    return head


# The level in force; loggers are cached on first use, so the level is checked by a
# processor against this rather than built into each logger.
_threshold = logging.INFO
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _filter_level(logger: Any, method: str, event_dict: Any) -> Any:
    if _METHOD_LEVELS.get(method, logging.INFO) < _threshold:
        raise structlog.DropEvent
    return event_dict


def set_level(level: str) -> None:
    """Log at `level` from now on (structlog and stdlib alike); ValueError if unknown."""
    global _threshold
    _threshold = parse_level(level)
    logging.getLogger().setLevel(_threshold)


def current_level() -> str:
    """The level in force, by name."""
    return logging.getLevelName(_threshold).lower()


def parse_level(level: str) -> int:
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        known = ", ".join(k for k in LEVELS if k != "warn")
        raise ValueError(f"unknown log level {level!r} (known: {known})") from None


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """Send structlog and stdlib logging to stderr at `level`. `json=None` picks JSON when
    stderr is not a terminal (journald, a container runtime) and key=value on a terminal."""
    global _threshold
    threshold = _threshold = parse_level(level)
    tty = sys.stderr.isatty()
    as_json = (not tty) if json is None else json

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        # Tracebacks become one escaped string field, keeping one event per line.
        tail: list[Processor] = [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _leading_keys,
        ]
        renderer = structlog.processors.JSONRenderer()
    else:
        tail = [structlog.processors.StackInfoRenderer()]
        # Plain tracebacks: a rich one would print local variables, a password among them.
        renderer = structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[_filter_level, *shared, *tail, renderer],
        # Everything reaches `_filter_level`, which knows the level in force.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_logger_factory,
        context_class=dict,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, *tail],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    logging.captureWarnings(True)


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose events carry `logger=name`. Safe to call at import time: the
    logger takes its configuration on first use."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
