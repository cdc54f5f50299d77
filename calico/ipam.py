"""Calico's IPAM records exactly as they are stored under /calico/ipam/v2/ (reference/calico.md
2.5-2.8): allocation blocks, block affinities, handles and the IPAM config, with their keys.

Pure: bytes in, frozen values out, and back to the same bytes Calico's Go code writes
(`json.Marshal` of the model structs: compact, fields in struct order, map keys sorted,
omitempty where Calico has it). Fields this module does not know are kept and written back
after the known ones, so a newer Calico's data survives a write by felix.

This is the one reader of these forms: felix's IPAM reads the stored bytes (`from_json`), and
calico.model's v3 resources `IPAMBlock` and `BlockAffinity` are made from the records read from
decoded objects (`from_obj`: an etcd value, or a v3 spec, which has the same keys). A value
that cannot be read is a `RecordError` naming the field.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from calico import keys
from calico.errors import describe

IPAM_PREFIX = keys.IPAM
CONFIG_KEY = keys.IPAM_CONFIG
HANDLE_PREFIX = keys.HANDLES
HOST_PREFIX = keys.affinity_prefix()
ASSIGNMENT_PREFIX = keys.BLOCKS

AFFINITY_CONFIRMED = "confirmed"
AFFINITY_PENDING = "pending"
AFFINITY_PENDING_DELETION = "pendingDeletion"
AFFINITY_STATES = (AFFINITY_CONFIRMED, AFFINITY_PENDING, AFFINITY_PENDING_DELETION)

DEFAULT_MAX_BLOCKS_PER_HOST = 20

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


def _no_extra() -> Mapping[str, Any]:
    return _EMPTY


class RecordError(ValueError):
    """A stored IPAM value that cannot be read (not JSON, or a field of the wrong type).

    `what` names the record ("block 10.0.0.0/26"), `field` the key at fault if one is
    ("allocations[3]"), `reason` what is wrong; calico.model turns the last two into a
    ResourceError of the resource."""

    def __init__(self, what: str, reason: str, field: str | None = None) -> None:
        self.what = what
        self.reason = reason
        self.field = field
        super().__init__(": ".join(p for p in (what, field, reason) if p))


def block_key(cidr: str) -> str:
    return keys.block_key(cidr)


def affinity_key(host: str, cidr: str) -> str:
    return keys.affinity_key(host, cidr)


def handle_key(handle_id: str) -> str:
    return keys.handle_key(handle_id)


def parse_block_key(key: str) -> str | None:
    """The block CIDR of an assignment key, or None if `key` is not one."""
    return keys.parse_block_key(key)


def parse_affinity_key(key: str) -> tuple[str, str] | None:
    """(host, block CIDR) of a host affinity key (not a virtual one), or None."""
    parsed = keys.parse_affinity_key(key)
    if parsed is None or parsed.type != "host":
        return None
    return parsed.node, parsed.cidr


def parse_handle_key(key: str) -> str | None:
    if not key.startswith(HANDLE_PREFIX) or len(key) == len(HANDLE_PREFIX):
        return None
    return key[len(HANDLE_PREFIX) :]


def _dumps(obj: Mapping[str, Any]) -> bytes:
    # Go's json.Marshal: no spaces, UTF-8 as is.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data) if data not in (b"", "") else {}
    except ValueError as exc:
        raise RecordError(what, f"not JSON ({exc})") from None


def _mapping(obj: Any, what: str, key: str | None = None) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise RecordError(what, f"expected a mapping, found {describe(obj)}", key)
    return obj


def _extra(obj: Mapping[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    rest = {k: v for k, v in obj.items() if k not in known}
    return types.MappingProxyType(rest) if rest else _EMPTY


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, what: str, key: str) -> int:
    if not _is_int(value):
        raise RecordError(what, f"expected an integer, found {describe(value)}", key)
    return int(value)


def _string(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(what, f"expected a string or null, found {describe(value)}", key)
    return value


def _list(obj: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise RecordError(what, f"expected a list, found {describe(value)}", key)
    return list(value)


def _flag(obj: Mapping[str, Any], key: str, what: str) -> bool:
    """A bool; the v3 BlockAffinity spec writes it as the string "true" or "false"."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", ""):
        return value.lower() == "true"
    raise RecordError(what, f"expected true or false, found {describe(value)}", key)


