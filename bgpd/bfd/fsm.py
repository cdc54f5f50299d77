"""The RFC 5880 6.8.6 state machine as data (h11's transition tables).

`TRANSITIONS[(local, remote)]` is what a received packet whose State field is `remote`
does to a session in state `local`: the new state and the diagnostic to record, or
`None` for no change. AdminDown on our side is absent on purpose: 6.8.6 discards packets
then. The timer transition (detection time expiry, 6.8.4) and the administrative ones
(6.8.16) are `EXPIRED` and `admin_*` in session.py, since they do not depend on a packet.
"""

from __future__ import annotations

from bgpd.bfd.packet import Diag, State

_S = State
_NEIGHBOR_DOWN = (_S.DOWN, Diag.NEIGHBOR_SIGNALED_DOWN)

TRANSITIONS: dict[tuple[State, State], tuple[State, Diag] | None] = {
    # Down: wait for the remote to agree that the session is down, then go up in two steps.
    (_S.DOWN, _S.ADMIN_DOWN): None,
    (_S.DOWN, _S.DOWN): (_S.INIT, Diag.NONE),
    (_S.DOWN, _S.INIT): (_S.UP, Diag.NONE),
    (_S.DOWN, _S.UP): None,
    # Init: the remote has heard us once it says Init or Up.
    (_S.INIT, _S.ADMIN_DOWN): _NEIGHBOR_DOWN,
    (_S.INIT, _S.DOWN): None,
    (_S.INIT, _S.INIT): (_S.UP, Diag.NONE),
    (_S.INIT, _S.UP): (_S.UP, Diag.NONE),
    # Up: only the remote saying Down (or AdminDown) ends it; silence is the timer's job.
    (_S.UP, _S.ADMIN_DOWN): _NEIGHBOR_DOWN,
    (_S.UP, _S.DOWN): _NEIGHBOR_DOWN,
    (_S.UP, _S.INIT): None,
    (_S.UP, _S.UP): None,
}

EXPIRED: dict[State, tuple[State, Diag] | None] = {
    # 6.8.4: the detection time passed without a packet.
    _S.ADMIN_DOWN: None,
    _S.DOWN: None,
    _S.INIT: (_S.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED),
    _S.UP: (_S.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED),
}
