"""The export policy compiled per family (`ExportPolicy.nlri_check`, `calico_filter`) gives
the answers of a plain ipaddress-based reading of Calico's rules, on random pools, blocks and
prefixes; and the update group's batched bookkeeping (shared entries, reference counts taken
per run) leaves its tallies exact."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.policy import calico as calico_policy
from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec
from bgpd.policy.policy import Policy, calico_filter
from bgpd.rib.adj_out import GroupKey, UpdateGroup
from bgpd.rib.route import KERNEL, LOCAL, PeerInfo, Route, Source
from bgpd.rib.table import BestChange
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family
from bgpd.wire.options import CodecOptions

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
WIDTH = {V4: 32, V6: 128}
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def reference(
    family: Family,
    nlri: bytes,
    pools: list[tuple[Net, bool]],
    blocks: list[tuple[Net, bool]],
    *,
    internal_peer: bool = True,
    ifname: str | None = None,
) -> bool:
    """calico_export_to_bgp_peers read straight from the rules (bgpd/policy/calico.py's
    docstring), on the NLRI's address as sent (octets past the length count as zeros, bits
    past the length are kept: such a prefix is not exactly a block)."""
    plen = nlri[0]
    width = WIDTH[family]
    raw = int.from_bytes(nlri[1:].ljust(width // 8, b"\0"), "big")
    address = ipaddress.ip_address(raw) if family is V4 else ipaddress.IPv6Address(raw)
    net = ipaddress.ip_network(f"{address}/{plen}", strict=False)
    fam_pools = [(p, off) for p, off in pools if p.version == net.version]
    if any(off and net.subnet_of(p) for p, off in fam_pools):  # type: ignore[arg-type]
        return False
    if ifname is not None:
        if internal_peer and (ifname.endswith(".cali") or ifname.endswith(".calico")):
            return False
        if ifname.startswith("bpf") and ifname.endswith(".cali"):
            return False
    for block, confirmed in blocks:
        if not confirmed or block.version != net.version:
            continue
        if plen == block.prefixlen and address == block.network_address:
            return True
        if net.subnet_of(block):  # type: ignore[arg-type]
            return False
    return any(not off and net.subnet_of(p) for p, off in fam_pools)  # type: ignore[arg-type]


def _net(version: int, addr: int, plen: int) -> Net:
    width = 32 if version == 4 else 128
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return cls((addr >> (width - plen) << (width - plen), plen))


def nets(version: int, min_len: int, max_len: int) -> st.SearchStrategy[Net]:
    width = 32 if version == 4 else 128
    return st.builds(
        lambda a, n: _net(version, a, n),
        st.integers(0, (1 << width) - 1),
        st.integers(min_len, max_len),
    )


@st.composite
def policies(draw: st.DrawFn) -> tuple[list[tuple[Net, bool]], list[tuple[Net, bool]]]:
    pools: list[tuple[Net, bool]] = []
    for version, hi in ((4, 24), (6, 64)):
        for net in draw(st.lists(nets(version, 0, hi), max_size=3)):
            pools.append((net, draw(st.booleans())))
    blocks: list[tuple[Net, bool]] = []
    for version, width in ((4, 32), (6, 128)):
        for _ in range(draw(st.integers(0, 3))):
            inside = draw(st.booleans())
            if pools and inside:
                # Mostly inside a pool, as Calico's blocks are.
                same = [p for p, _ in pools if p.version == version]
                if not same:
                    continue
                outer = draw(st.sampled_from(same))
                plen = draw(st.integers(outer.prefixlen, width))
                low = int(outer.network_address)
                addr = draw(st.integers(low, low + outer.num_addresses - 1))
                blocks.append((_net(version, addr, plen), draw(st.booleans())))
            else:
                blocks.append((draw(nets(version, width - 8, width)), draw(st.booleans())))
    return pools, blocks


def build(pools: list[tuple[Net, bool]], blocks: list[tuple[Net, bool]]) -> ExportPolicy:
    return ExportPolicy(
        tuple(
            AffineBlock(str(b), f"ipv{b.version}", "confirmed" if ok else "pendingDeletion")
            for b, ok in blocks
        ),
        tuple(
            PoolSpec(f"p{i}", str(p), f"ipv{p.version}", "Never", "Never", off, False, False)
            for i, (p, off) in enumerate(pools)
        ),
    )


@st.composite
def prefixes(draw: st.DrawFn, around: list[Net]) -> tuple[Family, bytes]:
    """An NLRI prefix, mostly in or near one of the policy's networks, sometimes with bits set
    past its length (a peer may send those)."""
    family = draw(st.sampled_from((V4, V6)))
    width = WIDTH[family]
    version = 4 if family is V4 else 6
    near = [n for n in around if n.version == version]
    nearby = draw(st.integers(0, 3)) > 0
    if near and nearby:
        base = draw(st.sampled_from(near))
        edges = {base.prefixlen, width, min(width, base.prefixlen + 1), max(0, base.prefixlen - 1)}
        plen = draw(st.sampled_from(sorted(edges)) | st.integers(0, width))
        addr = int(base.network_address) | draw(st.integers(0, base.num_addresses - 1))
    else:
        plen = draw(st.integers(0, width))
        addr = draw(st.integers(0, (1 << width) - 1))
    octets = (plen + 7) // 8
    if not draw(st.integers(0, 4)):  # junk past the length
        keep = addr
    else:
        keep = addr >> (width - plen) << (width - plen) if plen else 0
    return family, bytes((plen,)) + keep.to_bytes(width // 8, "big")[:octets]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_compiled_check_agrees_with_the_reference(data: st.DataObject) -> None:
    pools, blocks = data.draw(policies())
    policy = build(pools, blocks)
    around = [p for p, _ in pools] + [b for b, _ in blocks]
    checks = {V4: policy.nlri_check(V4), V6: policy.nlri_check(V6)}
    seen = data.draw(st.lists(prefixes(around), min_size=1, max_size=30))
    # Twice: the second pass answers from the memo.
    for family, nlri in seen + seen:
        want = reference(family, nlri, pools, blocks)
        assert checks[family](nlri) is want, (family, nlri.hex(), pools, blocks)
        version = 4 if family is V4 else 6
        addr = int.from_bytes(nlri[1:].ljust(WIDTH[family] // 8, b"\0"), "big")
        assert policy.allows_net(version, addr, nlri[0], True) is want


IFNAMES = (None, "cali1234567890a", "vxlan.calico", "wireguard.cali", "bpfout.cali", "eth0")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_policy_filter_agrees_with_the_reference(data: st.DataObject) -> None:
    pools, blocks = data.draw(policies())
    policy = build(pools, blocks)
    around = [p for p, _ in pools] + [b for b, _ in blocks]
    ifnames: dict[bytes, str | None] = {}
    filters = {
        ibgp: calico_filter(policy, lambda r: ifnames.get(r.prefix), ibgp)
        for ibgp in (True, False)
    }
    peer = PeerInfo("peer", bytes(4), 64512, 1, 64512)
    sources: tuple[Source, ...] = (LOCAL, KERNEL, peer)
    for family, nlri in data.draw(st.lists(prefixes(around), min_size=1, max_size=20)):
        source = data.draw(st.sampled_from(sources))
        ifname = data.draw(st.sampled_from(IFNAMES))
        ifnames[nlri] = ifname
        route = Route(nlri, family, PathAttributes(), source)
        for ibgp in (True, False):
            # Only routes of local sources have an interface (a peer's routes never do).
            iface = ifname if source is not peer else None
            want = reference(family, nlri, pools, blocks, internal_peer=ibgp, ifname=iface)
            assert filters[ibgp](route) is want, (nlri.hex(), source, ifname, ibgp)


def test_a_full_memo_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calico_policy, "MEMO_LIMIT", 3)
    pools = [(ipaddress.ip_network("192.168.0.0/16"), False)]
    blocks = [(ipaddress.ip_network("192.168.1.0/26"), True)]
    check = build(pools, blocks).nlri_check(V4)
    probes = [bytes((32, 192, 168, 1, i)) for i in range(4)] + [
        bytes((26, 192, 168, 1, 0)),
        bytes((26, 192, 168, 1, 1)),  # a bit past the length: not the block itself
        bytes((24, 192, 168, 7)),
        bytes((8, 10)),
    ]
    for nlri in probes * 3:
        assert check(nlri) is reference(V4, nlri, pools, blocks), nlri.hex()


def test_a_family_without_networks_exports_nothing() -> None:
    policy = build([(ipaddress.ip_network("fd10::/48"), False)], [])
    assert policy.nlri_check(V4)(bytes((0,))) is False
    assert policy.nlri_check(V6)(bytes((64,)) + bytes.fromhex("fd10000000000000")) is True


# --- the update group's bookkeeping ------------------------------------------------------

AS = 64512
# Two local sources: their routes export to the very same attributes, so one prefix can
# move between sources while keeping its exported attribute set.
SOURCES: tuple[Source, ...] = (
    *(PeerInfo(f"c{i}", bytes((10, 0, 0, i)), AS, 0x0A000000 + i, AS, True) for i in range(1, 4)),
    LOCAL,
    KERNEL,
)
MEMBERS = tuple(s for s in SOURCES if isinstance(s, PeerInfo))
PREFIXES = tuple(bytes((32, 100, 64, 0, i)) for i in range(6))
KEY = GroupKey.for_peer(MEMBERS[0], options=CodecOptions(), families=(V4,), local_ipv4=bytes(4))

_change = st.tuples(
    st.sampled_from(PREFIXES),
    st.one_of(st.none(), st.tuples(st.sampled_from(range(len(SOURCES))), st.sampled_from((0, 1)))),
)


def _route(spec: tuple[int, int] | None, prefix: bytes, attrs: list[PathAttributes]) -> Any:
    if spec is None:
        return None
    src, med = spec
    return Route(prefix, V4, attrs[med], SOURCES[src])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_change, max_size=12), max_size=8), st.integers(1, 3))
def test_group_tallies_stay_exact(ticks: list[list[Any]], members: int) -> None:
    """After every flush: each exported attribute set is referenced once per entry holding
    it, and the per-source counts match the entries (runs of one source and attribute set
    are counted in one go, replacements and withdrawals in between)."""
    attrs = [PathAttributes(med=0), PathAttributes(med=1)]
    g = UpdateGroup(KEY, policy=Policy().for_group(KEY, 1))
    for m in MEMBERS[:members]:
        g.add_member(m)
    model: dict[bytes, str] = {}
    for tick in ticks:
        for prefix, spec in tick:
            route = _route(spec, prefix, attrs)
            g.stage(BestChange(V4, prefix, None, route, None, False))
            if route is None:
                model.pop(prefix, None)
            else:
                model[prefix] = route.source.name
        g.flush()
        entries = list(g.entries(V4))
        assert {p: s for p, _, s in entries} == model
        by_attrs: dict[int, int] = {}
        for _, exported, _ in entries:
            by_attrs[id(exported)] = by_attrs.get(id(exported), 0) + 1
        for _, exported, _ in entries:
            assert g.cache.refcount(exported) == by_attrs[id(exported)]
        assert len(g.cache) == len(by_attrs)
        for source in SOURCES:
            own = sum(1 for s in model.values() if s == source.name)
            assert g.advertised_count(source.name) == len(model) - own
