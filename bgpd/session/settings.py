"""What one configured BGP neighbor looks like to the session machine (BIRD's `protocol bgp`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from bgpd.wire.family import Family
from bgpd.wire.messages import ADD_PATH_BOTH, ADD_PATH_RECEIVE, ADD_PATH_SEND

MAX_PASSWORD_LEN = 80  # TCP_MD5SIG_MAXKEYLEN
MAX_RESTART_TIME = 4095  # 12 bits in the graceful restart capability (RFC 4724 3)
DIRECT_TTL = 1  # eBGP without multihop: the neighbor must be one hop away
MULTIHOP_TTL = 64  # BIRD's TTL for `multihop;` without a number, and for iBGP
GTSM_TTL = 255  # RFC 5082: send with the maximum TTL


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """One neighbor. Times are seconds.

    `hold_time` is what we offer in OPEN (BIRD's default 240; 0 disables keepalives once the
    peer agrees). `keepalive_time` None means a third of the negotiated hold time.
    `connect_delay_time` is how long after a start we wait before the first outgoing
    connect (BIRD `connect delay time`); `connect_retry_time` is the pause between
    attempts. After a session fails with an error the peer waits `error_wait_time[0]`,
    doubling per consecutive error up to `error_wait_time[1]`, and forgets past errors after
    `error_forget_time` (BIRD `error wait time` / `error forget time`).
    `ttl_security` is the GTSM hop count (RFC 5082): we send with TTL 255 and drop segments
    that arrive with less than 256 - hops. `multihop` is the outgoing TTL otherwise; None
    follows BIRD: iBGP multihop (64), eBGP direct (1).
    `add_path` pairs families with ADD_PATH_RECEIVE / ADD_PATH_SEND / ADD_PATH_BOTH; an
    empty tuple sends no ADD-PATH capability.
    `max_prefixes` caps the prefixes accepted from the neighbor (None: no limit): past 75% a
    warning, past the maximum a Cease 1 (RFC 4486) and `max_prefixes_restart` seconds in
    Idle before the session may come back; `max_prefixes_warning_only` only logs.
    """

    name: str
    peer_address: str
    peer_as: int
    local_as: int
    router_id: int
    peer_port: int = 179
    local_address: str | None = None
    passive: bool = False
    hold_time: int = 240
    keepalive_time: int | None = None
    connect_delay_time: float = 2.0
    connect_retry_time: float = 5.0
    error_wait_time: tuple[float, float] = (5.0, 30.0)
    error_forget_time: float = 300.0
    # Never shown: not in repr (nor in a traceback's or a log line's rendering of it).
    password: str | None = field(default=None, repr=False)
    ttl_security: int | None = None
    multihop: int | None = None
    families: frozenset[Family] = field(default_factory=lambda: frozenset(Family))
    graceful_restart_time: int | None = 120
    graceful_restart_restarting: bool = False
    add_path: tuple[tuple[Family, int], ...] = ()
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    extended_message: bool = True
    four_octet_as: bool = True
    max_prefixes: int | None = None
    max_prefixes_warning_only: bool = False
    max_prefixes_restart: float = 60.0

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.peer_address)
        if self.local_address is not None:
            ipaddress.ip_address(self.local_address)
        if not 0 < self.peer_as < 2**32 or not 0 < self.local_as < 2**32:
            raise ValueError("AS numbers must be in 1..4294967295")
        if not self.four_octet_as and (self.peer_as > 0xFFFF or self.local_as > 0xFFFF):
            raise ValueError("a 4-octet AS needs the four_octet_as capability")
        if not 0 <= self.router_id < 2**32:
            raise ValueError("router_id must be a 32-bit value")
        if not 0 < self.peer_port < 65536:
            raise ValueError("peer_port must be in 1..65535")
        if self.hold_time != 0 and not 3 <= self.hold_time <= 65535:
            raise ValueError("hold_time must be 0 or 3..65535 (RFC 4271 4.2)")
        if self.keepalive_time is not None and self.keepalive_time < 1:
            raise ValueError("keepalive_time must be at least 1")
        if self.connect_retry_time <= 0 or self.connect_delay_time < 0:
            raise ValueError("connect times must be positive")
        low, high = self.error_wait_time
        if not 0 <= low <= high:
            raise ValueError("error_wait_time must be (min, max) with 0 <= min <= max")
        if self.password is not None and not 0 < len(self.password.encode()) <= MAX_PASSWORD_LEN:
            raise ValueError(f"password must be 1..{MAX_PASSWORD_LEN} octets")
        if self.ttl_security is not None and not 1 <= self.ttl_security <= 254:
            raise ValueError("ttl_security must be a hop count in 1..254")
        if self.multihop is not None and not 1 <= self.multihop <= 255:
            raise ValueError("multihop must be a TTL in 1..255")
        if self.graceful_restart_time is not None and not (
            0 <= self.graceful_restart_time <= MAX_RESTART_TIME
        ):
            raise ValueError(f"graceful_restart_time must be in 0..{MAX_RESTART_TIME}")
        if self.max_prefixes is not None and self.max_prefixes < 1:
            raise ValueError("max_prefixes must be at least 1")
        if self.max_prefixes_restart < 0:
            raise ValueError("max_prefixes_restart must not be negative")
        if not self.families:
            raise ValueError("at least one family is needed")
        for family, mode in self.add_path:
            if family not in self.families:
                raise ValueError(f"add_path names {family}, which is not negotiated")
            if mode not in (ADD_PATH_RECEIVE, ADD_PATH_SEND, ADD_PATH_BOTH):
                raise ValueError(f"bad add_path mode {mode}")

    @property
    def is_ibgp(self) -> bool:
        return self.peer_as == self.local_as

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_address(self.peer_address).version

    @property
    def outgoing_ttl(self) -> int:
        """The TTL (IPv6: hop limit) our segments leave with."""
        if self.ttl_security is not None:
            return GTSM_TTL
        if self.multihop is not None:
            return self.multihop
        return MULTIHOP_TTL if self.is_ibgp else DIRECT_TTL

    @property
    def min_ttl(self) -> int | None:
        """The lowest TTL accepted on arrival (IP_MINTTL), or None without GTSM."""
        if self.ttl_security is None:
            return None
        return GTSM_TTL + 1 - self.ttl_security