def format_claim_time(now: float) -> str:
    """metav1.Time's JSON form: RFC 3339, UTC, whole seconds."""
    stamp = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_claim_time(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


# --- IPAM config ---------------------------------------------------------------------------


_CONFIG_FIELDS = ("strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost")


@dataclass(frozen=True, slots=True)
class IpamConfig:
    """/calico/ipam/v2/config; an absent key means these defaults (maxBlocksPerHost 0 means
    DEFAULT_MAX_BLOCKS_PER_HOST). Other fields (kubeVirtVMAddressPersistence, ...) are kept."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0
    extra: Mapping[str, Any] = field(default_factory=_no_extra, compare=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> IpamConfig:
        what = "IPAM config"
        obj = _mapping(_loads(data, what), what)
        return cls(
            strict_affinity=bool(obj.get("strict_affinity", False)),
            auto_allocate_blocks=bool(obj.get("auto_allocate_blocks", True)),
            max_blocks_per_host=_int(obj.get("maxBlocksPerHost", 0), what, "maxBlocksPerHost"),
            extra=_extra(obj, _CONFIG_FIELDS),
        )

    def to_json(self) -> bytes:
        out: dict[str, Any] = {}
        if self.strict_affinity:
            out["strict_affinity"] = True
        if self.auto_allocate_blocks:
            out["auto_allocate_blocks"] = True
        if self.max_blocks_per_host:
            out["maxBlocksPerHost"] = self.max_blocks_per_host
        out.update(self.extra)
        return _dumps(out)

    def problem(self) -> str | None:
        """What SetIPAMConfig refuses in this config, or None."""
        if not self.strict_affinity and not self.auto_allocate_blocks:
            return "auto_allocate_blocks cannot be off without strict_affinity"
        if self.max_blocks_per_host < 0:
            return "maxBlocksPerHost cannot be negative"
        if self.max_blocks_per_host > 0 and not self.strict_affinity:
            return "maxBlocksPerHost needs strict_affinity"
        return None


# --- affinities and handles ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Affinity:
    """A host's claim on a block. A missing or empty state reads as confirmed."""

    state: str = AFFINITY_CONFIRMED
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=_no_extra, compare=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> Affinity:
        return cls.from_obj(_loads(data, "block affinity"))

    @classmethod
    def from_obj(cls, raw: Any) -> Affinity:
        """The etcd value {"state", "deleted"} decoded, or a v3 BlockAffinity spec (the same
        two keys beside node, cidr and type). A very old value, "" or {}, is confirmed."""
        if isinstance(raw, str) or raw is None:
            return cls()
        what = "block affinity"
        obj = _mapping(raw, what)
        state = _string(obj, "state", what) or AFFINITY_CONFIRMED
        if state not in AFFINITY_STATES:
            allowed = ", ".join(repr(s) for s in AFFINITY_STATES)
            raise RecordError(what, f"{state!r} is not one of {allowed}", "state")
        return cls(state, _flag(obj, "deleted", what), _extra(obj, ("state", "deleted")))

    def to_obj(self) -> dict[str, Any]:
        return {"state": self.state, "deleted": self.deleted, **self.extra}

    def to_json(self) -> bytes:
        return _dumps(self.to_obj())


@dataclass(frozen=True, slots=True)
class Handle:
    """How many addresses a handle holds in each block (keyed by block CIDR)."""

    blocks: Mapping[str, int] = field(default_factory=_no_extra)
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=_no_extra, compare=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> Handle:
        what = "IPAM handle"
        obj = _mapping(_loads(data, what), what)
        blocks = _mapping(obj.get("block") or {}, what, "block")
        counts = {str(k): _int(v, what, f"block[{k}]") for k, v in blocks.items()}
        return cls(
            types.MappingProxyType(counts),
            bool(obj.get("deleted", False)),
            _extra(obj, ("block", "deleted")),
        )

    def to_json(self) -> bytes:
        blocks = {k: self.blocks[k] for k in sorted(self.blocks)}
        return _dumps({"block": blocks, "deleted": self.deleted, **self.extra})

    def add(self, cidr: str, count: int) -> Handle | None:
        """Counts changed by `count` in block `cidr`; None once the handle holds nothing."""
        counts = dict(self.blocks)
        counts[cidr] = counts.get(cidr, 0) + count
        if counts[cidr] <= 0:
            del counts[cidr]
        if not counts:
            return None
        return replace(self, blocks=types.MappingProxyType(counts))

    @property
    def total(self) -> int:
        return sum(self.blocks.values())


# --- allocation blocks --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribute:
    """One entry of a block's `attributes`: the handle an address belongs to and its labels
    (node, namespace, pod, timestamp, type ...)."""

    handle_id: str | None = None
    secondary: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=_no_extra, compare=False)

    @classmethod
    def from_obj(cls, obj: Any, what: str, key: str) -> Attribute:
        """Entry `key` ("attributes[2]") of block `what`."""
        m = _mapping(obj, what, key)
        try:
            handle = _string(m, "handle_id", what)
            secondary = m.get("secondary")
            if secondary is not None:
                secondary = _mapping(secondary, what, "secondary")
        except RecordError as exc:
            raise RecordError(what, exc.reason, f"{key}.{exc.field}") from None
        return cls(
            handle,
            None
            if secondary is None
            else types.MappingProxyType({str(k): str(v) for k, v in secondary.items()}),
            _extra(m, ("handle_id", "secondary")),
        )

    def to_obj(self) -> dict[str, Any]:
        # v3.32 form: handle_id and secondary are omitempty.
        out: dict[str, Any] = {}
        if self.handle_id:
            out["handle_id"] = self.handle_id
        if self.secondary:
            out["secondary"] = {k: self.secondary[k] for k in sorted(self.secondary)}
        out.update(self.extra)
        return out

    def same(self, handle_id: str | None, secondary: Mapping[str, str] | None) -> bool:
        return self.handle_id == handle_id and dict(self.secondary or {}) == dict(secondary or {})


