"""Fuzz targets: one function per target taking the fuzzer's bytes (libFuzzer's
LLVMFuzzerTestOneInput). Anything a target raises other than `Finding`-free returns is a bug:
peer bytes may only ever produce values, `WireError`s (decoder) or events and NOTIFICATIONs
(session), never another exception.

Input layout, shared by both targets so one corpus seeds both: the first octet holds flags
(`Flags`), the rest is a byte stream as a peer would send it on the TCP connection.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator

from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open
from bgpd.session.session import Session
from bgpd.session.settings import PeerSettings
from bgpd.wire.attributes import FLAG_PARTIAL, FLAG_TRANSITIVE
from bgpd.wire.codec import decode_message, encode_keepalive, encode_message, split_messages
from bgpd.wire.errors import EncodeError, WireError
from bgpd.wire.family import Family
from bgpd.wire.messages import ADD_PATH_BOTH, Message, Notification, Open, Update
from bgpd.wire.options import CodecOptions


class Flags(enum.IntFlag):
    """The first input octet."""

    TWO_OCTET_AS = 0x01  # no 4-octet AS (AS_PATH with 2-octet numbers, AS4_PATH)
    EXTENDED_MESSAGE = 0x02  # messages up to 65535 octets
    ADD_PATH_V4 = 0x04
    ADD_PATH_V6 = 0x08
    NOT_ESTABLISHED = 0x10  # session target: feed the stream from OpenSent, not Established
    IBGP = 0x20  # session target: an iBGP neighbor
    CHUNK_SMALL = 0x40  # session target: the stream arrives in small pieces...
    CHUNK_BYTES = 0x80  # ...or one octet at a time (both bits: 64-octet pieces)


PEER_AS, LOCAL_AS = 65002, 65001
LOCAL_ID, PEER_ID = 0x0A000001, 0x0A000002


class Finding(AssertionError):
    """An invariant the target checks failed (besides an unexpected exception)."""


def codec_options(flags: int) -> CodecOptions:
    add_path = frozenset(
        f
        for f, bit in (
            (Family.IPV4_UNICAST, Flags.ADD_PATH_V4),
            (Family.IPV6_UNICAST, Flags.ADD_PATH_V6),
        )
        if flags & bit
    )
    return CodecOptions(
        four_octet_as=not flags & Flags.TWO_OCTET_AS,
        add_path_receive=add_path,
        add_path_send=add_path,
        extended_message=bool(flags & Flags.EXTENDED_MESSAGE),
    )


# --- (a) the decoder ----------------------------------------------------------------------


def fuzz_decoder(data: bytes) -> None:
    """split_messages + decode_message: only WireError may escape; a decoded message must
    survive encode -> decode unchanged (when it can be encoded at all)."""
    if not data:
        return
    opts = codec_options(data[0])
    try:
        frames, _rest = split_messages(data[1:], opts.max_message_size)
    except WireError:
        return
    for frame in frames:
        try:
            msg = decode_message(frame, opts)
        except WireError:
            continue
        _check_round_trip(msg, opts)


def _comparable(msg: Message) -> Message:
    if not isinstance(msg, Update):
        return msg
    # The RFC 7606 error a decode found is an exception object (identity equality).
    msg = dataclasses.replace(msg, error=None)
    attrs = msg.attributes
    if attrs is not None and attrs.unknown:
        # RFC 4271 5: unknown optional transitive attributes are passed on with PARTIAL set,
        # unknown non-transitive ones are not passed on.
        # They go out in type-code order (RFC 4271 5, "SHOULD"), not in the peer's order.
        unknown = tuple(
            sorted(
                (
                    dataclasses.replace(u, flags=u.flags | FLAG_PARTIAL)
                    for u in attrs.unknown
                    if u.flags & FLAG_TRANSITIVE
                ),
                key=lambda u: u.type_code,
            )
        )
        msg = dataclasses.replace(msg, attributes=dataclasses.replace(attrs, unknown=unknown))
    return msg


def _check_round_trip(msg: Message, opts: CodecOptions) -> None:
    if isinstance(msg, Update) and msg.error is not None:
        return  # treat-as-withdraw / discard rewrote it: not a faithful value to re-encode
    try:
        wire = encode_message(msg, opts)
    except EncodeError:
        return  # e.g. a normalised attribute block that no longer fits: a local refusal
    try:
        again = decode_message(wire, opts)
    except WireError as exc:
        raise Finding(f"our encoding of {msg!r} does not decode: {exc!r}") from exc
    if _comparable(again) != _comparable(msg):
        raise Finding(f"round trip changed the message:\n{msg!r}\n{again!r}")


# --- (b) the session machine --------------------------------------------------------------

_EVENT_TYPES = (StateChanged, SessionEstablished, UpdateReceived, RouteRefreshReceived, SessionDown)


def session_settings(flags: int) -> tuple[PeerSettings, PeerSettings]:
    """Our settings for the neighbor, and the neighbor's for us (to build its OPEN)."""
    peer_as = LOCAL_AS if flags & Flags.IBGP else PEER_AS
    add_path = tuple(
        (f, ADD_PATH_BOTH)
        for f, bit in (
            (Family.IPV4_UNICAST, Flags.ADD_PATH_V4),
            (Family.IPV6_UNICAST, Flags.ADD_PATH_V6),
        )
        if flags & bit
    )
    common = {
        "four_octet_as": not flags & Flags.TWO_OCTET_AS,
        "extended_message": bool(flags & Flags.EXTENDED_MESSAGE),
        "add_path": add_path,
        "hold_time": 90,
    }
    ours = PeerSettings(
        name="fuzz",
        peer_address="192.0.2.2",
        peer_as=peer_as,
        local_as=LOCAL_AS,
        router_id=LOCAL_ID,
        **common,  # type: ignore[arg-type]
    )
    theirs = PeerSettings(
        name="us",
        peer_address="192.0.2.1",
        peer_as=LOCAL_AS,
        local_as=peer_as,
        router_id=PEER_ID,
        **common,  # type: ignore[arg-type]
    )
    return ours, theirs


