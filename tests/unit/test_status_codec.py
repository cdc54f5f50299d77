"""The generic status codec: every record in bgpd.status.records round-trips through JSON text,
and a value of the wrong JSON type, a missing key or a bad nested item is refused with the
field's path in the message."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.status import records
from bgpd.status.codec import INLINE, CodecError, from_json, to_json
from bgpd.status.records import (
    BGP_STATES,
    FAMILIES,
    PEER_TYPES,
    RELOAD_OUTCOMES,
    DaemonStatus,
    PeerStatus,
    RouteEntry,
)

RECORDS: list[type] = [
    obj
    for obj in vars(records).values()
    if isinstance(obj, type)
    and dataclasses.is_dataclass(obj)
    and obj.__module__ == records.__name__
]

# Fields whose record checks them against a vocabulary.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "type": PEER_TYPES,
    "bgp_state": BGP_STATES,
    "family": FAMILIES,
    "outcome": RELOAD_OUTCOMES,
}


def _optional_inner(hint: Any) -> Any | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = (a for a in typing.get_args(hint) if a is not type(None))
        return inner
    return None


def value_strategy(hint: Any, name: str) -> st.SearchStrategy[Any]:
    inner = _optional_inner(hint)
    if inner is not None:
        return st.none() | value_strategy(inner, name)
    if hint is str:
        return st.sampled_from(VOCABULARY[name]) if name in VOCABULARY else st.text(max_size=12)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-(2**70), max_value=2**70)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    origin = typing.get_origin(hint)
    if origin is list:
        return st.lists(value_strategy(typing.get_args(hint)[0], name), max_size=3)
    if origin is tuple:
        return st.lists(value_strategy(typing.get_args(hint)[0], name), max_size=3).map(tuple)
    if dataclasses.is_dataclass(hint):
        return record_strategy(hint)
    raise AssertionError(f"no strategy for {hint!r}")


def record_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls, **{f.name: value_strategy(hints[f.name], f.name) for f in dataclasses.fields(cls)}
    )


any_record = st.sampled_from(RECORDS).flatmap(record_strategy)


def json_keys(cls: type) -> list[tuple[str, Any, Any]]:
    """(key, hint, default or MISSING) of each key of cls's JSON object, inline records' keys
    in their place (a default_factory's value as the default)."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.metadata == INLINE:
            out.extend(json_keys(hints[f.name]))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, hints[f.name], f.default_factory()))
        else:
            out.append((f.name, hints[f.name], f.default))
    return out


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    for kind, types_ in (("int", int), ("float", float), ("str", str), ("list", list)):
        if isinstance(value, types_):
            return kind
    return "object"


def accepted_kinds(hint: Any) -> set[str]:
    inner = _optional_inner(hint)
    if inner is not None:
        return {"null"} | accepted_kinds(inner)
    simple = {str: {"str"}, int: {"int"}, float: {"int", "float"}, bool: {"bool"}}
    if hint in simple:
        return simple[hint]
    if typing.get_origin(hint) in (list, tuple):
        return {"list"}
    return {"object"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)


def test_every_record_is_covered() -> None:
    names = {cls.__name__ for cls in RECORDS}
    assert names >= {
        "PeerStatus",
        "RouteEntry",
        "DaemonStatus",
        "ExportedRoute",
        "CandidatePath",
        "PeerExport",
        "Explanation",
        "ProtocolDetail",
    }


@given(any_record)
def test_every_record_round_trips_through_json_text(record: Any) -> None:
    data = to_json(record)
    assert list(data) == [key for key, _, _ in json_keys(type(record))]
    assert from_json(type(record), json.loads(json.dumps(data))) == record


@given(any_record, st.data())
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(record: Any, data: Any) -> None:
    cls = type(record)
    key, hint, _ = data.draw(st.sampled_from(json_keys(cls)))
    ok = accepted_kinds(hint)
    wrong = data.draw(json_values.filter(lambda v: json_kind(v) not in ok))
    obj = {**to_json(record), key: wrong}
    with pytest.raises(CodecError, match=rf"^{cls.__name__}\.{key}: expected "):
        from_json(cls, obj)


