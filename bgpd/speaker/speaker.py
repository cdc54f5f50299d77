"""The BGP speaker, pure: session events, plans and `now` in; bytes per update group, FIB
changes, log lines and its next deadline out.

It joins the rooms below it the way BIRD's nest joins protocols and tables: sessions report
events (bgpd/session), the RIB turns them into best-path changes (bgpd/rib), policy decides
what goes where (bgpd/policy), the update groups encode once for all their members
(rib/adj_out.py), and the kernel side gets the same changes (bgpd/kernel, through the
shell). Nothing here reads a clock, touches a socket or awaits: every entry point takes
`now`, and what should happen outside comes back as `Action`s (speaker/actions.py) from
`take_actions()`, in order. The asyncio shell is speaker/driver.py.

Flow of one UPDATE: `receive()` queues it (speaker/inbound.py); the shell calls `step()`
while its slice lasts (speaker/pacing.py says how long); `step()` applies one piece to the
RIB, whose `BestChange`s are staged in every update group and kept for the FIB; when the
pacer allows (`write_due()`), `write_out()` encodes each group's changes once and returns
one `Broadcast` per group, then the FIB changes.
"""

from __future__ import annotations

import ipaddress
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from bgpd.plan.peering import PeeringPlan, PeerSpec
from bgpd.policy.calico import ExportPolicy
from bgpd.policy.policy import IfnameOf, Policy
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, PeerInfo
from bgpd.rib.table import BestChange
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
)
from bgpd.session.fsm import State
from bgpd.session.limits import PrefixLimit, PrefixVerdict
from bgpd.session.settings import PeerSettings
from bgpd.speaker.actions import (
    Action,
    Broadcast,
    CancelDump,
    Close,
    Dump,
    FibChanges,
    FibConverged,
    Log,
    SetReading,
)
from bgpd.speaker.inbound import InboundQueue
from bgpd.speaker.pacing import Pacer
from bgpd.speaker.restart import HelperMode, RestartingSpeaker
from bgpd.wire.attributes import ORIGIN_IGP, ORIGIN_INCOMPLETE, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

_KERNEL_ATTRS = PathAttributes(origin=ORIGIN_INCOMPLETE)
_LOCAL_ATTRS = PathAttributes(origin=ORIGIN_IGP)


def router_id_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


@dataclass(slots=True)
class PeerState:
    """One configured session as the speaker knows it. `state` follows the session's FSM as
    reported (StateChanged, applied at once, not queued); `options` and `families` are those
    of its current (or last) establishment."""

    spec: PeerSpec
    settings: PeerSettings
    state: State = State.IDLE
    options: CodecOptions | None = None
    families: frozenset[Family] = frozenset()
    prefix_limit: PrefixLimit | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED


