"""One BIRD CLI connection, without I/O: `hello()` is the greeting, `command(line, now)` the
reply to one command line, both as the bytes to write.

What bgpd's state looks like in BIRD's terms:
- Each BGP session is a BGP protocol named as confd names BIRD's (`Mesh_10_0_0_2`,
  `Global_...`, `Node_...`), its state `start` until Established (`up`), its info BIRD's
  "%-14s" BGP state and last error ("Active        Socket: Connection refused").
- `kernelN` is bgpd's kernel side (present when bgpd runs it: learning Felix's routes,
  programming the FIB); `staticN` holds the routes this node originates (its blocks, as
  Calico's BIRD has them as static blackholes). N counts families on a socket serving both.
- A route's time is its protocol's last state change: bgpd keeps no time per route.
- A next hop's interface is shown only where bgpd knows it (routes learned from the kernel).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from fnmatch import fnmatchcase

from bgpd.bfd.status import format_bird_sessions
from bgpd.control.bfd import NOT_RUNNING
from bgpd.control.birdsock import replies as rc
from bgpd.control.birdsock.commands import (
    KEYWORDS,
    CliError,
    Command,
    Denied,
    ParseFailure,
    Restrict,
    Rule,
    ShowBfdSessions,
    ShowMemory,
    ShowProtocols,
    ShowRoute,
    ShowStatus,
    Token,
    Unexpected,
    parse,
)
from bgpd.control.birdsock.dialect import Dialect
from bgpd.control.birdsock.replies import ReplyWriter
from bgpd.control.birdsock.view import BirdView
from bgpd.status.records import (
    PEER_TYPES,
    ExportedRoute,
    PeerStatus,
    ProtocolDetail,
    RouteEntry,
    bird_error,
)

# BIRD's default preferences: static 200, BGP 100, kernel 10.
STATIC_PREF, BGP_PREF, KERNEL_PREF = 200, 100, 10
FAMILY_ORDER = ("ipv4", "ipv6")
DESCRIPTION = "Connection to BGP peer"
# BIRD's longest command line (CLI_RX_BUF_SIZE less the newline).
MAX_COMMAND = 1023
# Networks of a route listing per piece of the reply.
SLICE = 256

# rta_show's route source names for the routes that are not BGP's.
_LOCAL_TYPES = {"kernel": "inherit", "local": "static"}


@dataclass(frozen=True, slots=True)
class _Proto:
    """One protocol as `show protocols` lists it. `source` is the RouteEntry.from_peer its
    routes carry ("local", "kernel" or the peer's name)."""

    name: str
    proto: str
    family: str
    state: str
    since: float | None
    info: str
    source: str
    detail: ProtocolDetail | None = None


class BirdCli:
    """The state of one connection: the reply stream (continuation codes carry over) and
    whether `restrict` was given. `families` are what this socket answers for: ("ipv4",)
    as bird.ctl, ("ipv6",) as bird6.ctl, or both."""

    def __init__(
        self,
        view: BirdView,
        dialect: Dialect,
        families: Iterable[str],
        *,
        tz: tzinfo | None = None,
    ) -> None:
        self.view = view
        self.dialect = dialect
        self.families = tuple(f for f in FAMILY_ORDER if f in set(families))
        if not self.families:
            raise ValueError("a BIRD socket needs at least one family")
        self.tz = tz
        self.restricted = False
        self.out = ReplyWriter()

    def hello(self) -> bytes:
        self.out.last(rc.HELLO, f"BIRD {self.dialect.version} ready.")
        return self.out.take()

    def too_long(self) -> bytes:
        self.out.last(rc.COMMAND_TOO_LONG, "Command too long")
        return self.out.take()

    def command(self, line: str, now: float) -> bytes:
        """The reply to one command line (without its newline); `now` is wall-clock time."""
        return b"".join(self.replies(line, now))

    def replies(self, line: str, now: float) -> Iterator[bytes]:
        """The reply in pieces: a long route listing comes `SLICE` networks at a time, so
        the caller can let the event loop run between them."""
        if len(line) > MAX_COMMAND:
            yield self.too_long()
            return
        try:
            steps = self._run(parse(line), now)
            if steps is not None:
                for _ in steps:
                    yield self.out.take()
        except ParseFailure as exc:
            self.out.last(rc.PARSE_ERROR, self._syntax_error(exc.where))
        except Rule as exc:
            self.out.last(rc.PARSE_ERROR, str(exc))
        except CliError as exc:
            self.out.last(exc.code, exc.text)
        yield self.out.take()

    # --- dispatch -------------------------------------------------------------------------

    def _run(self, cmd: Command, now: float) -> Iterator[None] | None:
        if isinstance(cmd, ShowRoute):
            return self._show_route(cmd, now)
        if isinstance(cmd, Restrict):
            self.restricted = True
            self.out.last(rc.RESTRICTED, "Access restricted")
        elif isinstance(cmd, Denied):
            self.out.last(rc.ACCESS_DENIED, "Access denied")
        elif isinstance(cmd, ShowStatus):
            self._show_status(now)
        elif isinstance(cmd, ShowMemory):
            self._show_memory()
        elif isinstance(cmd, ShowProtocols):
            self._show_protocols(cmd, now)
        elif isinstance(cmd, ShowBfdSessions):
            self._show_bfd(now)
        return None

    # --- errors ---------------------------------------------------------------------------

    def _token_name(self, token: Token | None, symbols: Iterable[str] = ()) -> str:
        """Bison's name for a token, as BIRD 2 words its syntax errors."""
        if token is None:
            return "END"
        if token.kind == "word":
            if token.value in KEYWORDS:
                return token.value.upper()
            return "CF_SYM_KNOWN" if token.value in symbols else "CF_SYM_UNDEFINED"
        if token.kind in ("ip", "prefix"):
            return "IP6" if ":" in token.value else "IP4"
        return {"num": "NUM", "text": "TEXT"}.get(token.kind, f"'{token.value}'")

    def _syntax_error(self, where: Unexpected, symbols: Iterable[str] = ()) -> str:
        # BIRD 1.6's parser says only "syntax error"; BIRD 2's names the token.
        if self.dialect.name == "1.6":
            return "syntax error"
        text = f"syntax error, unexpected {self._token_name(where.token, symbols)}"
        if where.expecting:
            text += ", expecting " + " or ".join(where.expecting)
        return text

    def _undefined(self, name: str, expecting: tuple[str, ...], what: str, code: int) -> None:
        """`name` is not a protocol (or table). BIRD 1.6 parses it as a symbol and says
        what it is not (`code`); BIRD 2's grammar refuses an undefined symbol outright."""
        if self.dialect.name != "1.6" and name not in self._symbols():
            raise CliError(
                rc.PARSE_ERROR,
                self._syntax_error(Unexpected(Token("word", name), expecting)),
            )
        raise CliError(code, f"{name} is not a {what}")

    def _symbols(self) -> set[str]:
        return {p.name for p in self._protocols(0.0)} | set(self._tables())

    # --- show status ----------------------------------------------------------------------

    def _show_status(self, now: float) -> None:
        d, out = self.dialect, self.out
        status = self.view.status()
        facts = self.view.bird_facts()
        out.more(rc.VERSION, f"BIRD {d.version}")
        out.more(rc.UPTIME, f"Router ID is {status.router_id}")
        if d.hostname_line:
            out.more(rc.UPTIME, f"Hostname is {facts.hostname}")
        out.more(rc.UPTIME, f"Current server time is {d.long_time(now, self.tz)}")
        out.more(rc.UPTIME, f"Last reboot on {d.long_time(status.started, self.tz)}")
        out.more(rc.UPTIME, f"Last reconfiguration on {d.long_time(facts.reconfigured, self.tz)}")
        gr = facts.restart
        if gr is not None:
            out.more(rc.GR_STATUS, "Graceful restart recovery in progress")
            out.more(rc.GR_STATUS, f"  Waiting for {gr.waiting} {d.recovery_unit} to recover")
            out.more(
                rc.GR_STATUS, f"  Wait timer is {d.seconds(gr.remaining)}/{int(gr.wait)}"
            )
        out.last(rc.STATUS, "Daemon is up and running")

    # --- show memory ----------------------------------------------------------------------

    def _show_memory(self) -> None:
        mem = self.view.bird_facts().memory
        rows = [
            ("Routing tables:", mem.routing_tables),
            ("Route attributes:", mem.route_attributes),
        ]
        if self.dialect.name == "1.6":
            rows.append(("ROA tables:", 0))  # bgpd keeps no ROA tables
        rows.append(("Protocols:", mem.protocols))
        self.out.more(rc.MEMORY, "BIRD memory usage")
        for line in self.dialect.memory_lines(rows, mem.total):
            self.out.more(rc.MEMORY, line)
        self.out.last(rc.OK)

    # --- protocols ------------------------------------------------------------------------

    def _tables(self) -> dict[str, tuple[str, ...]]:
        """Table name -> the families it holds, on this socket."""
        tables: dict[str, tuple[str, ...]] = {}
        for family in self.families:
            name = self.dialect.table(family, len(self.families) > 1)
            tables[name] = (*tables.get(name, ()), family)
        return tables

    def _protocols(self, now: float) -> list[_Proto]:
        status = self.view.status()
        facts = self.view.bird_facts()
        both = len(self.families) > 1
        local: list[_Proto] = []
        kinds = (("kernel", "Kernel", "kernel"), ("static", "Static", "local"))
        for prefix, proto, source in kinds:
            if prefix == "kernel" and not facts.kernel:
                continue
            for i, family in enumerate(self.families, start=1):
                local.append(
                    _Proto(f"{prefix}{i}", proto, family, "up", status.started, "", source)
                )
        if not both:
            local = [p for p in local if p.family == self.families[0]]
        details = {d.peer.name: d for d in self.view.protocols()}
        peers = sorted(
            (p for p in status.peers if p.family in self.families), key=_peer_order
        )
        bgp = [
            _Proto(
                p.name, "BGP", p.family, bird_state(p), p.since, bgp_status(p), p.name,
                details.get(p.name),
            )
            for p in peers
        ]
        kernel_first = [p for p in local if p.proto == "Kernel"]
        statics = [p for p in local if p.proto == "Static"]
        return kernel_first + statics + bgp

    def _show_protocols(self, cmd: ShowProtocols, now: float) -> None:
        protos = self._protocols(now)
        if cmd.name is not None:
            chosen = [p for p in protos if p.name == cmd.name]
            if not chosen:
                expecting = ("END", "CF_SYM_KNOWN", "TEXT") + (() if cmd.full else ("ALL",))
                self._undefined(cmd.name, expecting, "protocol", rc.INVALID_SYMBOL)
        elif cmd.pattern is not None:
            chosen = [p for p in protos if bird_patmatch(cmd.pattern, p.name)]
            if not chosen:
                raise CliError(rc.NO_MATCH, "No protocols match")
        else:
            chosen = protos
            if not chosen:
                raise CliError(rc.NO_MATCH, "No protocols match")
        routes = self.view.routes() if cmd.full else []
        d, out = self.dialect, self.out
        out.more(rc.PROTOCOLS_HEADING, d.protocols_heading)
        for p in chosen:
            since = d.short_time(p.since, now, self.tz) if p.since is not None else ""
            table = d.table(p.family, len(self.families) > 1)
            if p.proto == "BGP" and d.bgp_table is None:
                table = "---"
            out.more(rc.PROTOCOLS, d.protocols_row.format(p.name, p.proto, table, p.state,
                                                         since, p.info))
            if cmd.full:
                for line in self._details(p, routes):
                    out.more(rc.PROTOCOL_DETAILS, line)
                out.more(rc.PROTOCOL_DETAILS, "")
        out.last(rc.OK)

    def _details(self, p: _Proto, routes: Sequence[RouteEntry]) -> list[str]:
        mine = [r for r in routes if r.from_peer == p.source and r.family == p.family]
        imported = len(mine)
        preferred = sum(1 for r in mine if r.best)
        exported = p.detail.peer.routes_advertised if p.detail is not None else 0
        counts = f"{imported} imported, {exported} exported, {preferred} preferred"
        pref = {"Kernel": KERNEL_PREF, "Static": STATIC_PREF}.get(p.proto, BGP_PREF)
        d = p.detail
        if self.dialect.name == "1.6":
            lines = [] if d is None else [f"  Description:    {DESCRIPTION}"]
            lines += [
                f"  Preference:     {pref}",
                "  Input filter:   (unnamed)" if d is not None else "  Input filter:   ACCEPT",
                "  Output filter:  (unnamed)" if d is not None else "  Output filter:  ACCEPT",
                f"  Routes:         {counts}",
            ]
            if d is not None:
                lines += self._bgp_details(d)
            return lines
        lines = [] if d is None else [f"  Description:    {DESCRIPTION}"]
        if d is not None:
            lines += self._bgp_details(d)
        up = d is None or d.peer.bgp_state == "Established"
        lines += [
            f"  Channel {p.family}",
            f"    State:          {'UP' if up else 'DOWN'}",
            f"    Table:          {self.dialect.table(p.family, True)}",
            f"    Preference:     {pref}",
            f"    Input filter:   {'(unnamed)' if d is not None else 'ACCEPT'}",
            f"    Output filter:  {'(unnamed)' if d is not None else 'ACCEPT'}",
        ]
        if up:
            lines.append(f"    Routes:         {counts}")
        return lines

    def _bgp_details(self, d: ProtocolDetail) -> list[str]:
        p = d.peer
        bird2 = self.dialect.name != "1.6"
        lines = [
            f"  BGP state:          {bgp_state_dsc(p)}",
            f"    Neighbor address: {p.address}",
        ]
        if bird2 and p.port != 179:
            lines.append(f"    Neighbor port:    {p.port}")
        lines.append(f"    Neighbor AS:      {p.peer_as}")
        if bird2:
            lines.append(f"    Local AS:         {p.local_as}")
        if p.bgp_state == "Established":
            if d.neighbor_id is not None:
                lines.append(f"    Neighbor ID:      {d.neighbor_id}")
            session = "internal" if p.peer_as == p.local_as else "external"
            lines.append(f"    Session:          {session}")
            if d.source_address is not None:
                lines.append(f"    Source address:   {d.source_address}")
            # bgpd's control API carries the negotiated times, not the timers' progress.
            lines.append(f"    Hold timer:       -/{d.hold_time}")
            lines.append(f"    Keepalive timer:  -/{d.keepalive_time}")
        elif p.info:
            lines.append(f"    Last error:       {bird_error(p.info)}")
        return lines

    # --- routes ---------------------------------------------------------------------------

    def _show_route(self, cmd: ShowRoute, now: float) -> Iterator[None]:
        self._table_started = False
        self._tables_printed = 0
        protos = {p.name: p for p in self._protocols(now)}
        tables = self._tables()
        families: tuple[str, ...] = self.families
        if cmd.table is not None:
            if cmd.table not in tables:
                self._undefined(cmd.table, ("CF_SYM_KNOWN", "ALL"), "table", rc.PARSE_ERROR)
            families = tables[cmd.table]
        shown_by: _Proto | None = None
        if cmd.protocol is not None:
            shown_by = protos.get(cmd.protocol)
            if shown_by is None:
                self._undefined(cmd.protocol, ("CF_SYM_KNOWN",), "protocol", rc.PARSE_ERROR)
            assert shown_by is not None
            if cmd.table is None:
                families = (shown_by.family,)
        exported: dict[str, ExportedRoute] | None = None
        if cmd.export is not None:
            target = protos.get(cmd.export)
            if target is None:
                self._undefined(cmd.export, ("CF_SYM_KNOWN",), "protocol", rc.PARSE_ERROR)
            assert target is not None
            if target.proto != "BGP":
                raise CliError(
                    rc.PARSE_ERROR,
                    f"syntax error, 'show route export {target.name}' is not implemented by "
                    "bgpd",
                )
            exported = {r.prefix: r for r in self.view.exported(target.name)}
            if cmd.table is None:
                families = (target.family,)
        if cmd.prefix is not None:
            family = "ipv6" if ":" in cmd.prefix else "ipv4"
            families = tuple(f for f in families if f == family)
        by_family = self._select(cmd, families, exported)
        peers = {p.name: p for p in self.view.status().peers}
        names = {p.source: p.name for p in protos.values() if p.family in families}
        # Local protocols are named per family; pick by the route's family.
        local = {(p.source, p.family): p.name for p in protos.values() if p.proto != "BGP"}
        since = {p.source: p.since for p in protos.values()}
        if cmd.prefix is not None:
            self._routes_at(cmd, by_family, exported, shown_by, peers, names, local, since, now)
        else:
            yield from self._routes_walk(
                cmd, by_family, exported, shown_by, peers, names, local, since, now
            )

    def _select(
        self,
        cmd: ShowRoute,
        families: tuple[str, ...],
        exported: dict[str, ExportedRoute] | None,
    ) -> dict[str, list[list[RouteEntry]]]:
        """The table's routes grouped by network (best first), per family in order."""
        if cmd.prefix is not None:
            target: str | None = cmd.prefix
            if cmd.longest:
                target = self._longest(cmd.prefix, exported)
            entries = self.view.routes(target) if target is not None else []
        else:
            entries = self.view.routes()
        nets: dict[str, dict[str, list[RouteEntry]]] = {f: {} for f in families}
        for r in entries:
            if r.family in nets:
                nets[r.family].setdefault(r.prefix, []).append(r)
        out: dict[str, list[list[RouteEntry]]] = {}
        for family in families:
            groups = [sorted(g, key=lambda r: not r.best) for g in nets[family].values()]
            out[family] = sorted(groups, key=lambda g: _net_key(g[0].prefix))
        return out

    def _longest(self, prefix: str, exported: dict[str, ExportedRoute] | None) -> str | None:
        if exported is None:
            return self.view.longest_match(prefix)
        net = ipaddress.ip_network(prefix)
        covering = [
            n for n in map(ipaddress.ip_network, exported)
            if n.version == net.version and net.subnet_of(n)  # type: ignore[arg-type]
        ]
        return str(max(covering, key=lambda n: n.prefixlen)) if covering else None

    def _shown(
        self,
        net: list[RouteEntry],
        cmd: ShowRoute,
        exported: dict[str, ExportedRoute] | None,
        shown_by: _Proto | None,
    ) -> list[RouteEntry]:
        """The routes of one network that the command shows."""
        if exported is not None:
            sent = exported.get(net[0].prefix)
            if sent is None:
                return []
            best = next((r for r in net if r.best), net[0])
            return [_as_exported(best, sent)]
        out = []
        for r in net:
            if shown_by is None or (r.from_peer == shown_by.source):
                out.append(r)
            if cmd.primary:
                break
        return out

    def _routes_at(
        self, cmd: ShowRoute, by_family: dict[str, list[list[RouteEntry]]],
        exported: dict[str, ExportedRoute] | None, shown_by: _Proto | None,
        peers: dict[str, PeerStatus], names: dict[str, str],
        local: dict[tuple[str, str], str], since: dict[str, float | None], now: float,
    ) -> None:
        """One network (`show route PREFIX` / `for ADDR`): its routes, or BIRD's 8001."""
        total = 0
        for family, nets in by_family.items():
            if self.dialect.table_blocks:
                self._table_started = False
            for net in nets:
                total += len(net)
                if cmd.stats == 2:
                    continue
                self._print_net(family, net, self._shown(net, cmd, exported, shown_by), cmd,
                                peers, names, local, since, now)
        if total:
            self.out.last(rc.OK)
        else:
            self.out.last(rc.NOT_FOUND, self.dialect.not_found)

    def _routes_walk(
        self, cmd: ShowRoute, by_family: dict[str, list[list[RouteEntry]]],
        exported: dict[str, ExportedRoute] | None, shown_by: _Proto | None,
        peers: dict[str, PeerStatus], names: dict[str, str],
        local: dict[tuple[str, str], str], since: dict[str, float | None], now: float,
    ) -> Iterator[None]:
        """Every network of each table, then the counts if asked."""
        out, d = self.out, self.dialect
        shown = routes = networks = 0
        printed_table = False
        for family, nets in by_family.items():
            self._table_started = False
            t_shown = t_routes = t_nets = 0
            for i, net in enumerate(nets, start=1):
                if i % SLICE == 0:
                    yield None
                chosen = self._shown(net, cmd, exported, shown_by)
                t_routes += len(net)
                t_nets += 1
                t_shown += len(chosen)
                if cmd.stats != 2:
                    self._print_net(family, net, chosen, cmd, peers, names, local, since, now)
            printed_table = printed_table or self._table_started
            if cmd.stats and d.table_blocks:
                if cmd.stats == 1 and not self._table_started:
                    self._table_line(family)
                    printed_table = True
                out.more(
                    rc.ROUTES,
                    f"{t_shown} of {t_routes} routes for {t_nets} networks in table "
                    f"{d.table(family, True)}",
                )
            shown, routes, networks = shown + t_shown, routes + t_routes, networks + t_nets
        if cmd.stats and not d.table_blocks:
            out.last(rc.ROUTE_COUNT, f"{shown} of {routes} routes for {networks} networks")
        elif cmd.stats and len(by_family) > 1:
            if printed_table:
                out.more(rc.ROUTES, "")
            out.last(
                rc.ROUTE_COUNT,
                f"Total: {shown} of {routes} routes for {networks} networks in "
                f"{len(by_family)} tables",
            )
        else:
            out.last(rc.OK)

    _table_started = False
    _tables_printed = 0

    def _table_line(self, family: str) -> None:
        if self._tables_printed:
            self.out.more(rc.ROUTES, "")
        self.out.more(rc.ROUTES, f"Table {self.dialect.table(family, True)}:")
        self._table_started = True
        self._tables_printed += 1

    def _print_net(
        self, family: str, net: list[RouteEntry], chosen: list[RouteEntry], cmd: ShowRoute,
        peers: dict[str, PeerStatus], names: dict[str, str],
        local: dict[tuple[str, str], str], since: dict[str, float | None], now: float,
    ) -> None:
        d, out = self.dialect, self.out
        first = True
        for r in chosen:
            if d.table_blocks and not self._table_started:
                self._table_line(family)
            proto = local.get((r.from_peer, r.family)) or names.get(r.from_peer, r.from_peer)
            when = since.get(r.from_peer)
            tm = d.short_time(when, now, self.tz) if when is not None else ""
            peer = peers.get(r.from_peer)
            frm = ""
            if peer is not None and r.next_hop not in (peer.address, "self"):
                frm = f" from {peer.address}"
            ia = r.prefix if first else ""
            first = False
            mark = " *" if r.best else ""
            info = route_info(r, peer is not None)
            dest, hop = _destination(r)
            tail = f"[{proto} {tm}{frm}]{mark}{info}"
            if d.table_blocks:
                out.more(rc.ROUTES, f"{ia:<{d.prefix_width}} {dest} {tail}")
                if hop:
                    out.more(rc.ROUTES, "\t" + hop)
            else:
                out.more(rc.ROUTES, f"{ia:<{d.prefix_width}} {hop or dest} {tail}")
            if cmd.full:
                kind = "BGP" if peer is not None else _LOCAL_TYPES[r.from_peer]
                cast = " unicast" if d.type_cast else ""
                out.more(rc.ROUTE_DETAILS, f"\tType: {kind}{cast} univ")
                if peer is not None:
                    for line in bgp_attribute_lines(r):
                        out.more(rc.ROUTE_ATTRIBUTES, "\t" + line)

    # --- bfd ------------------------------------------------------------------------------

    def _show_bfd(self, now: float) -> None:
        # A daemon that does not implement the view runs no BFD: BIRD's words for that.
        getter = getattr(self.view, "bfd_sessions", None)
        records = getter() if callable(getter) else None
        if records is None:
            raise CliError(rc.PARSE_ERROR, NOT_RUNNING)
        version = {"ipv4": 4, "ipv6": 6}
        wanted = {version[f] for f in self.families}
        mine = [r for r in records if ipaddress.ip_address(r.address).version in wanted]
        for line in format_bird_sessions(mine, now, self.tz).splitlines():
            self.out.more(rc.BFD_SESSIONS, line)
        self.out.last(rc.OK)


# --- what BIRD calls things ---------------------------------------------------------------


def bird_state(peer: PeerStatus) -> str:
    """proto_state_name: BGP is `up` once Established and `start` while it connects."""
    return "up" if peer.bgp_state == "Established" else "start"


def bgp_state_dsc(peer: PeerStatus) -> str:
    """bgp_state_dsc: the BGP state, "Passive" for a passive session waiting."""
    if peer.passive and peer.bgp_state in ("Idle", "Active"):
        return "Passive"
    return peer.bgp_state


def bgp_status(peer: PeerStatus) -> str:
    """bgp_get_status: "%-14s" of the state, then the last error with its class. BIRD
    clears the last error when the session is established."""
    error = "" if peer.bgp_state == "Established" else bird_error(peer.info)
    return f"{bgp_state_dsc(peer):<14}{error}"


def bird_patmatch(pattern: str, name: str) -> bool:
    """BIRD's patmatch: '*' any run, '?' one character, nothing else special."""
    escaped = re.sub(r"([\[\]])", r"[\1]", pattern)
    return fnmatchcase(name, escaped)


def route_info(r: RouteEntry, bgp: bool) -> str:
    """The route line's tail: " (preference)" and, for BGP (bgp_get_route_info), 's' for a
    stale route and "[AS<origin AS><origin>]"."""
    if not bgp:
        return f" ({KERNEL_PREF if r.from_peer == 'kernel' else STATIC_PREF})"
    stale = "s" if r.stale else ""
    last = r.as_path.split()[-1] if r.as_path else ""
    origin_as = f"AS{last}" if last.isdigit() else ""
    origin = {"IGP": "i", "EGP": "e"}.get(r.origin, "?")
    return f" ({BGP_PREF}{stale}) [{origin_as}{origin}]"


def _destination(r: RouteEntry) -> tuple[str, str]:
    """(BIRD 2's destination word, the next hop text) of a route."""
    if r.from_peer == "local":
        return "blackhole", ""
    if r.next_hop in ("self", ""):
        return "unicast", f"dev {r.interface}" if r.interface else ""
    hop = f"via {r.next_hop}"
    if r.interface:
        hop += f" on {r.interface}"
    return "unicast", hop


def bgp_attribute_lines(r: RouteEntry) -> list[str]:
    """`show route all`'s BGP attributes, in BIRD's order (by attribute code)."""
    origin = {"incomplete": "Incomplete"}.get(r.origin, r.origin)
    as_path = re.sub(r"\{([^}]*)\}", lambda m: "{" + m.group(1).replace(",", " ") + "}",
                     r.as_path)
    lines = [f"BGP.origin: {origin}", f"BGP.as_path: {as_path}"]
    if r.next_hop not in ("self", ""):
        lines.append(f"BGP.next_hop: {r.next_hop}")
    if r.med is not None:
        lines.append(f"BGP.med: {r.med}")
    if r.local_pref is not None:
        lines.append(f"BGP.local_pref: {r.local_pref}")
    if r.communities:
        pairs = (f"({c.replace(':', ',')})" for c in r.communities)
        lines.append("BGP.community: " + " ".join(pairs))
    if r.originator_id is not None:
        lines.append(f"BGP.originator_id: {r.originator_id}")
    if r.cluster_list:
        lines.append("BGP.cluster_list: " + " ".join(r.cluster_list))
    if r.large_communities:
        lines.append(
            "BGP.large_community: "
            + " ".join("(" + ", ".join(c.split(":")) + ")" for c in r.large_communities)
        )
    return lines


def _as_exported(best: RouteEntry, sent: ExportedRoute) -> RouteEntry:
    """The table's best route with the attributes it is sent with."""
    return RouteEntry(
        prefix=best.prefix, family=best.family, next_hop=sent.next_hop, best=True,
        from_peer=sent.from_peer, as_path=sent.as_path, origin=sent.origin,
        local_pref=sent.local_pref, med=sent.med, communities=list(sent.communities),
        large_communities=list(sent.large_communities), originator_id=best.originator_id,
        cluster_list=list(best.cluster_list), reason=None, in_fib=None, stale=best.stale,
        interface=best.interface,
    )


def _net_key(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix)
    return (net.version, int(net.network_address), net.prefixlen)


def _peer_order(peer: PeerStatus) -> tuple[int, int, int, str]:
    # BIRD lists protocols in configuration order; confd writes mesh, global, then
    # node-specific peers, each by address.
    try:
        addr = int(ipaddress.ip_address(peer.address))
    except ValueError:
        addr = -1
    return (PEER_TYPES.index(peer.type), addr, peer.port, peer.name)


