"""calicoctl's apply / delete / get over a KVStore, in Calico's layout.

`apply` validates a v3 object through the model (so what is stored reads back), then
creates or updates it with compare-and-swap, retrying when another writer got in between:
concurrent writers never lose an update. The stored object keeps the user's fields
(including ones this model does not read) with Calico's canonical spec laid over them, and
metadata as clientv3 writes it: `uid` and `creationTimestamp` set on create and kept on
update, `resourceVersion` never stored (it is the key's mod_revision, added on read).
A BlockAffinity is written where Calico's etcd IPAM keeps it (`/calico/ipam/v2/host/...`),
an IPAMBlock as the block value (`/calico/ipam/v2/assignment/...`).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico import keys
from calico.codec import dumps, to_calico, to_v3
from calico.errors import DatastoreError, ResourceError
from calico.ipam import CONFIG_KEY, Affinity, IpamConfig, RecordError
from calico.model import (
    API_VERSION,
    BlockAffinity,
    IPAMBlock,
    affinity_name,
    parse_resource,
)
from calico.store.kv import KeyValue, KVStore, mutate

__all__ = ["Written", "apply", "delete", "get", "kind_of"]

_ALIASES = {
    "bgpconfig": "BGPConfiguration",
    "bgpconfigs": "BGPConfiguration",
    "bgpconfiguration": "BGPConfiguration",
    "bgpfilter": "BGPFilter",
    "filter": "BGPFilter",
    "filters": "BGPFilter",
    "bgppeer": "BGPPeer",
    "peer": "BGPPeer",
    "peers": "BGPPeer",
    "ippool": "IPPool",
    "pool": "IPPool",
    "pools": "IPPool",
    "node": "Node",
    "blockaffinity": "BlockAffinity",
    "affinity": "BlockAffinity",
    "affinities": "BlockAffinity",
    "ipamblock": "IPAMBlock",
    "ipamblocks": "IPAMBlock",
    "block": "IPAMBlock",
    "blocks": "IPAMBlock",
    "ipamconfig": "IPAMConfiguration",
    "ipamconfigs": "IPAMConfiguration",
    "policy": "NetworkPolicy",
    "policies": "NetworkPolicy",
    "netpol": "NetworkPolicy",
    "networkpolicy": "NetworkPolicy",
    "gnp": "GlobalNetworkPolicy",
    "gnps": "GlobalNetworkPolicy",
    "globalpolicy": "GlobalNetworkPolicy",
    "globalpolicies": "GlobalNetworkPolicy",
    "pro": "Profile",
    "pros": "Profile",
    "tiers": "Tier",
    "netset": "NetworkSet",
    "netsets": "NetworkSet",
    "globalnetset": "GlobalNetworkSet",
    "globalnetsets": "GlobalNetworkSet",
    "felixconfig": "FelixConfiguration",
    "felixconfigs": "FelixConfiguration",
    "wep": "WorkloadEndpoint",
    "weps": "WorkloadEndpoint",
}


def kind_of(text: str) -> str:
    """A kind as calicoctl accepts it: the kind, its plural or a short name, any case."""
    low = text.lower()
    for kind, plural in keys.PLURALS.items():
        if low in (kind.lower(), plural):
            return kind
    if low in _ALIASES:
        return _ALIASES[low]
    raise DatastoreError(f"unknown resource type {text!r}")


@dataclass(frozen=True, slots=True)
class Written:
    kind: str
    name: str
    key: str
    revision: int
    created: bool = False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        elif isinstance(v, list) and isinstance(out.get(k), list) and len(v) == len(out[k]):
            # Lists of objects (a policy's rules) merge item by item, so fields this model
            # does not read survive inside them too.
            out[k] = [
                _merge(b, o) if isinstance(b, Mapping) and isinstance(o, Mapping) else o
                for b, o in zip(out[k], v, strict=True)
            ]
        else:
            out[k] = v
    return out


# --- IPAMConfiguration: the IPAM config IPAM uses --------------------------------------
#
# Calico's etcd mode keeps a v3 IPAMConfiguration object that its IPAM code never reads
# (it reads /calico/ipam/v2/config; reference/calico.md 2.5), so `calicoctl apply` of one
# changes nothing. Here, as in Calico's Kubernetes datastore, the resource *is* the IPAM
# config: get/apply/delete read and write /calico/ipam/v2/config, which felix allocates by.

IPAM_CONFIG = "IPAMConfiguration"
_IPAM_CONFIG_SPEC = (
    "strictAffinity",
    "autoAllocateBlocks",
    "maxBlocksPerHost",
    "kubeVirtVMAddressPersistence",
)
MAX_BLOCKS_PER_HOST_LIMIT = 1_000_000


def _ipam_config(doc: Mapping[str, Any]) -> IpamConfig:
    """A v3 IPAMConfiguration -> the IPAM config it sets (the fields it leaves out keep
    the CRD defaults); raises ResourceError with Calico's reasons."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    if name != "default":
        raise ResourceError(
            'Cannot create an IPAMConfiguration resource with a name other than "default"',
            field="metadata.name",
            kind=IPAM_CONFIG,
            name=name,
        )
    spec = doc.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ResourceError("expected a mapping", field="spec", kind=IPAM_CONFIG, name=name)
    for key in spec:
        if key not in _IPAM_CONFIG_SPEC:
            raise ResourceError(
                f"unknown field (known: {', '.join(_IPAM_CONFIG_SPEC)})",
                field=f"spec.{key}",
                kind=IPAM_CONFIG,
                name=name,
            )

    def flag(key: str, default: bool) -> bool:
        value = spec.get(key, default)
        if not isinstance(value, bool):
            raise ResourceError(
                "expected true or false", field=f"spec.{key}", kind=IPAM_CONFIG, name=name
            )
        return value

    blocks = spec.get("maxBlocksPerHost", 0)
    if (
        isinstance(blocks, bool)
        or not isinstance(blocks, int)
        or not (0 <= blocks <= MAX_BLOCKS_PER_HOST_LIMIT)
    ):
        raise ResourceError(
            f"expected a whole number 0..{MAX_BLOCKS_PER_HOST_LIMIT}",
            field="spec.maxBlocksPerHost",
            kind=IPAM_CONFIG,
            name=name,
        )
    extra: dict[str, Any] = {}
    if "kubeVirtVMAddressPersistence" in spec:
        persistence = spec["kubeVirtVMAddressPersistence"]
        if persistence not in ("Enabled", "Disabled"):
            raise ResourceError(
                "must be Enabled or Disabled",
                field="spec.kubeVirtVMAddressPersistence",
                kind=IPAM_CONFIG,
                name=name,
            )
        extra["kubeVirtVMAddressPersistence"] = persistence
    config = IpamConfig(
        strict_affinity=flag("strictAffinity", False),
        auto_allocate_blocks=flag("autoAllocateBlocks", True),
        max_blocks_per_host=blocks,
        extra=extra,
    )
    problem = config.problem()
    if problem is not None:
        raise ResourceError(problem, field="spec", kind=IPAM_CONFIG, name=name)
    return config


