"""One line per event: the rate limit for repeated log events (a fake clock), the folding of
the speaker's follow-up lines into the event they belong to, and the session drivers' lines
counted on real sockets (a refused flood, a failing neighbor's retries)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest

from bgpd.session.driver import CONNECTION_REFUSED, Listener, PeerDriver
from bgpd.session.events import StateChanged
from bgpd.session.settings import PeerSettings
from bgpd.speaker.actions import CancelDump, Log
from bgpd.speaker.logs import merge_follow_ups
from common.log import configure_logging
from common.ratelimit import OTHERS, LogLimiter, Suppressed

# --- the limiter ----------------------------------------------------------------------------


def test_first_event_logged_the_rest_counted_then_summarised() -> None:
    lim = LogLimiter(burst=1, interval=60.0)
    assert lim.allow("refused", "10.0.0.9", 0.0, {"address": "10.0.0.9"})
    assert lim.next_deadline() is None  # nothing suppressed yet: no timer needed
    assert [lim.allow("refused", "10.0.0.9", t / 10) for t in range(1, 500)] == [False] * 499
    assert lim.allow("refused", "10.0.0.8", 1.0)  # another subject has its own window
    assert lim.next_deadline() == 60.0
    assert lim.due(59.9) == []
    assert lim.due(60.0) == [
        Suppressed("refused", "10.0.0.9", 499, 0.0, 60.0, {"address": "10.0.0.9"})
    ]
    assert lim.due(61.0) == []  # handed out once
    assert lim.next_deadline() is None
    assert lim.allow("refused", "10.0.0.9", 61.0)  # a new window


def test_burst_and_a_window_ended_by_the_next_event() -> None:
    lim = LogLimiter(burst=3, interval=10.0)
    assert [lim.allow("k", "s", float(t)) for t in range(5)] == [True] * 3 + [False] * 2
    # No one asked for the summary at 10 s; the next event closes the window and logs.
    assert lim.allow("k", "s", 12.0)
    assert lim.next_deadline() == 10.0  # owed, and overdue
    (summary,) = lim.due(12.0)
    assert (summary.count, summary.since, summary.seconds) == (2, 0.0, 10.0)


def test_drain_gives_what_is_owed_at_shutdown() -> None:
    lim = LogLimiter(interval=60.0)
    lim.allow("k", "a", 0.0)
    lim.allow("k", "a", 1.0)
    lim.allow("k", "b", 2.0)  # nothing suppressed: no summary
    assert lim.drain(5.0) == [Suppressed("k", "a", 1, 0.0, 5.0, {})]
    assert lim.drain(6.0) == [] and lim.next_deadline() is None


def test_many_subjects_share_one_window_beyond_the_bound() -> None:
    lim = LogLimiter(interval=60.0, max_subjects=4)
    logged = [lim.allow("refused", f"10.0.0.{i}", 0.0) for i in range(100)]
    # Four subjects, then one more line for all the others together.
    assert logged.count(True) == 5
    assert lim.due(60.0) == [Suppressed("refused", OTHERS, 95, 0.0, 60.0, {})]
    # Subjects whose windows ended make room again.
    assert lim.allow("refused", "10.0.0.200", 61.0)
    assert lim.allow("other kind", "10.0.0.1", 61.0)


def test_limiter_arguments() -> None:
    for bad in ({"burst": 0}, {"interval": 0.0}, {"max_subjects": 0}):
        with pytest.raises(ValueError):
            LogLimiter(**bad)  # type: ignore[arg-type]


# --- folding follow-up lines ----------------------------------------------------------------


def test_stale_routes_join_the_session_down_line() -> None:
    down = Log("info", "session down", {"peer": "p", "address": "10.0.0.2", "reason": "x"})
    stale = Log("info", "keeping stale routes for restart",
                {"peer": "p", "stale_routes": 7, "restart_time": 120})
    merged = merge_follow_ups([down, CancelDump("p"), stale])
    assert merged == [
        Log("info", "session down", {"peer": "p", "address": "10.0.0.2", "reason": "x",
                                     "stale_routes": 7, "restart_time": 120}),
        CancelDump("p"),
    ]
    assert list(merged[0].fields) == [  # type: ignore[attr-defined]
        "peer", "address", "reason", "stale_routes", "restart_time",
    ]


def test_a_follow_up_of_another_peer_or_event_stays_its_own_line() -> None:
    other = Log("info", "keeping stale routes for restart", {"peer": "q", "stale_routes": 1})
    down = Log("info", "session down", {"peer": "p"})
    assert merge_follow_ups([down, other]) == [down, other]
    between = Log("warning", "maximum prefixes", {"peer": "p"})
    again = Log("info", "keeping stale routes for restart", {"peer": "p"})
    assert merge_follow_ups([down, between, again]) == [down, between, again]
    assert merge_follow_ups([again]) == [again]
    plain = [down, CancelDump("p")]
    assert merge_follow_ups(plain) is plain


# --- the session drivers' lines, on real sockets ---------------------------------------------


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    configure_logging("info", json=True)
    try:
        yield capsys
    finally:
        configure_logging("warning")


def _events(captured: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """The info lines and above (a logger cached by an earlier test may still log debug)."""
    err = captured.readouterr().err
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    return [e for e in events if e["level"] != "debug"]


Captured = pytest.CaptureFixture[str]


def test_a_flood_of_refused_connections_is_one_line_and_a_count(log_lines: Captured) -> None:
    async def flood() -> int:
        listener = await Listener.start("127.0.0.1", 0, lambda address: None)
        loop = asyncio.get_running_loop()
        for _ in range(500):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", listener.port))
                # The listener closes it: wait for the EOF, so every one was refused.
                await loop.sock_recv(sock, 1)
            except ConnectionError:
                pass
            finally:
                sock.close()
        refused = listener.refused
        await listener.close()  # owed summaries are logged at close
        return refused

    assert asyncio.run(flood()) == 500
    events = _events(log_lines)
    refused = [e for e in events if e["event"] == CONNECTION_REFUSED]
    summaries = [e for e in events if e["event"] == "suppressed similar"]
    (line,) = refused
    assert (line["address"], line["reason"]) == ("127.0.0.1", "not a configured neighbor")
    assert [(s["kind"], s["address"], s["suppressed"]) for s in summaries] == [
        (CONNECTION_REFUSED, "127.0.0.1", 499)
    ]
    assert len(events) == 2


def test_a_neighbor_refusing_connects_logs_its_first_failure(log_lines: Captured) -> None:
    with socket.socket() as s:  # a port nobody listens on: each connect is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def retry() -> None:
        settings = PeerSettings(
            name="tor", peer_address="127.0.0.1", peer_port=port, peer_as=65000, local_as=64512,
            router_id=1, connect_delay_time=0.0, connect_retry_time=0.01,
        )
        failures: list[StateChanged] = []

        def on_event(event: object) -> None:
            if isinstance(event, StateChanged) and event.error:
                failures.append(event)

        driver = PeerDriver(settings, on_event)
        driver.start()
        async with asyncio.timeout(30):
            while len(failures) < 5:
                await asyncio.sleep(0.01)
        await driver.stop()

    asyncio.run(retry())
    events = _events(log_lines)
    failed = [e for e in events if e["event"] == "session attempt failed"]
    assert [(e["peer"], e["old"], e["new"], e["error"]) for e in failed] == [
        ("tor", "Connect", "Active", "Socket: Connection refused")
    ]
    (summary,) = [e for e in events if e["event"] == "suppressed similar"]
    assert summary["kind"] == "session attempt failed" and summary["suppressed"] >= 4
    assert summary["peer"] == "tor"
    assert len(events) == 2  # state changes are debug lines
