"""BFD, asynchronous mode, single hop (RFC 5880, RFC 5881): sub-second failure detection
for BGP peers.

The rooms follow bgpd/wire and bgpd/session: `packet` (the control packet codec), `fsm`
(the 6.8.6 transitions as a table), `session` (one session's machine, sans-I/O), `table`
(every session behind one socket: demultiplexing, discriminators, one timer), `status`
(the `show bfd sessions` records and BIRD's text), and `driver` (the asyncio shell:
`BfdManager`, UDP port 3784, TTL 255).
"""

from bgpd.bfd.errors import BfdPacketError, LocalBfdError
from bgpd.bfd.events import BfdDown, BfdEvent, BfdStateChanged, BfdUp
from bgpd.bfd.packet import ControlPacket, Diag, State, decode_control, encode_control
from bgpd.bfd.session import Session, Timers
from bgpd.bfd.status import BfdSessionStatus, format_bird_sessions
from bgpd.bfd.table import Datagram, SessionTable

__all__ = [
    "BfdDown",
    "BfdEvent",
    "BfdPacketError",
    "BfdSessionStatus",
    "BfdStateChanged",
    "BfdUp",
    "ControlPacket",
    "Datagram",
    "Diag",
    "LocalBfdError",
    "Session",
    "SessionTable",
    "State",
    "Timers",
    "decode_control",
    "encode_control",
    "format_bird_sessions",
]