def _ipam_config_object(config: IpamConfig, revision: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strictAffinity": config.strict_affinity,
        "autoAllocateBlocks": config.auto_allocate_blocks,
    }
    if config.max_blocks_per_host:
        spec["maxBlocksPerHost"] = config.max_blocks_per_host
    if "kubeVirtVMAddressPersistence" in config.extra:
        spec["kubeVirtVMAddressPersistence"] = config.extra["kubeVirtVMAddressPersistence"]
    meta: dict[str, Any] = {"name": "default"}
    if revision is not None:
        meta["resourceVersion"] = str(revision)
    return {"kind": IPAM_CONFIG, "apiVersion": API_VERSION, "metadata": meta, "spec": spec}


async def _apply_ipam_config(kv: KVStore, config: IpamConfig) -> Written:
    created = False

    def change(current: KeyValue | None) -> bytes:
        nonlocal created
        created = current is None
        kept: Mapping[str, Any] = {}
        if current is not None:
            try:
                kept = IpamConfig.from_json(current.value).extra
            except RecordError:
                kept = {}
        # Fields the resource does not carry (a newer Calico's) stay as they were.
        extra = {**{k: v for k, v in kept.items() if k not in config.extra}, **config.extra}
        return IpamConfig(
            config.strict_affinity, config.auto_allocate_blocks, config.max_blocks_per_host, extra
        ).to_json()

    revision = await mutate(kv, CONFIG_KEY, change)
    return Written(IPAM_CONFIG, "default", CONFIG_KEY, revision, created)


def _target(doc: Mapping[str, Any]) -> tuple[str, str, str, Any]:
    """(kind, name, key, typed resource or None) of a v3 document; raises ResourceError."""
    if doc.get("kind") == IPAM_CONFIG:
        return IPAM_CONFIG, "default", CONFIG_KEY, _ipam_config(doc)
    resource = parse_resource(doc)
    kind, meta = str(doc["kind"]), doc["metadata"]
    name = str(meta["name"])
    if isinstance(resource, BlockAffinity):
        return kind, name, keys.affinity_key(resource.node, resource.cidr, resource.type), resource
    if isinstance(resource, IPAMBlock):
        return kind, name, keys.block_key(resource.cidr), resource
    if kind not in keys.PLURALS:
        raise ResourceError("unknown kind", field="kind", kind=kind, name=name)
    try:
        key = keys.resource_key(kind, name, meta.get("namespace"))
    except ValueError as exc:
        raise ResourceError(str(exc), field="metadata.name", kind=kind, name=name) from None
    return kind, name, key, resource


