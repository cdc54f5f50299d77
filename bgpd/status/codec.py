"""One JSON codec for the status records: a record's dataclass fields and their type hints
say what its JSON object holds, so no record writes its own to_json/from_json pair.

`to_json(record)` gives the record as a dict of plain JSON values, keys in field order
(lists for list and tuple fields, objects for nested records). `from_json(cls, data)` reads
one back, checking each value's JSON type and naming the field at fault in a `CodecError`
(`DaemonStatus.peers[1].port: expected an integer, found '179'`). A JSON integer is
taken for a float field (Python writes 5.0 as `5.0`, other writers may not). A field with a
default may be absent (an older bgpd did not send it); keys a record does not know are ignored
(a newer bgpd may send more). A field whose metadata is `INLINE` is a record whose keys sit in
its parent's object rather than under the field's name.

Supported hints: str, int, float, bool, `X | None`, `list[X]`, `tuple[X, ...]` and nested
records; any other hint is a TypeError when the record is first encoded or decoded.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from calico.errors import describe

__all__ = ["INLINE", "CodecError", "from_json", "to_json"]

R = TypeVar("R")

_INLINE_KEY = "bgpd.status.inline"
# dataclasses.field(metadata=INLINE): the field's record is written into its parent's object.
INLINE: Mapping[str, bool] = types.MappingProxyType({_INLINE_KEY: True})


class CodecError(ValueError):
    """A JSON value that does not fit its record; the message starts with the field's path."""


class _Wrong(Exception):
    """A value that does not fit; each level it passes through adds its step to `where`
    (innermost first), so no path is built unless something is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.where: list[str] = []


_ABSENT = object()

_Decode = Callable[[Any], Any]
_Encode = Callable[[Any], Any]


class _Never:
    """No JSON value is one of these: the `exact` of a codec that checks every value."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Codec:
    decode: _Decode
    encode: _Encode | None  # None: the value is its own JSON form
    exact: type[Any] = _Never  # a JSON value of exactly this type is taken as it is


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    required: tuple[tuple[str, type[Any], _Decode], ...]  # (name, codec.exact, codec.decode)
    optional: tuple[tuple[str, _Decode], ...]  # fields with a default
    inline: tuple[tuple[str, type], ...]
    encode: Callable[[Any], dict[str, Any]]


def _wrong(what: str, value: object) -> _Wrong:
    return _Wrong(f"expected {what}, found {describe(value)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# hint -> (what else it accepts, beside a value of exactly that type; what an error says)
_SCALARS: Mapping[object, tuple[Callable[[object], bool], str]] = {
    str: (lambda v: isinstance(v, str), "a string"),
    int: (_is_int, "an integer"),
    float: (_is_int, "a number"),  # a JSON integer, e.g. 1700000000
    bool: (lambda v: False, "true or false"),
}


def _is_record(hint: object) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _compile(hint: Any, owner: str, nullable: bool = False) -> _Codec:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if nullable or len(args) != 2 or len(rest) != 1:
            raise TypeError(f"{owner}: no JSON form for {hint!r} (only X | None)")
        return _compile(rest[0], owner, nullable=True)
    or_null = " or null" if nullable else ""
    if hint in _SCALARS:
        kind: type = hint
        also, what = _SCALARS[hint]
        what += or_null

        def scalar(value: Any) -> Any:
            if type(value) is kind:  # the common case first: one check per field
                return value
            if value is None and nullable:
                return None
            if also(value):
                try:
                    return kind(value)
                except OverflowError:  # an integer beyond a float's range
                    raise _Wrong(f"expected {what}, found an integer beyond its range") from None
            raise _wrong(what, value)

        return _Codec(scalar, None, kind)
    if origin is list or origin is tuple:
        args = typing.get_args(hint)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"{owner}: no JSON form for {hint!r} (only tuple[X, ...])")
        item = _compile(args[0], owner)
        make: Callable[[Any], Any] = list if origin is list else tuple
        decode_item, encode_item = item.decode, item.encode

        def sequence(value: Any) -> Any:
            if isinstance(value, list | tuple):
                try:
                    return make([decode_item(v) for v in value])
                except _Wrong:
                    for i, v in enumerate(value):  # which one: only on the way out
                        try:
                            decode_item(v)
                        except _Wrong as exc:
                            exc.where.append(f"[{i}]")
                            raise exc from None
                    raise
            if value is None and nullable:
                return None
            raise _wrong("a list" + or_null, value)

        encode_items: _Encode = list  # items that are their own JSON form: a plain copy
        if encode_item is not None:
            encode_items = lambda value: [encode_item(v) for v in value]  # noqa: E731
        return _Codec(sequence, _or_none(encode_items) if nullable else encode_items)
    if _is_record(hint):
        record: type = hint

        def nested(value: Any) -> Any:
            if value is None and nullable:
                return None
            return _decode(record, value)

        return _Codec(nested, _or_none(to_json) if nullable else to_json)
    raise TypeError(f"{owner}: no JSON form for {hint!r}")


