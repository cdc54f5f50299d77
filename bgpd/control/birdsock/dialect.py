"""What BIRD 1.6 (calico-node's BIRD) and BIRD 2 print differently, as data and small pure
functions; the layouts are BIRD's own format strings (nest/proto.c `proto_cmd_show`,
nest/rt-table.c / nest/rt-show.c `rt_show_rte`, nest/cmds.c, sysdep/unix/timer.c).

Calico's parsers (calicoctl `node status`, calico-node's probes) expect BIRD 1.6: its
`show protocols` heading is lower case, BIRD 2's is capitalised, which those parsers refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from bgpd import __version__

# timeformat's short forms switch from the time of day to the date past this age.
SHORT_LIMIT = 20 * 3600


@dataclass(frozen=True, slots=True)
class Dialect:
    """One BIRD version's output. `bird_version` is the version BIRD clients and Calico
    see; bgpd's own follows it after a '+', as Calico's BIRD fork marks its builds."""

    name: str
    bird_version: str
    # `show protocols`: heading and row format (name, proto, table, state, since, info).
    protocols_heading: str
    protocols_row: str
    # BGP protocols' table column (BIRD 2 shows no main table for BGP).
    bgp_table: str | None
    # Route lines: prefix column width; whether a "Table X:" line leads each table and the
    # next hop goes on a line of its own.
    prefix_width: int
    table_blocks: bool
    # Milliseconds in short times ("%T.%3f") and long ones ("%F %T.%3f").
    millis: bool
    hostname_line: bool
    # The word for what graceful-restart recovery waits for.
    recovery_unit: str
    # `Type:` in `show route all` names the cast (BIRD 1.6: "BGP unicast univ").
    type_cast: bool
    not_found: str

    @property
    def version(self) -> str:
        return f"{self.bird_version}+pybgpd{__version__}"

    def table(self, family: str, both: bool) -> str:
        """The routing table of a family: BIRD 1.6 has one per daemon ("master", bird and
        bird6 each), BIRD 2 one per family."""
        if self.name == "1.6":
            return "master"
        return "master4" if family == "ipv4" else "master6"

    def short_time(self, when: float, now: float, tz: tzinfo | None = None) -> str:
        """timeformat route/protocol: "%T" (".%3f" in BIRD 2) within 20 hours, else "%F"."""
        moment = datetime.fromtimestamp(when, tz)
        if now - when >= SHORT_LIMIT:
            return moment.strftime("%Y-%m-%d")
        text = moment.strftime("%H:%M:%S")
        if self.millis:
            text += f".{moment.microsecond // 1000:03d}"
        return text

    def long_time(self, when: float, tz: tzinfo | None = None) -> str:
        """timeformat base: "%F %T" ("%F %T.%3f" in BIRD 2)."""
        moment = datetime.fromtimestamp(when, tz)
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
        if self.millis:
            text += f".{moment.microsecond // 1000:03d}"
        return text

    def seconds(self, value: float) -> str:
        """A timer's seconds: whole in BIRD 1.6 ("%d"), to the millisecond in BIRD 2 ("%t")."""
        if self.millis:
            return f"{value:.3f}"
        return str(int(value))

    def memory_lines(self, rows: list[tuple[str, int]], total: int) -> list[str]:
        """`show memory` body lines (after "BIRD memory usage")."""
        if self.name == "1.6":
            return [f"{label:<17} {_size16(v)}" for label, v in [*rows, ("Total:", total)]]
        # BIRD 2 splits effective from allocator overhead; bgpd knows no overhead per part,
        # so the parts show 0 and the total's overhead is what the process holds beyond them.
        effective = sum(v for _, v in rows)
        lines = [f"{'':<17} Effective    Overhead"]
        lines += [f"{label:<17} {_size2(v)}   {_size2(0)}" for label, v in rows]
        lines.append(f"{'Total:':<17} {_size2(effective)}   {_size2(max(0, total - effective))}")
        return lines


def _size16(value: int) -> str:
    """nest/cmds.c print_size (1.6): "%4u %cB", scaled while >= 10000."""
    units = " kMG"
    i = 0
    while value >= 10000 and i < 3:
        value = (value + 512) // 1024
        i += 1
    return f"{value:>4} {units[i]}B"


def _size2(value: int) -> str:
    """nest/cmds.c print_size (2.x): "% 4u.%1u % 1cB", one decimal."""
    units = " kMGT"
    tenths = value * 10
    i = 0
    while tenths >= 10000 * 10 and i < 4:
        tenths = (tenths + 512) // 1024
        i += 1
    return f"{tenths // 10:>4}.{tenths % 10} {units[i]}B"


BIRD16 = Dialect(
    name="1.6",
    bird_version="1.6.8",
    protocols_heading="name     proto    table    state  since       info",
    protocols_row="{:<8} {:<8} {:<8} {:<5}  {:<10}  {}",
    bgp_table="master",
    prefix_width=18,
    table_blocks=False,
    millis=False,
    hostname_line=False,
    recovery_unit="protocols",
    type_cast=True,
    not_found="Network not in table",
)

BIRD2 = Dialect(
    name="2",
    bird_version="2.0.12",
    protocols_heading="{:<10} {:<10} {:<10} {:<6} {:<12}  {}".format(
        "Name", "Proto", "Table", "State", "Since", "Info"
    ),
    protocols_row="{:<10} {:<10} {:<10} {:<6} {:<12}  {}",
    bgp_table=None,
    prefix_width=20,
    table_blocks=True,
    millis=True,
    hostname_line=True,
    recovery_unit="channels",
    type_cast=False,
    not_found="Network not found",
)

DIALECTS = {"1.6": BIRD16, "2": BIRD2}
