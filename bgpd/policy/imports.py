"""What a route from a peer looks like once accepted, and whether it is a loop (BIRD's
`bgp_decode_attrs` / `bgp_rte_update`): the RIB's import hook.

- attributes are normalised once per UPDATE: from eBGP peers LOCAL_PREF is ignored
  (RFC 4271 5.1.5) and ORIGINATOR_ID / CLUSTER_LIST dropped (RFC 4456 attributes are iBGP
  only);
- loop checks: the session's AS in the AS_PATH of an eBGP route (RFC 4271 9.1.2; BIRD's
  `bgp_as_path_loopy` on the protocol's `local as`) more often than the
  peer's `allow_local_as` lets it be there (BIRD's `allow local as N`, Calico's
  numAllowedLocalASNumbers: a route may pass through our AS N times, as between sites that
  share an AS), our router ID as ORIGINATOR_ID or our cluster ID in CLUSTER_LIST (RFC 4456 8).

A looped route replaces what the peer sent before for that NLRI (an implicit withdraw) and
stays in the Adj-RIB-In as received but not accepted; the RIB does that, this only decides.
"""

from __future__ import annotations

from bgpd.rib.route import Identity, ImportCheck, PeerInfo
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family


def normalise(peer: PeerInfo, attrs: PathAttributes) -> PathAttributes:
    """Attributes as stored for a route from `peer` (before interning)."""
    if peer.ibgp:
        return attrs
    if attrs.local_pref is None and attrs.originator_id is None and not attrs.cluster_list:
        return attrs
    return attrs.replace(local_pref=None, originator_id=None, cluster_list=())


def loop_reason(ident: Identity, peer: PeerInfo, attrs: PathAttributes) -> str | None:
    # `ident` gives the router and cluster IDs; the AS checked is the session's.
    """Why a route with `attrs` from `peer` is a loop for the speaker `ident`, or None."""
    if not peer.ibgp and attrs.as_path:
        # The AS of this session, as BIRD checks it (`local as`: BGPPeer.localASNumber when
        # set, else the node's): a route from a localASNumber peer may carry the node's AS.
        allowed = peer.allow_local_as
        asn = peer.local_as
        seen = sum(asns.count(asn) for _seg_type, asns in attrs.as_path)
        if seen > allowed:
            if allowed:
                return f"AS_PATH contains our AS {seen} times (allow local as {allowed})"
            return "AS_PATH contains our AS"
    if attrs.originator_id == ident.router_id:
        return "ORIGINATOR_ID is our router ID"
    if ident.cluster_id in attrs.cluster_list:
        return "CLUSTER_LIST contains our cluster ID"
    return None


class ImportRules:
    """The RIB's `ImportPolicy`: the protocol's rules above, the same for every peer."""

    __slots__ = ()

    def import_attrs(
        self, ident: Identity, peer: PeerInfo, attrs: PathAttributes
    ) -> tuple[PathAttributes, str | None]:
        attrs = normalise(peer, attrs)
        return attrs, loop_reason(ident, peer, attrs)

    def prefix_filter(
        self, peer: PeerInfo, family: Family, attrs: PathAttributes
    ) -> ImportCheck | None:
        """No per-prefix import rules: every prefix that is not a loop is accepted."""
        return None
