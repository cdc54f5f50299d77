"""bgpctl's output, made from status records with no I/O and an explicit `now`.

`bgpctl status` reads like `calicoctl node status`: calicoctl parses BIRD's `show protocols`, so
each column here is what calicoctl would show for the BIRD state equivalent to our session state.
- STATE is BIRD's protocol state: "up" once Established, "start" while BIRD would still be
  (re)connecting, which is every other BGP state.
- SINCE is BIRD's default protocol time format: "%T" (HH:MM:SS, local time) when the change is
  less than 20 hours old, "%F" (YYYY-MM-DD) otherwise.
- INFO is BIRD's `%-14s` BGP state followed by the last error with its class ("Socket: ",
  "Received: ", ...), as calicoctl re-joins the columns: single spaces. BIRD clears the last error
  on reaching Established, and shows a listening passive peer as "Passive".
- PEER ADDRESS is calicoctl's decoding of BIRD's protocol name: a peer on a port other than 179
  is named `..._port_N`, which calicoctl shows as "<ip>.port.N" (IPv6: "<ip>:port:N").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from bgpd.status.codec import to_json
from bgpd.status.records import (
    CALICO_PEER_TYPES,
    PEER_TYPES,
    DaemonStatus,
    PeerStatus,
    RouteEntry,
    bird_error,
)

# calicoctl's words (scripts grep for them); `bgpctl status --bgpd` says bgpd instead.
HEADER = "Calico process is running."
BGPD_HEADER = "bgpd process is running."

BGP_PORT = 179

# BIRD's `timeformat protocol` default: "%T" within this many seconds, "%F" beyond.
SINCE_TIME_LIMIT = 20 * 3600

STATUS_COLUMNS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")
ROUTE_COLUMNS = ("PREFIX", "NEXT HOP", "BEST", "FROM", "AS PATH", "ORIGIN", "LOCAL PREF")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An ASCII box table as calicoctl's tablewriter draws it: each column as wide as its widest
    cell, headers centred (the odd space on the right), cells left-aligned, one space of padding.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    head = "| " + " | ".join(centred(h, w) for h, w in zip(headers, widths, strict=True)) + " |"
    lines = [rule, head, rule]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    lines.append(rule)
    return "\n".join(lines) + "\n"


def bird_state(peer: PeerStatus) -> str:
    return "up" if peer.bgp_state == "Established" else "start"


def bird_info(peer: PeerStatus) -> str:
    if peer.bgp_state == "Established":
        return "Established"
    name = peer.bgp_state
    if peer.passive and name in ("Idle", "Active"):
        name = "Passive"
    return " ".join(f"{name} {bird_error(peer.info)}".split())


def bird_since(since: float | None, now: float, tz: tzinfo | None = None) -> str:
    """`tz=None` means the local zone, as BIRD prints it."""
    if since is None:
        return ""
    moment = datetime.fromtimestamp(since, tz)
    if now - since < SINCE_TIME_LIMIT:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d")


def calico_address(peer: PeerStatus) -> str:
    if peer.port == BGP_PORT:
        return peer.address
    sep = "." if peer.family == "ipv4" else ":"
    return f"{peer.address}{sep}port{sep}{peer.port}"


def _peer_order(peer: PeerStatus) -> tuple[int, int, int, str]:
    # BIRD lists protocols in configuration order, and confd writes mesh, global, then
    # node-specific peers; sorting by type then address reproduces that.
    try:
        addr = int(ipaddress.ip_address(peer.address))
    except ValueError:
        addr = -1
    return (PEER_TYPES.index(peer.type), addr, peer.port, peer.name)


def _family_label(family: str) -> str:
    return "IPv4" if family == "ipv4" else "IPv6"


def format_status(
    status: DaemonStatus, now: float, tz: tzinfo | None = None, *, header: str = HEADER
) -> str:
    out = [header + "\n"]
    for family in ("ipv4", "ipv6"):
        label = _family_label(family)
        out.append(f"\n{label} BGP status\n")
        # As calicoctl: only Mesh_/Global_/Node_ sessions, not Local_Workload_ ones.
        peers = sorted(
            (p for p in status.peers if p.family == family and p.type in CALICO_PEER_TYPES),
            key=_peer_order,
        )
        if not peers:
            out.append(f"No {label} peers found.\n")
            continue
        rows = [
            (calico_address(p), p.type, bird_state(p), bird_since(p.since, now, tz), bird_info(p))
            for p in peers
        ]
        out.append(render_table(STATUS_COLUMNS, rows))
    out.append("\n")
    return "".join(out)


def iso_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_json(status: DaemonStatus) -> dict[str, Any]:
    """What `bgpctl status --json` prints: the table's columns plus the raw BGP state."""
    peers = sorted(status.peers, key=lambda p: (p.family != "ipv4", _peer_order(p)))
    return {
        "router_id": status.router_id,
        "as": status.asn,
        "node": status.node,
        "version": status.version,
        "started": iso_utc(status.started),
        "peers": [
            {
                "address": p.address,
                "port": p.port,
                "family": p.family,
                "type": p.type,
                "state": bird_state(p),
                "since": iso_utc(p.since),
                "info": bird_info(p),
                "bgp_state": p.bgp_state,
                "routes_received": p.routes_received,
                "routes_advertised": p.routes_advertised,
            }
            for p in peers
        ],
    }


def _optional(value: int | None) -> str:
    return "" if value is None else str(value)


def format_routes(routes: Sequence[RouteEntry], prefix: str | None = None) -> str:
    """One row per path, in the order given (the daemon sorts: prefix, then best first).
    A path kept for a peer in graceful restart shows "(stale)" after its source."""
    if not routes:
        return f"No routes for {prefix}.\n" if prefix else "No routes found.\n"
    rows = [
        (
            r.prefix,
            r.next_hop,
            "*" if r.best else "",
            f"{r.from_peer} (stale)" if r.stale else r.from_peer,
            r.as_path,
            r.origin,
            _optional(r.local_pref),
        )
        for r in routes
    ]
    return render_table(ROUTE_COLUMNS, rows)


def routes_json(routes: Sequence[RouteEntry]) -> list[dict[str, Any]]:
    return [to_json(r) for r in routes]