def _or_none(encode: _Encode) -> _Encode:
    return lambda value: None if value is None else encode(value)


_PLANS: dict[type[Any], _Plan] = {}


def _plan(cls: type[Any]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _make_plan(cls)
    return plan


def _make_plan(cls: type[Any]) -> _Plan:
    if not _is_record(cls):
        raise TypeError(f"{cls!r} is not a record (a dataclass)")
    hints = typing.get_type_hints(cls)
    required: list[tuple[str, type[Any], _Decode]] = []
    optional: list[tuple[str, _Decode]] = []
    inlined: list[tuple[str, type]] = []
    # The encoder is made as one dict display, e.g. {'name': r.name, 'peers': _e5(r.peers)}:
    # as fast as a hand-written to_json (a route dump encodes every route), where a loop over
    # the fields took twice as long.
    items: list[str] = []
    env: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        owner = f"{cls.__name__}.{f.name}"
        hint = hints[f.name]
        codec = _compile(hint, owner)
        inline = bool(f.metadata.get(_INLINE_KEY))
        if inline and not _is_record(hint):
            raise TypeError(f"{owner}: only a record field can be inline")
        if inline:
            inlined.append((f.name, hint))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append((f.name, codec.exact, codec.decode))
        else:
            optional.append((f.name, codec.decode))
        value = f"r.{f.name}"
        if codec.encode is not None:
            env[f"_e{i}"] = codec.encode
            value = f"_e{i}({value})"
        items.append(f"**{value}" if inline else f"{f.name!r}: {value}")
    encode = eval(f"lambda r: {{{', '.join(items)}}}", env)
    return _Plan(tuple(required), tuple(optional), tuple(inlined), encode)


def to_json(record: object) -> dict[str, Any]:
    """`record` as a JSON object (a dict of plain values), keys in field order."""
    return _plan(type(record)).encode(record)


def from_json(cls: type[R], data: object) -> R:
    """The `cls` record that `data` (a decoded JSON object) holds; CodecError names the
    field that is missing or of the wrong type, or the record's own check that failed."""
    try:
        return typing.cast(R, _decode(cls, data))
    except _Wrong as exc:
        where = "".join(reversed(exc.where))
        raise CodecError(f"{cls.__name__}{where}: {exc.message}") from None


def _decode(cls: type, data: object) -> object:
    if not isinstance(data, Mapping):
        raise _wrong("an object", data)
    plan = _plan(cls)
    values: dict[str, Any] = {}
    try:
        for name, exact, decode in plan.required:
            # Most values are a str, int or bool as they should be: skip the call for those.
            value = data[name]
            values[name] = value if type(value) is exact else decode(value)
    except (KeyError, _Wrong):
        raise _locate(plan, data) from None
    for name, decode in plan.optional:
        if (value := data.get(name, _ABSENT)) is not _ABSENT:
            try:
                values[name] = decode(value)
            except _Wrong as exc:
                exc.where.append(f".{name}")
                raise
    for name, record in plan.inline:
        values[name] = _decode(record, data)  # its keys are the parent's
    try:
        return cls(**values)
    except ValueError as exc:  # the record's own check (__post_init__)
        raise _Wrong(str(exc)) from None


def _locate(plan: _Plan, data: Mapping[str, Any]) -> _Wrong:
    """The error of the first required field that is missing or wrong (the fast path above
    reads them all at once and does not know which)."""
    for name, _, decode in plan.required:
        try:
            if name not in data:
                raise _Wrong("missing")
            decode(data[name])
        except _Wrong as exc:
            exc.where.append(f".{name}")
            return exc
    raise AssertionError("a required field failed once and not again")
