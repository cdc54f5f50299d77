"""What `show bfd sessions` shows: one record per session, and BIRD 2's text for them.

The record is a plain value (to_json / from_json for the control socket, as the records in
bgpd/control/api.py). `format_bird_sessions` is BIRD 2's `show bfd sessions` (proto/bfd/bfd.c
bfd_show_sessions), column for column, so the text reads the same on our BIRD-style socket,
in bgpctl, and next to `birdc show bfd sessions` on a router:

    bfd1:
    IP address                Interface  State      Since         Interval  Timeout
    10.0.0.2                  eth0       Up         12:00:01.123    0.100    0.300

Interval is the transmit interval in use (0 while not transmitting), Timeout the detection
time; both truncated to milliseconds as BIRD's `%7t` does. Since is BIRD 2's default
protocol time format: `%T.%3f` for a change less than 20 hours ago, `%F` otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

BIRD_NAME = "bfd1"
"""BIRD names an unnamed `protocol bfd` bfd1; we have one, so we use its name."""

SINCE_TIME_LIMIT = 20 * 3600

STATES = ("AdminDown", "Down", "Init", "Up")


@dataclass(frozen=True, slots=True)
class BfdSessionStatus:
    """One BFD session. Intervals in microseconds; `since` in wall-clock epoch seconds.

    `interval` is what BIRD's Interval column shows (the transmit interval in use, 0 while
    we do not transmit), `timeout` the detection time (0 before the peer was heard).
    `removing` marks a session deconfigured and still announcing AdminDown."""

    address: str
    local_address: str | None
    interface: str | None
    state: str
    since: float
    interval: int
    timeout: int
    local_discriminator: int
    remote_discriminator: int
    local_diag: str
    remote_state: str
    remote_diag: str
    detect_mult: int
    remote_detect_mult: int
    desired_min_tx: int
    required_min_rx: int
    remote_min_tx: int
    remote_min_rx: int
    packets_received: int
    packets_sent: int
    removing: bool = False

    def __post_init__(self) -> None:
        for name in ("state", "remote_state"):
            if getattr(self, name) not in STATES:
                raise ValueError(f"{name} must be one of {', '.join(STATES)}")

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BfdSessionStatus:
        def text(key: str) -> str | None:
            value = data[key]
            return None if value is None else str(value)

        return cls(
            address=str(data["address"]),
            local_address=text("local_address"),
            interface=text("interface"),
            state=str(data["state"]),
            since=float(data["since"]),
            interval=int(data["interval"]),
            timeout=int(data["timeout"]),
            local_discriminator=int(data["local_discriminator"]),
            remote_discriminator=int(data["remote_discriminator"]),
            local_diag=str(data["local_diag"]),
            remote_state=str(data["remote_state"]),
            remote_diag=str(data["remote_diag"]),
            detect_mult=int(data["detect_mult"]),
            remote_detect_mult=int(data["remote_detect_mult"]),
            desired_min_tx=int(data["desired_min_tx"]),
            required_min_rx=int(data["required_min_rx"]),
            remote_min_tx=int(data["remote_min_tx"]),
            remote_min_rx=int(data["remote_min_rx"]),
            packets_received=int(data["packets_received"]),
            packets_sent=int(data["packets_sent"]),
            removing=bool(data.get("removing", False)),
        )


def bird_seconds(microseconds: int) -> str:
    """BIRD's `%7t`: seconds with three decimals, truncated, right-aligned in 7."""
    whole, rest = divmod(microseconds, 1_000_000)
    return f"{whole:>3}.{rest // 1000:03d}"


def bird_since(since: float, now: float, tz: tzinfo | None = None) -> str:
    """TM_ISO_SHORT_MS; `tz=None` is the local zone, as BIRD prints it."""
    moment = datetime.fromtimestamp(since, tz)
    if now - since < SINCE_TIME_LIMIT:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%d")


def _order(record: BfdSessionStatus) -> tuple[int, int]:
    ip = ipaddress.ip_address(record.address)
    return (ip.version, int(ip))


def format_bird_sessions(
    records: Sequence[BfdSessionStatus],
    now: float,
    tz: tzinfo | None = None,
    name: str = BIRD_NAME,
) -> str:
    """BIRD 2's `show bfd sessions` text (without the reply codes of its socket)."""
    lines = [
        f"{name}:",
        f"{'IP address':<25} {'Interface':<10} {'State':<10} {'Since':<12}  "
        f"{'Interval':>8} {'Timeout':>8}",
    ]
    for r in sorted(records, key=_order):
        lines.append(
            f"{r.address:<25} {r.interface or '---':<10} {r.state:<10} "
            f"{bird_since(r.since, now, tz):<12}  {bird_seconds(r.interval):>7}  "
            f"{bird_seconds(r.timeout):>7}"
        )
    return "\n".join(lines) + "\n"
