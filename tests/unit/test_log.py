"""Logging setup: one event per line on stderr, JSON off a terminal, key=value on one."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from common.log import configure_logging, get_logger, parse_level

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines()]


def test_json_events_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    log = get_logger("bgpd.test")
    log.info("session.established", peer="10.0.0.2", hold_time=90)
    log.debug("hidden.below.level")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("update.failed", peer="10.0.0.2")
    out, err = capsys.readouterr()
    assert out == ""
    first, second = json_lines(err)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert ISO_UTC.match(first["timestamp"])
    assert first | {"timestamp": None} == {
        "timestamp": None,
        "level": "info",
        "logger": "bgpd.test",
        "event": "session.established",
        "peer": "10.0.0.2",
        "hold_time": 90,
    }
    assert (second["level"], second["event"]) == ("error", "update.failed")
    assert "ValueError: bad\nvalue" in second["exception"]


def test_stdlib_records_render_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", json=True)
    logging.getLogger("pyroute2.ipr").warning("netlink %s", "busy")
    logging.getLogger("pyroute2.ipr").info("not shown")
    (record,) = json_lines(capsys.readouterr().err)
    assert (record["logger"], record["level"], record["event"]) == (
        "pyroute2.ipr",
        "warning",
        "netlink busy",
    )
    assert ISO_UTC.match(record["timestamp"])


def test_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    configure_logging("info", json=True)
    logging.getLogger("asyncio").error("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_console_renderer_is_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", json=False)
    get_logger("bgpd.test").debug("fib.synced", routes=12)
    (line,) = capsys.readouterr().err.splitlines()
    assert "fib.synced" in line
    assert "routes=12" in line
    assert "[bgpd.test]" in line
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ", line)


def test_default_is_json_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    get_logger("bgpd.test").info("started")
    assert json_lines(capsys.readouterr().err)[0]["event"] == "started"


def test_logger_made_before_configuration_follows_it(capsys: pytest.CaptureFixture[str]) -> None:
    early = get_logger("bgpd.early")
    configure_logging("error", json=True)
    early.warning("dropped")
    early.error("kept")
    assert [r["event"] for r in json_lines(capsys.readouterr().err)] == ["kept"]


@pytest.mark.parametrize(("name", "level"), [("DEBUG", 10), ("warn", 30), (" error ", 40)])
def test_parse_level(name: str, level: int) -> None:
    assert parse_level(name) == level


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        configure_logging("verbose")
