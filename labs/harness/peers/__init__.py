"""Real BGP daemons (BIRD 2, FRR, GoBGP, ExaBGP) run inside lab nodes, behind one interface.

Each peer writes its configuration into a directory of its own, starts the daemon in the
foreground inside the node's namespace (no system service, no shared sockets or pid files) and
answers questions through the daemon's own client (birdc, vtysh, gobgp) or, for ExaBGP, through
the JSON its API process records. All of them:

    peer = BirdPeer(node, "10.0.0.1", 65001, [Neighbor("10.0.0.2", 65002)], routes_v4=[...])
    peer.start()                       # returns once the daemon answers its control socket
    peer.wait_established()            # every neighbour (or one: peer.wait_established(addr))
    peer.received_prefixes(4)          # {"10.99.2.0/24", ...}  (learned over BGP only)
    peer.received_routes(6)            # {prefix: [Route(...), ...]} with next hop, AS path, ...
    peer.announce("10.99.1.0/24"); peer.withdraw("10.99.1.0/24")
    peer.freeze(); peer.thaw()         # SIGSTOP/SIGCONT, e.g. to let a hold timer expire
    peer.stop(); peer.kill()           # SIGTERM (clean Cease) / SIGKILL (no NOTIFICATION)

`base` holds what they share (`Peer`, `Neighbor`, `Route`, state names); `bird`, `frr`,
`gobgp` and `exabgp` each hold one daemon's peer class and the parser of its route output.
"""

from __future__ import annotations

from .base import (
    CONNECT_RETRY,
    START_TIMEOUT,
    STATES,
    DaemonExited,
    Neighbor,
    NeighborSpec,
    Peer,
    Route,
    family_of,
    missing_programs,
    normalise_state,
)
from .bird import BirdPeer, parse_bird_routes
from .exabgp import ExabgpPeer
from .frr import FRR_DIR, FrrBfdPeer, FrrPeer
from .gobgp import GobgpPeer

PEER_TYPES: dict[str, type[Peer]] = {
    "bird": BirdPeer,
    "frr": FrrPeer,
    "gobgp": GobgpPeer,
    "exabgp": ExabgpPeer,
}

__all__ = [
    "CONNECT_RETRY",
    "FRR_DIR",
    "PEER_TYPES",
    "START_TIMEOUT",
    "STATES",
    "BirdPeer",
    "DaemonExited",
    "ExabgpPeer",
    "FrrBfdPeer",
    "FrrPeer",
    "GobgpPeer",
    "Neighbor",
    "NeighborSpec",
    "Peer",
    "Route",
    "family_of",
    "missing_programs",
    "normalise_state",
    "parse_bird_routes",
]