_BLOCK_FIELDS = (
    "cidr",
    "affinity",
    "affinity_claim_time",
    "allocations",
    "unallocated",
    "attributes",
    "sequenceNumber",
    "sequenceNumberForAllocation",
    "deleted",
)


@dataclass(frozen=True, slots=True)
class Block:
    """An allocation block: `allocations[i]` is None (free) or an index into `attributes`;
    `unallocated` is the FIFO of free ordinals; `sequence_number` is bumped on every write
    and recorded per ordinal at allocation time (so a release can prove it frees the
    allocation it means)."""

    cidr: str
    affinity: str | None
    allocations: tuple[int | None, ...]
    unallocated: tuple[int, ...]
    attributes: tuple[Attribute, ...] = ()
    sequence_number: int = 0
    seq_for_allocation: Mapping[str, int] = field(default_factory=_no_extra)
    deleted: bool = False
    affinity_claim_time: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_no_extra, compare=False)

    # --- construction and encoding --------------------------------------------------------

    @classmethod
    def new(cls, cidr: str, host: str, now: float) -> Block:
        """Calico's newBlock: all free, ordinals in order, claimed by `host` now."""
        size = ipaddress.ip_network(cidr).num_addresses
        return cls(
            cidr=str(ipaddress.ip_network(cidr)),
            affinity=f"host:{host}",
            allocations=(None,) * size,
            unallocated=tuple(range(size)),
            sequence_number=int(now * 1_000_000_000),
            affinity_claim_time=format_claim_time(now),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Block:
        return cls.from_obj(_loads(data, "block"))

    @classmethod
    def from_obj(cls, raw: Any) -> Block:
        """The etcd value decoded, or a v3 IPAMBlock spec (the same keys)."""
        obj = _mapping(raw, "block")
        cidr = obj.get("cidr")
        if cidr is None or cidr == "":
            raise RecordError("block", "required", "cidr")
        try:
            if not isinstance(cidr, str) or "/" not in cidr:
                raise ValueError(cidr)
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise RecordError("block", f"{describe(cidr)} is not a CIDR", "cidr") from None
        what, size = f"block {net}", net.num_addresses
        allocations = _list(obj, "allocations", what)
        for i, a in enumerate(allocations):
            if a is not None and not _is_int(a):
                reason = f"expected an integer or null, found {describe(a)}"
                raise RecordError(what, reason, f"allocations[{i}]")
        if len(allocations) != size:
            reason = f"has {len(allocations)} entries, the block has {size}"
            raise RecordError(what, reason, "allocations")
        unallocated = _list(obj, "unallocated", what)
        for i, u in enumerate(unallocated):
            if not _is_int(u) or not 0 <= u < size:
                reason = f"{describe(u)} is not an ordinal of the block"
                raise RecordError(what, reason, f"unallocated[{i}]")
        attributes = tuple(
            Attribute.from_obj(a, what, f"attributes[{i}]")
            for i, a in enumerate(_list(obj, "attributes", what))
        )
        for i, a in enumerate(allocations):
            if a is not None and not 0 <= a < len(attributes):
                raise RecordError(what, f"{a} is not an index into attributes", f"allocations[{i}]")
        key = "sequenceNumberForAllocation"
        seqs = _mapping(obj.get(key) if obj.get(key) is not None else {}, what, key)
        raw_sequence = obj.get("sequenceNumber")
        sequence_number = 0 if raw_sequence is None else _int(raw_sequence, what, "sequenceNumber")
        if not 0 <= sequence_number < 2**64:
            raise RecordError(what, f"{sequence_number} is not a uint64", "sequenceNumber")
        return cls(
            cidr=str(net),
            affinity=_string(obj, "affinity", what),
            allocations=tuple(allocations),
            unallocated=tuple(unallocated),
            attributes=attributes,
            sequence_number=sequence_number,
            seq_for_allocation=types.MappingProxyType(
                {str(k): _int(v, what, f"{key}[{k}]") for k, v in seqs.items()}
            ),
            deleted=_flag(obj, "deleted", what),
            affinity_claim_time=_string(obj, "affinity_claim_time", what) or None,
            extra=_extra(obj, _BLOCK_FIELDS),
        )

    def to_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cidr": self.cidr, "affinity": self.affinity}
        if self.affinity_claim_time:
            out["affinity_claim_time"] = self.affinity_claim_time
        out["allocations"] = list(self.allocations)
        out["unallocated"] = list(self.unallocated)
        out["attributes"] = [a.to_obj() for a in self.attributes]
        out["sequenceNumber"] = self.sequence_number
        # Go sorts map keys as strings ("10" before "2").
        out["sequenceNumberForAllocation"] = {
            k: self.seq_for_allocation[k] for k in sorted(self.seq_for_allocation)
        }
        out["deleted"] = self.deleted
        out.update(self.extra)
        return out

    def to_json(self) -> bytes:
        return _dumps(self.to_obj())

    # --- questions ------------------------------------------------------------------------

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    @property
    def host(self) -> str | None:
        if self.affinity and self.affinity.startswith("host:"):
            return self.affinity[len("host:") :]
        return None

    @property
    def free(self) -> int:
        return len(self.unallocated)

    @property
    def empty(self) -> bool:
        return all(a is None for a in self.allocations)

    def address(self, ordinal: int) -> str:
        return str(self.network.network_address + ordinal)

    def ordinal(self, ip: str) -> int | None:
        addr = ipaddress.ip_address(ip)
        net = self.network
        if addr.version != net.version or addr not in net:
            return None
        return int(addr) - int(net.network_address)

    def handle_of(self, ordinal: int) -> str | None:
        index = self.allocations[ordinal]
        return None if index is None else self.attributes[index].handle_id

    def ordinals_of_handle(self, handle_id: str) -> list[int]:
        return [
            ordinal
            for ordinal, index in enumerate(self.allocations)
            if index is not None and self.attributes[index].handle_id == handle_id
        ]

    # --- changes (each returns a new block, sequence number bumped as updateBlock does) ----

    def assign(
        self, count: int, handle_id: str | None, secondary: Mapping[str, str] | None
    ) -> tuple[Block, tuple[int, ...]]:
        """Take up to `count` ordinals from the head of `unallocated`."""
        taken = self.unallocated[:count]
        attributes = list(self.attributes)
        index = next(
            (i for i, a in enumerate(attributes) if a.same(handle_id, secondary)), len(attributes)
        )
        if index == len(attributes):
            attributes.append(
                Attribute(
                    handle_id,
                    None if secondary is None else types.MappingProxyType(dict(secondary)),
                )
            )
        allocations = list(self.allocations)
        seqs = dict(self.seq_for_allocation)
        for ordinal in taken:
            allocations[ordinal] = index
            seqs[str(ordinal)] = self.sequence_number
        block = replace(
            self,
            allocations=tuple(allocations),
            unallocated=self.unallocated[len(taken) :],
            attributes=tuple(attributes),
            seq_for_allocation=types.MappingProxyType(seqs),
            sequence_number=self.sequence_number + 1,
        )
        return block, taken

    def release(self, ordinals: tuple[int, ...]) -> Block:
        """Free `ordinals` (taken ones only): each goes to the tail of `unallocated`, its
        sequence entry is dropped, and attributes nothing refers to any more are removed
        (indexes compacted), as Calico up to v3.31 does."""
        allocations = list(self.allocations)
        seqs = dict(self.seq_for_allocation)
        unallocated = list(self.unallocated)
        for ordinal in ordinals:
            if allocations[ordinal] is None:
                continue
            allocations[ordinal] = None
            seqs.pop(str(ordinal), None)
            unallocated.append(ordinal)
        used = sorted({a for a in allocations if a is not None})
        renumber = {old: new for new, old in enumerate(used)}
        return replace(
            self,
            allocations=tuple(None if a is None else renumber[a] for a in allocations),
            unallocated=tuple(unallocated),
            attributes=tuple(self.attributes[old] for old in used),
            seq_for_allocation=types.MappingProxyType(seqs),
            sequence_number=self.sequence_number + 1,
        )

    def with_affinity(self, affinity: str | None) -> Block:
        return replace(
            self,
            affinity=affinity,
            affinity_claim_time=None if affinity is None else self.affinity_claim_time,
            sequence_number=self.sequence_number + 1,
        )