def _chunks(stream: bytes, flags: int) -> Iterator[bytes]:
    small, single = flags & Flags.CHUNK_SMALL, flags & Flags.CHUNK_BYTES
    size = 64 if small and single else 1 if single else 7 if small else len(stream) or 1
    for at in range(0, len(stream), size):
        yield stream[at : at + size]


class _Checker:
    """Drains a session after each input and checks what came out."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.down = False
        self.established = False
        self.sent: list[bytes] = []

    def drain(self) -> None:
        while (event := self.session.next_event()) is not None:
            if not isinstance(event, _EVENT_TYPES):
                raise Finding(f"not a session event: {event!r}")
            if self.down:
                raise Finding(f"event after SessionDown: {event!r}")
            self._check_event(event)
        out = self.session.data_to_send()
        if out:
            self._check_output(out)

    def _check_event(self, event: SessionEvent) -> None:
        if isinstance(event, SessionDown):
            self.down = True
            if not self.session.closed:
                raise Finding("SessionDown while the session is not closed")
        elif isinstance(event, SessionEstablished):
            self.established = True
        elif isinstance(event, UpdateReceived) and not self.established:
            raise Finding("UPDATE delivered before Established")

    def _check_output(self, out: bytes) -> None:
        """What we write must be whole, valid messages our own decoder takes."""
        try:
            frames, rest = split_messages(out, 4096)
        except WireError as exc:
            raise Finding(f"we wrote a bad header: {exc!r}") from exc
        if rest:
            raise Finding(f"we wrote a partial message: {rest!r}")
        for frame in frames:
            try:
                msg = decode_message(frame)
            except WireError as exc:
                raise Finding(f"we wrote a message we cannot decode: {exc!r}") from exc
            if isinstance(msg, Notification) and not self.session.closed:
                raise Finding("NOTIFICATION sent but the session is still open")
            self.sent.append(frame)


def fuzz_session(data: bytes) -> None:
    """A Session (fake clock) after a valid OPEN exchange, or from OpenSent, fed `data`."""
    if not data:
        return
    flags, stream = data[0], data[1:]
    ours, theirs = session_settings(flags)
    session = Session(ours, outgoing=bool(flags & Flags.IBGP))
    check = _Checker(session)
    now = 1000.0
    session.start(now)
    check.drain()
    if not flags & Flags.NOT_ESTABLISHED:
        peer_open: Open = build_open(theirs)
        session.receive_data(encode_message(peer_open) + encode_keepalive(), now)
        check.drain()
        if session.state is not State.ESTABLISHED:
            raise Finding(f"a valid OPEN exchange ended in {session.state}: {session.info}")
    for piece in _chunks(stream, flags):
        now += 0.5
        session.receive_data(piece, now)
        check.drain()
        deadline = session.next_timer()
        if deadline is not None and deadline <= now:
            session.handle_timer(now)
            check.drain()
        if session.closed:
            break
    # Time passes with no input: the timers must bring the session down (or keep it alive
    # with KEEPALIVEs), never raise.
    for _ in range(4):
        deadline = session.next_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        session.handle_timer(now)
        check.drain()
    if session.closed and not check.down and check.established:
        raise Finding("an established session closed without SessionDown")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": fuzz_decoder,
    "session": fuzz_session,
}
