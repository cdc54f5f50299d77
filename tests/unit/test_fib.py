"""bgpd.kernel.fib: route values, reconcile, and the per-tick FibState."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    DEFAULT_METRIC,
    ESRCH,
    RT_TABLE_MAIN,
    RTPROT_PYBGPD,
    FibState,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteFailure,
    RouteKey,
    RouteOp,
    RouteType,
    ops_for,
    reconcile,
    route_matches,
)

ENETUNREACH = 101
EINVAL = 22


def gw(text: str, ifindex: int = 0, onlink: bool = False) -> Nexthop:
    return Nexthop(ipaddress.ip_address(text).packed, ifindex, onlink)


def route(
    prefix: str, *nexthops: Nexthop, metric: int | None = None, table: int = 254
) -> KernelRoute:
    net = ipaddress.ip_network(prefix)
    family = AF_INET if net.version == 4 else AF_INET6
    rtype = RouteType.UNICAST if nexthops else RouteType.BLACKHOLE
    return KernelRoute(
        family, net.network_address.packed, net.prefixlen, nexthops, rtype, table, metric
    )


def test_protocol_number_is_not_a_known_one() -> None:
    # rtnetlink.h, iproute2 rt_protos and FRR's rt_protos.d/frr.conf, as of 2024.
    taken = {*range(0, 19), 42, 99, *range(186, 199)}
    assert RTPROT_PYBGPD not in taken
    assert 0 < RTPROT_PYBGPD < 256


def test_key_is_family_dst_len_table() -> None:
    r = route("10.1.0.0/16", gw("10.0.0.2"), table=100)
    assert r.key == (AF_INET, bytes([10, 1, 0, 0]), 16, 100)


@pytest.mark.parametrize(
    ("family", "dst", "dst_len", "nexthops", "rtype"),
    [
        (7, bytes(4), 0, (), RouteType.BLACKHOLE),  # unknown family
        (AF_INET, bytes(16), 0, (), RouteType.BLACKHOLE),  # address of the wrong size
        (AF_INET, bytes(4), 33, (), RouteType.BLACKHOLE),  # prefix too long
        (AF_INET, bytes([10, 0, 0, 1]), 24, (), RouteType.BLACKHOLE),  # host bits
        (AF_INET6, bytes([0xFD] + [0] * 14 + [1]), 64, (), RouteType.BLACKHOLE),
        (AF_INET, bytes(4), 0, (gw("10.0.0.1"),), RouteType.BLACKHOLE),  # blackhole via
        (AF_INET, bytes(4), 0, (), RouteType.UNICAST),  # unicast to nowhere
        (AF_INET, bytes(4), 0, (gw("fd00::1"),), RouteType.UNICAST),  # gateway family
        (AF_INET, bytes(4), 0, (Nexthop(b""),), RouteType.UNICAST),  # no gateway, no device
    ],
)
def test_invalid_routes_are_refused(
    family: int, dst: bytes, dst_len: int, nexthops: tuple[Nexthop, ...], rtype: RouteType
) -> None:
    with pytest.raises(ValueError):
        KernelRoute(family, dst, dst_len, nexthops, rtype)


def test_device_route_and_default_route_are_valid() -> None:
    assert KernelRoute(AF_INET, bytes(4), 0, (Nexthop(b"", 3),)).dst_len == 0
    assert route("::/0", gw("fd00::1")).dst == bytes(16)


def test_from_nlri_pads_the_prefix_form() -> None:
    r = KernelRoute.from_nlri(AF_INET, b"\x14\x0a\x01\x10", (gw("10.0.0.2"),))
    assert (r.dst, r.dst_len) == (bytes([10, 1, 16, 0]), 20)
    r6 = KernelRoute.from_nlri(AF_INET6, b"\x30\xfd\x00\x00\x00\x00\x01", type=RouteType.BLACKHOLE)
    assert r6.dst == bytes([0xFD, 0, 0, 0, 0, 1]) + bytes(10)
    assert r6.dst_len == 48


# -- route_matches / ops_for / reconcile ---------------------------------------------------


def test_match_accepts_kernel_defaults_and_resolved_interfaces() -> None:
    want = route("10.1.0.0/24", gw("10.0.0.2"))
    assert route_matches(want, route("10.1.0.0/24", gw("10.0.0.2", 3), metric=0))
    assert not route_matches(
        route("10.1.0.0/24", gw("10.0.0.2", 4)), route("10.1.0.0/24", gw("10.0.0.2", 3))
    )
    assert not route_matches(
        route("10.1.0.0/24", gw("10.0.0.2"), metric=5),
        route("10.1.0.0/24", gw("10.0.0.2"), metric=0),
    )
    assert not route_matches(want, route("10.1.0.0/24", gw("10.0.0.2", onlink=True)))
    assert not route_matches(want, route("10.1.0.0/24"))  # blackhole
    assert not route_matches(want, route("10.1.0.0/24", gw("10.0.0.3")))


def test_match_ignores_ecmp_order_but_not_multiplicity() -> None:
    a, b = gw("fd00::2"), gw("fd00::3")
    assert route_matches(
        route("fd01::/64", a, b), route("fd01::/64", gw("fd00::3", 2), gw("fd00::2", 2))
    )
    assert not route_matches(route("fd01::/64", a, b), route("fd01::/64", a, a))
    assert not route_matches(route("fd01::/64", a, b), route("fd01::/64", a))


def test_ops_for_each_transition() -> None:
    old = route("10.1.0.0/24", gw("10.0.0.2"))
    new = route("10.1.0.0/24", gw("10.0.0.3"))
    assert ops_for(None, None) == []
    assert ops_for(new, None) == [RouteOp(OpKind.ADD, new)]
    assert ops_for(None, old) == [RouteOp(OpKind.DELETE, old)]
    assert ops_for(old, old) == []
    assert ops_for(new, old) == [RouteOp(OpKind.REPLACE, new)]


def test_an_explicit_default_metric_is_the_default() -> None:
    v4 = route("10.1.0.0/24", gw("10.0.0.2"))
    v6 = route("fd01::/64", gw("fd00::2"))
    assert ops_for(replace(v4, metric=0), v4) == []
    assert ops_for(replace(v6, metric=1024), v6) == []
    assert ops_for(replace(v4, metric=1024), v4)[-1] == RouteOp(
        OpKind.DELETE, replace(v4, metric=0)
    )


def test_metric_change_adds_before_deleting_the_old_metric() -> None:
    old = route("10.1.0.0/24", gw("10.0.0.2"), metric=10)
    new = route("10.1.0.0/24", gw("10.0.0.2"), metric=20)
    assert ops_for(new, old) == [RouteOp(OpKind.ADD, new), RouteOp(OpKind.DELETE, old)]


def test_reconcile_adds_replaces_then_deletes() -> None:
    keep = route("10.1.0.0/24", gw("10.0.0.2"))
    change_to = route("10.2.0.0/24", gw("10.0.0.3"))
    change_from = route("10.2.0.0/24", gw("10.0.0.2", 3))
    fresh = route("fd01::/64", gw("fd00::2"))
    stale = route("10.3.0.0/24")
    desired = {r.key: r for r in (keep, change_to, fresh)}
    observed = {r.key: r for r in (stale, keep, change_from)}
    assert reconcile(desired, observed) == [
        RouteOp(OpKind.REPLACE, change_to),
        RouteOp(OpKind.ADD, fresh),
        RouteOp(OpKind.DELETE, stale),
    ]
    assert reconcile(desired, desired) == []


def test_same_prefix_in_two_tables_are_two_keys() -> None:
    main = route("10.1.0.0/24", gw("10.0.0.2"))
    other = route("10.1.0.0/24", gw("10.0.0.2"), table=100)
    assert reconcile({main.key: main}, {other.key: other}) == [
        RouteOp(OpKind.ADD, main),
        RouteOp(OpKind.DELETE, other),
    ]


# -- FibState -------------------------------------------------------------------------------


def test_changes_within_a_tick_coalesce_to_one_op() -> None:
    fib = FibState()
    a = route("10.1.0.0/24", gw("10.0.0.2"))
    b = route("10.1.0.0/24", gw("10.0.0.3"))
    fib.set(a)
    fib.set(b)
    fib.set(a)
    assert fib.pending == 1
    assert fib.take_ops() == [RouteOp(OpKind.ADD, a)]
    assert fib.pending == 0
    assert fib.take_ops() == []

    fib.set(b)
    fib.remove(b.key)
    fib.set(a)
    assert fib.take_ops() == []  # back where it was: nothing to send
    fib.set(b)
    fib.remove(b.key)
    assert fib.take_ops() == [RouteOp(OpKind.DELETE, a)]
    assert fib.installed(a.key) is None


def test_add_then_remove_within_a_tick_sends_nothing() -> None:
    fib = FibState()
    a = route("10.1.0.0/24", gw("10.0.0.2"))
    fib.set(a)
    fib.remove(a.key)
    assert fib.take_ops() == []
    fib.remove(a.key)  # unknown key: not even dirty
    assert fib.pending == 0


def test_ops_come_out_in_first_change_order() -> None:
    fib = FibState()
    routes = [route(f"10.{i}.0.0/16", gw("10.0.0.2")) for i in (5, 1, 3)]
    for r in routes:
        fib.set(r)
    fib.set(routes[0])
    assert [op.route for op in fib.take_ops()] == routes
    assert len(fib) == 3
    assert set(fib) == set(routes)


def test_adopt_keeps_routes_until_reconcile_all() -> None:
    kept = route("10.1.0.0/24", gw("10.0.0.2", 3), metric=0)
    stale = route("10.2.0.0/24", gw("10.0.0.2", 3), metric=0)
    fib = FibState()
    fib.adopt({kept.key: kept, stale.key: stale})
    fib.set(route("10.1.0.0/24", gw("10.0.0.2")))  # the same route as the kernel's
    assert fib.take_ops() == []
    fib.reconcile_all()
    assert fib.take_ops() == [RouteOp(OpKind.DELETE, stale)]
    fib.reconcile_all()
    assert fib.take_ops() == []


def test_refresh_desired_puts_back_what_the_kernel_dropped() -> None:
    """A link flap: the kernel dropped a route of ours without telling; a fresh dump shows
    it missing and only the desired keys are compared (adopted extras stay until
    reconcile_all)."""
    want = route("10.1.0.0/24", gw("10.0.0.2", 3), metric=0)
    extra = route("10.2.0.0/24", gw("10.0.0.2", 3), metric=0)
    fib = FibState()
    fib.set(want)
    (first,) = fib.take_ops()
    assert first.route == want
    fib.adopt({extra.key: extra})  # the dump: `want` is gone, `extra` is there
    fib.refresh_desired()
    ops = fib.take_ops()
    assert [op.route for op in ops] == [want] and ops[0].kind is not OpKind.DELETE
    fib.refresh_desired()
    assert fib.take_ops() == []


def failure(op: RouteOp, err: int) -> RouteFailure:
    return RouteFailure(op, err, "refused")


def test_failed_add_is_forgotten_and_retried_on_request() -> None:
    fib = FibState()
    a = route("10.1.0.0/24", gw("10.9.9.9"))
    fib.set(a)
    (op,) = fib.take_ops()
    fib.record_failures([failure(op, ENETUNREACH)])
    assert fib.installed(a.key) is None
    assert fib.failed[a.key].errno == ENETUNREACH
    assert fib.take_ops() == []
    fib.retry_failed()
    assert fib.failed == {}
    assert fib.take_ops() == [RouteOp(OpKind.ADD, a)]


def test_failed_replace_restores_the_previous_route() -> None:
    fib = FibState()
    a = route("10.1.0.0/24", gw("10.0.0.2"))
    b = route("10.1.0.0/24", gw("10.9.9.9"))
    fib.set(a)
    fib.take_ops()
    fib.set(b)
    (op,) = fib.take_ops()
    assert op == RouteOp(OpKind.REPLACE, b)
    fib.record_failures([failure(op, ENETUNREACH)])
    assert fib.installed(a.key) == a
    fib.remove(a.key)
    assert fib.take_ops() == [RouteOp(OpKind.DELETE, a)]  # the old route is still there


def test_delete_of_a_missing_route_is_success() -> None:
    fib = FibState({(a := route("10.1.0.0/24", gw("10.0.0.2"))).key: a})
    fib.remove(a.key)
    (op,) = fib.take_ops()
    fib.record_failures([failure(op, ESRCH)])
    assert fib.installed(a.key) is None
    assert fib.failed == {}


def test_failed_delete_is_retried() -> None:
    a = route("10.1.0.0/24", gw("10.0.0.2"))
    fib = FibState({a.key: a})
    fib.remove(a.key)
    (op,) = fib.take_ops()
    fib.record_failures([failure(op, EINVAL)])
    assert fib.installed(a.key) == a
    fib.retry_failed()
    assert fib.take_ops() == [RouteOp(OpKind.DELETE, a)]


def test_metric_change_with_failed_delete_repeats_the_pair() -> None:
    old = route("10.1.0.0/24", gw("10.0.0.2"), metric=10)
    new = route("10.1.0.0/24", gw("10.0.0.2"), metric=20)
    fib = FibState({old.key: old})
    fib.set(new)
    add, delete = fib.take_ops()
    fib.record_failures([failure(delete, EINVAL)])
    fib.retry_failed()
    assert fib.take_ops() == [add, delete]


# -- properties: driving a simulated kernel converges on the desired table -----------------

Kernel = dict[tuple[RouteKey, int], KernelRoute]


def kernel_apply(
    kernel: Kernel, ops: list[RouteOp], failing: frozenset[RouteKey]
) -> list[RouteFailure]:
    """The kernel's route identity is (prefix, table, metric), the metric defaulting to 0 for
    IPv4 and 1024 for IPv6; a delete without a metric takes the lowest-metric match. Adds and
    replaces on keys in `failing` are refused with ENETUNREACH."""
    failures = []
    for op in ops:
        r = op.route
        metric = DEFAULT_METRIC[r.family] if r.metric is None else r.metric
        if op.kind is OpKind.DELETE:
            ident = (
                (r.key, metric)
                if r.metric is not None
                else min((i for i in kernel if i[0] == r.key), key=lambda i: i[1], default=None)
            )
            if ident is None or ident not in kernel:
                failures.append(RouteFailure(op, ESRCH))
            else:
                del kernel[ident]
        elif r.key in failing:
            failures.append(RouteFailure(op, ENETUNREACH))
        else:
            kernel[(r.key, metric)] = r
    return failures


prefixes = st.sampled_from(["10.1.0.0/24", "10.2.0.0/24", "fd01::/64", "10.3.0.0/16"])


def some_route(prefix: str, last_octet: str, metric: int | None, hole: bool) -> KernelRoute:
    if hole:
        return route(prefix)
    via = f"fd00::{last_octet}" if ":" in prefix else f"10.0.0.{last_octet}"
    return route(prefix, gw(via), metric=metric)


variants = st.builds(
    some_route,
    prefixes,
    st.sampled_from(["2", "3"]),
    st.sampled_from([None, 0, 10, 20, 1024]),
    st.booleans(),
)
actions = st.lists(
    st.lists(st.one_of(variants, prefixes.map(lambda p: route(p).key)), max_size=6), max_size=8
)


@settings(max_examples=300, deadline=None)
@given(actions, st.frozensets(prefixes.map(lambda p: route(p).key), max_size=2))
def test_fibstate_converges_on_a_simulated_kernel(
    ticks: list[list[KernelRoute | RouteKey]], failing: frozenset[RouteKey]
) -> None:
    fib = FibState()
    kernel: Kernel = {}
    for tick in ticks:
        for change in tick:
            if isinstance(change, KernelRoute):
                fib.set(change)
            else:
                fib.remove(change)
        fib.record_failures(kernel_apply(kernel, fib.take_ops(), failing))
    by_key = {ident[0]: r for ident, r in kernel.items()}
    assert len(by_key) == len(kernel), "one route per key"
    for r in fib:
        if r.key in failing:
            assert r.key not in by_key
        else:
            assert route_matches(r, by_key[r.key])
    assert set(by_key) <= {r.key for r in fib}


@settings(max_examples=200, deadline=None)
@given(st.lists(variants, max_size=6), st.lists(variants, max_size=6))
def test_reconcile_turns_observed_into_desired(
    want: list[KernelRoute], have: list[KernelRoute]
) -> None:
    desired = {r.key: r for r in want}
    observed = {r.key: r for r in have}
    kernel: Kernel = {
        (r.key, DEFAULT_METRIC[r.family] if r.metric is None else r.metric): r
        for r in observed.values()
    }
    assert kernel_apply(kernel, reconcile(desired, observed), frozenset()) == []
    result = {ident[0]: r for ident, r in kernel.items()}
    assert len(result) == len(kernel)
    assert set(result) == set(desired)
    assert all(route_matches(desired[k], r) for k, r in result.items())


def test_default_table_is_main() -> None:
    assert route("10.0.0.0/8", gw("10.0.0.1")).table == RT_TABLE_MAIN == 254