class Speaker:
    """Owns the RIB, the update groups, the policy and the per-peer routing state."""

    def __init__(self, plan: PeeringPlan, *, ifname_of: IfnameOf | None = None) -> None:
        self.plan = plan
        self.router_id = router_id_int(plan.router_id)
        cluster = router_id_int(plan.rr_cluster_id) if plan.rr_cluster_id else None
        self._ifname_of = ifname_of
        self.export_policy = plan.calico_export()
        self.policy = self._policy_for(plan)
        self.rib = Rib(plan.local_as, self.router_id, cluster, imports=self.policy)
        # ADD-PATH send groups read every path of a prefix from the Loc-RIB.
        self.adj_out = AdjRibOut(self.rib.cluster_id, self.policy, paths=self.rib.loc)
        self.peers: dict[str, PeerState] = {}
        self._by_address: dict[str, PeerState] = {}
        self.inbound: InboundQueue[PeerState] = InboundQueue()
        self.pacer = Pacer()
        # Graceful restart: helper-mode stale timers per peer, routes of removed sessions
        # kept until their replacements carry them, and our own restart (when set).
        self.helper = HelperMode(self.rib)
        self.restarting: RestartingSpeaker | None = None
        self.adopted_routes = False  # set by the shell: our routes were still in the FIB
        self._begun = False
        self._actions: list[Action] = []
        self._fib: list[BestChange] = []
        self._fib_planned = False  # changes taken into the FIB state, not yet programmed
        self._dirty = False

    # --- outputs ------------------------------------------------------------------------

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def write_due(self, now: float) -> float | None:
        """When the next write-out should run (None: nothing to write)."""
        return self.pacer.write_at(now) if self._dirty else None

    def next_timer(self) -> float | None:
        """The earliest graceful-restart deadline."""
        due = [d for d in (self.helper.next_timer(),) if d is not None]
        if self.restarting is not None:
            due.append(self.restarting.deadline)
        return min(due, default=None)

    def handle_timer(self, now: float) -> None:
        for name in self.helper.due(now):
            self._guard(name, self._expired, name)
        if self.restarting is not None and self.restarting.deadline <= now:
            self._restart_done("restart timer expired", now)

    # --- peers --------------------------------------------------------------------------

    def add_peer(self, spec: PeerSpec, settings: PeerSettings) -> PeerState:
        limit = PrefixLimit(settings.max_prefixes) if settings.max_prefixes else None
        peer = PeerState(spec, settings, prefix_limit=limit)
        self.peers[spec.name] = peer
        self._by_address[str(ipaddress.ip_address(spec.peer_address))] = peer
        return peer

    def peer_by_address(self, address: str) -> PeerState | None:
        return self._by_address.get(address)

    def peer_name(self, text: str) -> str:
        """A session's name from its name or its peer's address (returned as given when
        neither matches)."""
        if text in self.peers:
            return text
        try:
            peer = self._by_address.get(str(ipaddress.ip_address(text)))
        except ValueError:
            return text
        return peer.spec.name if peer is not None else text

    def detach_peer(self, name: str) -> PeerState:
        """Take a session out of the plan: it is no longer a group member and what it has
        queued is dropped. Its routes stay until `retire_peer` says what becomes of them."""
        peer = self.peers.pop(name)
        address = str(ipaddress.ip_address(peer.spec.peer_address))
        if self._by_address.get(address) is peer:
            del self._by_address[address]
        self.helper.back(name)
        self.adj_out.leave(name)
        self._actions.append(CancelDump(name))
        return peer

    def retire_peer(self, peer: PeerState, *, keep_routes: bool, now: float) -> None:
        """The detached session has stopped: withdraw its routes, or keep them (stale) for
        its restart time so a session replacing it loses no route meanwhile."""
        name = peer.spec.name
        if not self.rib.has_peer(name):
            return
        if keep_routes:
            kept = self.helper.retire(name, peer.spec.max_restart_time, now)
            self._log(
                "info", "session stopped; its routes stay until the new sessions have them",
                peer=name, routes=kept, for_seconds=peer.spec.max_restart_time,
            )
        else:
            self._changed(self.rib.remove_peer(name))
            self._log("info", "session removed and its routes withdrawn", peer=name)

    # --- lifecycle ----------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Start routing: our own routes out, and, when our routes were found in the FIB,
        wait for every peer's End-of-RIB before the stale ones go (restarting speaker)."""
        self._begun = True
        if self.adopted_routes:
            wait = max((p.spec.max_restart_time for p in self.peers.values()), default=0)
            self.restarting = RestartingSpeaker.start(self.peers, now, wait)
            self._log(
                "info", "graceful restart: keeping FIB routes until peers send End-of-RIB",
                peers=len(self.restarting.waiting), timeout=wait,
            )
            if not self.restarting.waiting:
                self._restart_done("no peers", now)
        self._originate()

    # --- session events -----------------------------------------------------------------

    def receive(self, event: SessionEvent, now: float) -> None:
        """A session's event. State changes apply at once, and so does an establishment when
        nothing of that peer's is still queued: the peer, which already has our KEEPALIVE,
        starts getting its table now rather than behind every other peer's routes (a
        reflector restarting: thousands of sessions come up while UPDATEs pour in). Route
        work waits its turn in the inbound queue, in arrival order."""
        peer = self.peers.get(getattr(event, "peer", ""))
        if peer is None:
            return
        if isinstance(event, StateChanged):
            peer.state = event.new
            return
        name = peer.spec.name
        if isinstance(event, SessionEstablished) and not self.inbound.holds(name):
            self._guard(name, self._on_established, peer, event, now)
            return
        if self.inbound.push(peer, name, event):
            self._actions.append(SetReading(name, False))

    def has_work(self) -> bool:
        return bool(self.inbound)

    def step(self, now: float) -> None:
        """Apply the next queued item (an UPDATE piece or a session event)."""
        peer, name, item = self.inbound.pop()
        if self.peers.get(name) is not peer:
            return  # removed by reconfiguration meanwhile: drop what it sent
        if isinstance(item, Update):
            self._guard(name, self._on_update, peer, item, now)
        elif isinstance(item, SessionEstablished):
            self._guard(name, self._on_established, peer, item, now)
        elif isinstance(item, SessionDown):
            self._guard(name, self._on_down, peer, item, now)
        elif isinstance(item, RouteRefreshReceived):
            self._guard(name, self._resend, peer)

    def slice_done(self) -> None:
        """A slice of route work ended: its FIB changes go to the kernel's state (programmed
        at the write-out), and paused peers read again if the queue has drained."""
        if self._fib:
            self._actions.append(FibChanges(tuple(self._fib), program=False))
            self._fib = []
            self._fib_planned = True
        for name in self.inbound.resume():
            if name in self.peers:
                self._actions.append(SetReading(name, True))

    def _local_address(self, peer: PeerState, family: Family) -> bytes | None:
        text = peer.spec.source_address
        if text is None or ipaddress.ip_address(text).version != family.spec.version:
            text = self.plan.node_ipv4 if family is Family.IPV4_UNICAST else self.plan.node_ipv6
        return ipaddress.ip_address(text).packed if text else None

    def _on_established(self, peer: PeerState, event: SessionEstablished, now: float) -> None:
        spec = peer.spec
        neg = event.negotiated
        info = PeerInfo(
            name=spec.name,
            address=ipaddress.ip_address(spec.peer_address).packed,
            asn=neg.peer_as,
            router_id=neg.peer_id,
            local_as=spec.local_as,
            rr_client=spec.rr_client,
            allow_local_as=spec.allow_local_as,
        )
        # A restarting peer is back: its stale routes wait for End-of-RIB.
        self.helper.back(spec.name)
        self.rib.add_peer(info)
        local = {f: self._local_address(peer, f) for f in neg.families}
        families = frozenset(f for f, address in local.items() if address)
        peer.options = event.options
        peer.families = neg.families
        key = GroupKey.for_peer(
            info,
            options=event.options,
            families=families,
            local_ipv4=local.get(Family.IPV4_UNICAST),
            local_ipv6=local.get(Family.IPV6_UNICAST),
            next_hop_self=spec.next_hop_self,
            policies=spec.filters,
            next_hop_keep=spec.keep_original_next_hop,
        )
        if self.restarting is not None and self.restarting.established(
            spec.name, neg.families
        ):
            self._restart_done("End-of-RIB from every peer", now)
        # No write-out first: the new member catches up from the group's log, and what is
        # staged now reaches it through that log at the next write-out.
        group = self.adj_out.join(info, key, self.rib.iter_best)
        self._log(
            "info", "session established", peer=spec.name, address=spec.peer_address,
            peer_as=neg.peer_as, families=sorted(str(f) for f in neg.families),
            hold_time=neg.hold_time,
        )
        self._actions.append(Dump(spec.name, group.catch_up(spec.name)))

    def _on_update(self, peer: PeerState, update: Update, now: float) -> None:
        name = peer.spec.name
        if update.error is not None:
            self._log(
                "warning", "malformed UPDATE handled per RFC 7606", peer=name,
                error=str(update.error), action=update.error.handling.name,
            )
        eor = update.end_of_rib
        if eor is not None:
            self._changed(self.rib.sweep_stale(name, eor))
            if self.restarting is not None and self.restarting.end_of_rib(name, eor):
                self._restart_done("End-of-RIB from every peer", now)
            return
        if peer.options is None:
            raise RuntimeError("UPDATE before the session was established")
        self._changed(self.rib.apply_update(name, update, peer.options))
        if peer.prefix_limit is not None:
            self._enforce_prefix_limit(peer, peer.prefix_limit)

    def _enforce_prefix_limit(self, peer: PeerState, limit: PrefixLimit) -> None:
        count = self.rib.counts(peer.spec.name).accepted
        verdict = limit.check(count)
        if verdict is None:
            return
        self._log(
            "warning", "maximum prefixes", peer=peer.spec.name, prefixes=count,
            maximum=limit.maximum, action=verdict.value,
        )
        if verdict is PrefixVerdict.TEAR_DOWN:
            note = limit.notification(Family.of_label(peer.spec.family))
            self._actions.append(
                Close(peer.spec.name, note, peer.settings.max_prefixes_restart)
            )

    def _on_down(self, peer: PeerState, event: SessionDown, now: float) -> None:
        name = peer.spec.name
        if peer.prefix_limit is not None:
            peer.prefix_limit.reset()
        self._log("info", "session down", peer=name, address=peer.spec.peer_address,
                  reason=event.reason)
        self._actions.append(CancelDump(name))
        self.adj_out.leave(name)
        if not self.rib.has_peer(name):
            return
        if event.restart_time:
            # RFC 4724 helper: keep its routes, stale, until End-of-RIB or the restart time.
            kept = self.helper.keep(name, event.restart_time, now)
            self._log("info", "keeping stale routes for restart", peer=name,
                      stale_routes=kept, restart_time=event.restart_time)
            return
        self._changed(self.rib.remove_peer(name))

    def _expired(self, name: str) -> None:
        self._changed(self.helper.expire(name, self._established))

    def _established(self, name: str) -> bool:
        peer = self.peers.get(name)
        return peer is not None and peer.established

    def _resend(self, peer: PeerState) -> None:
        group = self.adj_out.group_of(peer.spec.name)
        if group is not None:
            self._actions.append(Dump(peer.spec.name, group.catch_up(peer.spec.name)))

    def _restart_done(self, why: str, now: float) -> None:
        if self.restarting is None:
            return
        self.restarting = None
        self._log("info", "graceful restart converged; removing stale FIB routes", reason=why)
        # Let what is pending reach the FIB state first.
        self.write_out(now)
        self._actions.append(FibConverged())

    # --- local routes -------------------------------------------------------------------

    def learned(self, changes: Iterable[tuple[str, bool]]) -> None:
        """Routes learned from the kernel (Felix's, and others inside pools): (prefix,
        present) pairs, announced as KERNEL-source routes or withdrawn."""
        out: list[BestChange] = []
        for prefix, present in changes:
            family, nlri = prefix_to_nlri(prefix)
            if present:
                out.extend(self.rib.originate(family, nlri, _KERNEL_ATTRS, source=KERNEL))
            else:
                out.extend(self.rib.withdraw_local(family, nlri, source=KERNEL))
        self._changed(out)

    def _originate(self) -> None:
        changes: list[BestChange] = []
        for org in self.plan.originate:
            family, nlri = prefix_to_nlri(org.prefix)
            changes.extend(self.rib.originate(family, nlri, _LOCAL_ATTRS))
        self._changed(changes)

    # --- reconfiguration ----------------------------------------------------------------

    def set_identity(self, plan: PeeringPlan) -> None:
        """A new router ID, AS or cluster ID: later imports and exports use it."""
        self.router_id = router_id_int(plan.router_id)
        cluster = router_id_int(plan.rr_cluster_id) if plan.rr_cluster_id else None
        self.rib.set_identity(plan.local_as, self.router_id, cluster)
        self.adj_out.set_cluster_id(self.rib.cluster_id)

    def apply_routing(self, plan: PeeringPlan, now: float) -> None:
        """The routing half of a new plan: export policy, BGPFilters and originated blocks.
        (Blackholes, pools learned from the kernel and the per-pool FIB programming are the
        kernel's, applied by the shell.) A filter change reaches only the peers it touches,
        on their running sessions: imports are decided again from their Adj-RIB-In, exports
        sent again as the difference."""
        old = self.plan
        self.plan = plan
        for note in plan.notes:
            if note not in old.notes:
                self._log("warning", "plan note", note=note)
        if _calico_inputs(plan) != _calico_inputs(old):
            self.export_policy = plan.calico_export()
        policy = self._policy_for(plan)
        before = self.policy
        if _policy_inputs(plan, self.export_policy) != _policy_inputs(old, before.calico):
            self.policy = policy
            self.rib.imports = policy
            # What was staged under the old policy goes out under it.
            self.write_out(now)
            for info in self.rib.peers():
                if before.import_rules(info.name) != policy.import_rules(info.name):
                    self._changed(self.rib.reimport(info.name))
            self.adj_out.set_policies(
                policy,
                self.rib.iter_best,
                lambda key: before.export_rules(key) != policy.export_rules(key),
            )
            self._dirty = True
        if plan.originate != old.originate:
            changes: list[BestChange] = []
            wanted = {o.prefix for o in plan.originate}
            for org in old.originate:
                if org.prefix not in wanted:
                    family, nlri = prefix_to_nlri(org.prefix)
                    changes.extend(self.rib.withdraw_local(family, nlri))
            self._changed(changes)
            self._originate()
        for spec in plan.sessions:
            peer = self.peers.get(spec.name)
            if peer is not None and peer.spec is not spec:
                # Same session (plan.diff.same_session), new bookkeeping or new filters.
                refilter = peer.spec.filters != spec.filters
                peer.spec = spec
                group = self.adj_out.group_of(spec.name)
                if refilter and group is not None:
                    info = group.members[spec.name]
                    key = replace(group.key, policies=spec.filters)
                    _, chunks = self.adj_out.regroup(info, key, self.rib.iter_best)
                    self._actions.append(Dump(spec.name, chunks))
                    self._log("info", "export filters changed", peer=spec.name,
                              filters=list(spec.filters))

    def _policy_for(self, plan: PeeringPlan) -> Policy:
        return Policy.of_plan(plan, self.export_policy, ifname_of=self._ifname_of)

    def settings_for(self, settings: PeerSettings) -> PeerSettings:
        """A session's settings as this speaker runs them: while restarting, sessions with
        graceful restart say so in their OPEN (RFC 4724 restart state)."""
        restarting = self.restarting is not None or (self.adopted_routes and not self._begun)
        if restarting and settings.graceful_restart_time is not None:
            return replace(settings, graceful_restart_restarting=True)
        return settings

    # --- propagation --------------------------------------------------------------------

    def _changed(self, changes: list[BestChange]) -> None:
        if not changes:
            return
        self.adj_out.stage(changes)
        # A change of a path that is not the best is nothing to the FIB.
        self._fib.extend(c for c in changes if not c.paths_only)
        self._dirty = True

    def write_out(self, now: float) -> int:
        """Encode what changed, once per update group, as one `Broadcast` per group, then
        the FIB changes; the next write-out is paced by this one's fan-out. Returns the
        number of member sends."""
        self._dirty = False
        sends = 0
        for group, out in self.adj_out.flush():
            members = tuple(group.live)  # the others read it from the catch-up log
            self._actions.append(Broadcast(members, out))
            # `extra` goes to the few members that were a route's source (split horizon).
            sends += (len(members) if out.data else 0) + len(out.extra)
        if self._fib or self._fib_planned:
            self._actions.append(FibChanges(tuple(self._fib)))
            self._fib = []
            self._fib_planned = False
        self.pacer.wrote(now, sends)
        return sends

    # --- helpers ------------------------------------------------------------------------

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self._actions.append(Log(level, event, fields))

    def _guard(self, name: str, handler: Any, *args: Any) -> None:
        # One peer's event must never take the speaker down (DESIGN principle 7).
        try:
            handler(*args)
        except Exception as exc:
            self._actions.append(
                Log("error", f"error handling {_what(handler)}", {"peer": name,
                    "error": str(exc)}, traceback.format_exc())
            )


def _calico_inputs(plan: PeeringPlan) -> tuple[object, ...]:
    """What Calico's export rules for the node (`plan.calico_export()`) are made of."""
    return (plan.blocks, plan.pools, plan.felix_ipip, plan.ignored_interfaces)


def _policy_inputs(plan: PeeringPlan, calico: ExportPolicy | None) -> tuple[object, ...]:
    """What the routing policy is made of, to tell whether a new plan changes it."""
    return (
        None if calico is None else calico.inputs(),
        plan.filters,
        tuple((s.name, s.filters) for s in plan.sessions if s.filters),
        (plan.normal_priority_v4, plan.normal_priority_v6),
        plan.communities,
    )


def _what(handler: Any) -> str:
    return {
        "_on_update": "UPDATE",
        "_on_established": "session event",
        "_on_down": "session event",
        "_resend": "session event",
    }.get(getattr(handler, "__name__", ""), "timer")
