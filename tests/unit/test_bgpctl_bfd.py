"""`show bfd sessions`: the control handler against fake views, the text against a golden
file (BIRD 2's columns, fixed records, UTC), and bgpctl end to end over a real control
server. Set UPDATE_GOLDEN=1 to rewrite the golden file after an intended change."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path

import pytest
from test_bgpctl_ops import FakeView, check_golden, run, serve

from bgpd.bfd.status import BfdSessionStatus, format_bird_sessions
from bgpd.control.handlers import handle_request

NOW = 1_700_000_600.0


def record(
    address: str, state: str, interface: str | None, since: float, **kw: object
) -> BfdSessionStatus:
    up = state == "Up"
    fields: dict[str, object] = {
        "address": address,
        "local_address": None,
        "interface": interface,
        "state": state,
        "since": since,
        "interval": 300_000 if up else 1_000_000,
        "timeout": 900_000 if up else 0,
        "local_discriminator": 0x1234,
        "remote_discriminator": 0x5678 if up else 0,
        "local_diag": "No diagnostic" if up else "Control detection time expired",
        "remote_state": "Up" if up else "Down",
        "remote_diag": "No diagnostic",
        "detect_mult": 3,
        "remote_detect_mult": 3 if up else 0,
        "desired_min_tx": 300_000,
        "required_min_rx": 300_000,
        "remote_min_tx": 300_000 if up else 0,
        "remote_min_rx": 300_000 if up else 1,
        "packets_received": 120 if up else 0,
        "packets_sent": 121,
        **kw,
    }
    return BfdSessionStatus(**fields)  # type: ignore[arg-type]


RECORDS = [
    record("10.0.0.254", "Up", "eth0", NOW - 3600.25),
    record("10.0.0.3", "Down", "eth0", NOW - 12.5),
    record("fd00::fe", "Init", None, NOW - 86400 * 2, interval=1_000_000, timeout=3_000_000),
    record("10.0.0.2", "AdminDown", "eth0", NOW - 1.0, removing=True),
]


def test_show_bfd_sessions_golden() -> None:
    check_golden("bfd_sessions.txt", format_bird_sessions(RECORDS, NOW, tz=UTC))


class BfdFakeView(FakeView):
    def __init__(self, records: Sequence[BfdSessionStatus] | None = RECORDS) -> None:
        super().__init__()
        self.records = None if records is None else list(records)

    def bfd_sessions(self) -> list[BfdSessionStatus] | None:
        return self.records


def test_handler() -> None:
    view = BfdFakeView()
    assert handle_request({"command": "bfd_sessions"}, view)["result"] == RECORDS
    assert handle_request({"command": "bfd_sessions", "address": "FD00::FE"}, view)["result"] == [
        RECORDS[2]
    ]
    assert handle_request({"command": "bfd_sessions", "address": "10.9.9.9"}, view) == {
        "ok": False,
        "error": "no BFD session with 10.9.9.9",
    }
    assert handle_request({"command": "bfd_sessions", "address": "nope"}, view)["ok"] is False
    assert handle_request({"command": "bfd_sessions", "peer": "x"}, view)["ok"] is False


def test_handler_without_bfd() -> None:
    expected = {"ok": False, "error": "There is no BFD protocol running"}
    assert handle_request({"command": "bfd_sessions"}, BfdFakeView(None)) == expected
    assert handle_request({"command": "bfd_sessions"}, FakeView()) == expected  # no BFD view


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[str]:
    yield from serve(str(tmp_path / "bgpd.sock"), BfdFakeView())


def test_cli_show_bfd_sessions(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "show", "bfd", "sessions"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "bfd1:"
    assert lines[1] == (
        "IP address                Interface  State      Since         Interval  Timeout"
    )
    # Since is in the local zone: compare the other columns.
    rows = [line.split() for line in lines[2:]]
    assert [r[:3] + r[-2:] for r in rows] == [
        ["10.0.0.2", "eth0", "AdminDown", "1.000", "0.000"],
        ["10.0.0.3", "eth0", "Down", "1.000", "0.000"],
        ["10.0.0.254", "eth0", "Up", "0.300", "0.900"],
        ["fd00::fe", "---", "Init", "1.000", "3.000"],
    ]
    code, out, _ = run(["--control-socket", sock, "show", "bfd", "sessions", "--json"], capsys)
    assert code == 0 and [BfdSessionStatus.from_json(r) for r in json.loads(out)] == RECORDS
    code, out, err = run(["--control-socket", sock, "show", "bfd", "sessions", "10.1.1.1"], capsys)
    assert (code, out, err) == (1, "", "bgpctl: no BFD session with 10.1.1.1\n")