async def apply(kv: KVStore, doc: Mapping[str, Any]) -> Written:
    """Create or update one v3 object. Raises ResourceError when it is not valid."""
    kind, name, key, resource = _target(doc)
    if isinstance(resource, IpamConfig):
        return await _apply_ipam_config(kv, resource)
    created = False

    def change(current: KeyValue | None) -> bytes:
        nonlocal created
        created = current is None
        if isinstance(resource, BlockAffinity | IPAMBlock):
            # calico.ipam's form; a block keeps the spec's fields it does not know.
            return dumps(to_calico(resource))
        old: Mapping[str, Any] = {}
        if current is not None:
            try:
                loaded = json.loads(current.value)
                old = loaded if isinstance(loaded, Mapping) else {}
            except ValueError:
                old = {}
        old_meta = old.get("metadata") if isinstance(old.get("metadata"), Mapping) else {}
        assert isinstance(old_meta, Mapping)
        obj: dict[str, Any] = {k: v for k, v in doc.items() if k != "status"}
        if resource is not None:
            obj = _merge(obj, to_v3(resource))
        meta = {k: v for k, v in dict(doc["metadata"]).items() if k != "resourceVersion"}
        if kind in keys.NAMESPACED:
            meta["namespace"] = meta.get("namespace") or "default"
        meta["uid"] = old_meta.get("uid") or meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = (
            old_meta.get("creationTimestamp") or meta.get("creationTimestamp") or _now()
        )
        obj["metadata"] = meta
        obj["kind"], obj["apiVersion"] = kind, API_VERSION
        return dumps(obj)

    revision = await mutate(kv, key, change)
    return Written(kind, name, key, revision, created)


async def delete(kv: KVStore, doc: Mapping[str, Any]) -> Written:
    """Delete the object a v3 document names (its spec may be partial, as for calicoctl:
    kind and name suffice; an affinity or block also needs spec.node/cidr)."""
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    if not isinstance(kind, str) or not isinstance(name, str) or not name:
        raise ResourceError("kind and metadata.name are required")
    if kind == IPAM_CONFIG:
        key = CONFIG_KEY  # IPAM goes back to the defaults
    elif kind in ("BlockAffinity", "IPAMBlock"):
        _, _, key, _ = _target(doc)
    else:
        if kind not in keys.PLURALS:
            raise ResourceError("unknown kind", field="kind", kind=kind, name=name)
        key = keys.resource_key(kind, name, (doc.get("metadata") or {}).get("namespace"))
    current = await kv.get(key)
    if current is None:
        raise ResourceError("resource does not exist", kind=kind, name=name)
    revision = await kv.delete(key, current.mod_revision)
    return Written(kind, name, key, revision)


def _affinity_object(kv: KeyValue) -> dict[str, Any] | None:
    """The v3 BlockAffinity of an affinity key; None for another key or an unreadable value
    (left out of the listing, as an unreadable resource of another kind is)."""
    ak = keys.parse_affinity_key(kv.key)
    if ak is None:
        return None
    try:
        affinity = Affinity.from_json(kv.value)
    except RecordError:
        return None
    return {
        "kind": "BlockAffinity",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": affinity_name(ak.node, ak.cidr),
            "resourceVersion": str(kv.mod_revision),
        },
        "spec": {
            "state": affinity.state,
            "node": ak.node,
            "cidr": ak.cidr,
            "type": ak.type,
            "deleted": "true" if affinity.deleted else "false",
        },
    }


async def get(
    kv: KVStore, kind: str, name: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The stored v3 objects of `kind` (one, by name), with metadata.resourceVersion; of a
    namespaced kind, those in `namespace` (every namespace when None)."""
    if kind == IPAM_CONFIG:
        # The config in force: the defaults when none is stored, as IPAM reads it.
        item = await kv.get(CONFIG_KEY)
        try:
            config = IpamConfig() if item is None else IpamConfig.from_json(item.value)
        except RecordError as exc:
            raise ResourceError(str(exc), kind=IPAM_CONFIG, name="default") from None
        objs = [_ipam_config_object(config, None if item is None else item.mod_revision)]
    elif kind == "BlockAffinity":
        listing = await kv.list(keys.IPAM + "host/", keys.IPAM + "virtual/")
        objs = [o for kv_ in listing.items if (o := _affinity_object(kv_)) is not None]
    elif kind == "IPAMBlock":
        listing = await kv.list(keys.BLOCKS)
        objs = []
        for item in listing.items:
            cidr = keys.parse_block_key(item.key)
            if cidr is None:
                continue
            objs.append(
                {
                    "kind": "IPAMBlock",
                    "apiVersion": API_VERSION,
                    "metadata": {
                        "name": keys.cidr_to_key(cidr),
                        "resourceVersion": str(item.mod_revision),
                    },
                    "spec": json.loads(item.value),
                }
            )
    else:
        prefix = keys.kind_prefix(kind)
        if namespace and kind in keys.NAMESPACED:
            prefix += f"{namespace}/"
        listing = await kv.list(prefix)
        objs = []
        for item in listing.items:
            rk = keys.parse_resource_key(item.key)
            if rk is None:
                continue
            try:
                obj = json.loads(item.value)
            except ValueError:
                continue
            meta = dict(obj.get("metadata") or {})
            meta["name"] = rk.name
            if rk.namespace:
                meta["namespace"] = rk.namespace
            meta["resourceVersion"] = str(item.mod_revision)
            objs.append({**obj, "metadata": meta})
    if name is not None:
        objs = [o for o in objs if o["metadata"]["name"] == name]
        if not objs:
            raise ResourceError("resource does not exist", kind=kind, name=name)
    return objs