# One value of each JSON type: every key of every record meets each one its type does not allow.
EACH_KIND: list[object] = [None, True, 0, 1.5, "x", [], {}]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=10)
@given(data=st.data())
def test_every_key_refuses_every_json_type_it_does_not_allow(cls: type, data: Any) -> None:
    sample = to_json(data.draw(record_strategy(cls)))
    for key, hint, _ in json_keys(cls):
        for wrong in EACH_KIND:
            if json_kind(wrong) in accepted_kinds(hint):
                continue
            with pytest.raises(CodecError, match=rf"^{cls.__name__}\.{key}: expected "):
                from_json(cls, {**sample, key: wrong})


@given(any_record, st.data())
def test_a_missing_key_is_refused_unless_the_field_has_a_default(record: Any, data: Any) -> None:
    cls = type(record)
    key, _, default = data.draw(st.sampled_from(json_keys(cls)))
    obj = to_json(record)
    del obj[key]
    if default is dataclasses.MISSING:
        with pytest.raises(CodecError, match=rf"^{cls.__name__}\.{key}: missing$"):
            from_json(cls, obj)
    else:  # e.g. `passive`, which an older bgpd did not send
        assert from_json(cls, obj) == from_json(cls, {**obj, key: default})


@given(any_record, st.dictionaries(st.text(min_size=1), json_values, max_size=3))
def test_keys_a_record_does_not_know_are_ignored(record: Any, extra: dict[str, Any]) -> None:
    cls = type(record)
    known = {key for key, _, _ in json_keys(cls)}
    obj = {**{k: v for k, v in extra.items() if k not in known}, **to_json(record)}
    assert from_json(cls, obj) == record


@given(st.lists(record_strategy(PeerStatus), min_size=1, max_size=4), st.data())
def test_a_bad_nested_item_is_named_by_its_index(peers: list[PeerStatus], data: Any) -> None:
    status = DaemonStatus("10.0.0.1", 64512, "node-1", "0.1.0", 1.5, peers)
    index = data.draw(st.integers(0, len(peers) - 1))
    obj = to_json(status)
    obj["peers"][index]["port"] = str(peers[index].port)
    with pytest.raises(CodecError, match=rf"^DaemonStatus\.peers\[{index}\]\.port: expected an"):
        from_json(DaemonStatus, obj)


ROUTE = {
    "prefix": "10.0.0.0/26",
    "family": "ipv4",
    "next_hop": "10.0.0.2",
    "best": True,
    "from_peer": "Mesh_10_0_0_2",
    "as_path": "",
    "origin": "IGP",
    "local_pref": 100,
    "med": None,
    "communities": ["64512:1", "64512:2"],
    "large_communities": [],
    "originator_id": None,
    "cluster_list": [],
    "reason": None,
    "in_fib": True,
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"communities": ["64512:1", 7]},
            "RouteEntry.communities[1]: expected a string, found the number 7",
        ),
        (
            {"local_pref": "100"},
            "RouteEntry.local_pref: expected an integer or null, found '100'",
        ),
        ({"best": 1}, "RouteEntry.best: expected true or false, found the number 1"),
        ({"med": True}, "RouteEntry.med: expected an integer or null, found a boolean"),
        ({"cluster_list": None}, "RouteEntry.cluster_list: expected a list, found null"),
        ({"family": "inet"}, "RouteEntry: family must be one of ipv4, ipv6; got 'inet'"),
    ],
)
def test_messages_say_what_was_expected_and_found(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecError, match=f"^{re.escape(message)}$"):
        from_json(RouteEntry, {**ROUTE, **changes})


def test_a_json_integer_is_taken_for_a_float_field() -> None:
    status = from_json(
        DaemonStatus,
        {
            "router_id": "10.0.0.1",
            "asn": 64512,
            "node": "n",
            "version": "v",
            "started": 1700000000,
            "peers": [],
        },
    )
    assert status.started == 1700000000.0 and isinstance(status.started, float)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(CodecError, match=r"^RouteEntry: expected an object, found a list$"):
        from_json(RouteEntry, [ROUTE])


def test_a_field_with_no_json_form_is_a_type_error() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Odd:
        labels: dict[str, str]

    with pytest.raises(TypeError, match=r"Odd\.labels: no JSON form"):
        to_json(Odd({}))
    with pytest.raises(TypeError, match="not a record"):
        to_json({"a": 1})
