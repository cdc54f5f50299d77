"""Calico's readers of BIRD's control socket, ported line for line, to check bgpd's BIRD
socket (and a real BIRD) the way calico-node and calicoctl read it:

- `scan_bird_peers`: node/pkg/health/bird/bird.go `scanBIRDPeers` / `unmarshalBIRD` (the same
  parser is in calicoctl/calicoctl/commands/node/status.go): `show protocols` rows kept when
  the proto column is BGP and the name is `(Global|Node|Mesh)_...`, the address decoded from
  the name, state / since / BGP state / info from the columns.
- `gr_in_progress`: `GRInProgress`, which reads `show status` and says yes on a 0024 line.
- `bird_ready`: `checkBIRDReady` within its threshold (every peer Established, no GR).
- `bird_live`: -bird-live's check of `birdcl -s SOCKET show status` output: starts "BIRD".
- `calicoctl_rows`: the rows `calicoctl node status` prints for them.

`headings="bird2"` compares the heading without case, since BIRD 2 capitalises it and
Calico's parser, which only knows BIRD 1.6, would refuse it.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

BGP_PEER = re.compile(r"^(Global|Node|Mesh)_(.+)$")
TYPES = {"Global": "global", "Mesh": "node-to-node mesh", "Node": "node specific"}
HEADINGS = ["name", "proto", "table", "state", "since", "info"]
TIMEOUT = 2.0


class BirdParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BgpPeer:
    peer_ip: str
    peer_type: str
    state: str
    since: str
    bgp_state: str
    info: str


def _unmarshal(line: str, sep: str) -> BgpPeer | None:
    columns = line.split()
    if len(columns) < 6 or columns[1] != "BGP":
        return None
    m = BGP_PEER.match(columns[0])
    if m is None:
        return None
    return BgpPeer(
        peer_ip=m.group(2).replace("_", sep),
        peer_type=TYPES[m.group(1)],
        state=columns[3],
        since=columns[4],
        bgp_state=columns[5],
        info=" ".join(columns[6:]),
    )


def scan_bird_peers(lines: list[str], ipv: str = "4", headings: str = "bird1") -> list[BgpPeer]:
    """The reply lines of `show protocols` (hello included) -> the BGP peers, or raise
    BirdParseError where Calico's parser returns an error."""
    sep = ":" if ipv == "6" else "."
    peers: list[BgpPeer] = []
    for line in lines:
        if line.startswith("0000"):
            break
        if line.startswith("0001"):
            continue
        if line.startswith("2002"):
            fields = line[5:].split()
            if headings == "bird2":
                fields = [f.lower() for f in fields]
            if fields != HEADINGS:
                raise BirdParseError("unknown BIRD table output format")
        elif line.startswith("1002"):
            peer = _unmarshal(line[5:], sep)
            if peer is not None:
                peers.append(peer)
        elif line.startswith(" "):
            peer = _unmarshal(line[1:], sep)
            if peer is not None:
                peers.append(peer)
        else:
            raise BirdParseError(f"unexpected output line from BIRD: '{line}'")
    return peers


def gr_in_progress(lines: list[str]) -> bool:
    """The reply lines of `show status` (hello included) -> whether a GR is in progress."""
    for line in lines:
        if line.startswith("0013"):
            break
        if line.startswith("0024"):
            return True
        if line.startswith(("0001", "1000", "1011", " ")):
            continue
        raise BirdParseError(f"unexpected output line from BIRD: '{line}'")
    return False


def bird_ready(peers: list[BgpPeer], gr: bool) -> str | None:
    """checkBIRDReady at start-up (inside its threshold): None when ready, else its error."""
    down = [p.peer_ip for p in peers if p.bgp_state != "Established"]
    if not peers:
        return None
    if down:
        return f"BGP not established with {','.join(down)}"
    if gr:
        return "graceful restart in progress"
    return None


def bird_live(birdcl_output: str) -> bool:
    return birdcl_output.startswith("BIRD")


def calicoctl_rows(peers: list[BgpPeer]) -> list[tuple[str, str, str, str, str]]:
    """calicoctl node status's table rows: address, type, state, since, info."""
    return [
        (p.peer_ip, p.peer_type, p.state, p.since, " ".join(f"{p.bgp_state} {p.info}".split()))
        for p in peers
    ]


def query(path: str, command: str, timeout: float = TIMEOUT) -> list[str]:
    """Send one command as Calico does (a raw socket, "CMD\\n") and read the reply lines,
    hello first, through the reply's last line (a code followed by a space)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        buf = b""
        lines: list[str] = []
        done_hello = False
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise BirdParseError(f"connection closed before the reply ended: {lines}")
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode()
                lines.append(line)
                if re.match(r"^\d{4} ", line):
                    if done_hello:
                        return lines
                    done_hello = True
