"""Reading Calico v3 resources from their decoded JSON / YAML form: a `Reader` per resource
names the field at fault in every error (`ResourceError`), and converts values as Calico's own
readers do (AS numbers in asdot, Go durations, canonical addresses and masked CIDRs, selectors,
secret references). The kinds' readers live beside their models (model.py, bgpfilter.py,
policy_read.py).
"""

from __future__ import annotations

import ipaddress
import math
import re
import types
from collections.abc import Mapping
from typing import Any, TypeVar

from calico import selector
from calico.errors import ResourceError, describe
from calico.k8snames import SecretKeyRef, secret_key_problem, secret_name_problem

_R = TypeVar("_R")

NO_LABELS: Mapping[str, str] = types.MappingProxyType({})
"""The labels of a resource that has none (shared: a read-only empty mapping)."""


def parse_as_number(value: Any) -> int:
    """An AS number as Calico accepts it: a JSON number, "64512", or asdot "1.10"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an AS number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not an AS number (write asdot in quotes: '1.10')")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        asn = int(value.strip())
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+\.[0-9]+", value.strip()):
        high, low = (int(p) for p in value.strip().split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"{value!r} is not an AS number")
        asn = high << 16 | low
    else:
        raise ValueError(f"{value!r} is not an AS number")
    if not 0 <= asn <= 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not an AS number (0..4294967295)")
    return asn


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration string ("120s", "1m30s", "1.5h") in seconds."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration such as '120s'")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"{text!r} is not a duration such as '120s'")
    return sign * total


def _whole_seconds(seconds: float) -> int:
    """Go's math.Round (half away from zero), as confd turns durations into BIRD seconds."""
    return int(math.copysign(math.floor(abs(seconds) + 0.5), seconds))


def address_part(cidr_or_ip: str | None) -> str | None:
    if not cidr_or_ip:
        return None
    return str(ipaddress.ip_interface(cidr_or_ip).ip)


def network_part(cidr_or_ip: str | None) -> str | None:
    if not cidr_or_ip:
        return None
    return str(ipaddress.ip_interface(cidr_or_ip).network)


class Reader:
    """Typed field access that turns every problem into a ResourceError naming the field."""

    __slots__ = ("kind", "name", "prefix")

    def __init__(self, kind: str, name: str, prefix: str) -> None:
        self.kind = kind
        self.name = name
        self.prefix = prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, path: str, reason: str) -> ResourceError:
        return ResourceError(reason, field=path, kind=self.kind, name=self.name)

    def sub(self, key: str) -> Reader:
        return Reader(self.kind, self.name, self.path(key))

    def _get(self, d: Mapping[str, Any], key: str) -> Any:
        return d.get(key)

    def string(self, d: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return default
        if not isinstance(v, str):
            raise self.error(self.path(key), f"expected a string, found {describe(v)}")
        return v

    def choice(self, d: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
        v = self.string(d, key)
        if v is None:
            return default
        if v not in options:
            allowed = ", ".join(repr(o) for o in options)
            raise self.error(self.path(key), f"{v!r} is not one of {allowed}")
        return v

    def flag(self, d: Mapping[str, Any], key: str, default: bool = False) -> bool:
        v = self._get(d, key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.error(self.path(key), f"expected true or false, found {describe(v)}")
        return v

    def integer(
        self, d: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None
    ) -> int | None:
        v = self._get(d, key)
        if v is None:
            return default
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(self.path(key), f"expected an integer, found {describe(v)}")
        if not lo <= v <= hi:
            raise self.error(self.path(key), f"{v} is out of range {lo}..{hi}")
        return v

    def asn(self, d: Mapping[str, Any], key: str) -> int | None:
        v = self._get(d, key)
        if v is None:
            return None
        try:
            return parse_as_number(v)
        except ValueError as e:
            raise self.error(self.path(key), str(e)) from None

    def seconds(self, d: Mapping[str, Any], key: str) -> int | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise self.error(
                self.path(key), f"expected a duration such as '120s', found {describe(v)}"
            )
        try:
            seconds = parse_duration(v)
        except ValueError as e:
            raise self.error(self.path(key), str(e)) from None
        if seconds < 0:
            raise self.error(self.path(key), f"{v!r} is negative")
        return _whole_seconds(seconds)

    def mapping(self, d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        v = self._get(d, key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise self.error(self.path(key), f"expected a mapping, found {describe(v)}")
        return v

    def items(self, d: Mapping[str, Any], key: str) -> list[Any]:
        v = self._get(d, key)
        if v is None:
            return []
        if not isinstance(v, list | tuple):
            raise self.error(self.path(key), f"expected a list, found {describe(v)}")
        return list(v)

    def strings(self, d: Mapping[str, Any], key: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, v in enumerate(self.items(d, key)):
            if not isinstance(v, str):
                raise self.error(
                    f"{self.path(key)}[{i}]", f"expected a string, found {describe(v)}"
                )
            out.append(v)
        return tuple(out)

    def cidr_value(self, v: Any, path: str, version: int | None = None) -> str:
        """A CIDR, masked to its network (Calico stores the masked form)."""
        kind = {None: "a CIDR", 4: "an IPv4 CIDR", 6: "an IPv6 CIDR"}[version]
        if not isinstance(v, str) or "/" not in v:
            raise self.error(path, f"{describe(v)} is not {kind}")
        try:
            net = ipaddress.ip_network(v.strip(), strict=False)
        except ValueError:
            raise self.error(path, f"{v!r} is not {kind}") from None
        if version is not None and net.version != version:
            raise self.error(path, f"{v!r} is not {kind}")
        return str(net)

    def cidr(self, d: Mapping[str, Any], key: str, version: int | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        return self.cidr_value(v, self.path(key), version)

    def cidrs(self, d: Mapping[str, Any], key: str, item: str) -> tuple[str, ...]:
        """[{<item>: cidr}, ...] as in serviceClusterIPs."""
        out: list[str] = []
        for i, entry in enumerate(self.items(d, key)):
            r = self.sub(f"{key}[{i}]")
            if not isinstance(entry, Mapping):
                raise r.error(r.prefix, f"expected a mapping, found {describe(entry)}")
            c = r.cidr(entry, item)
            if c is not None:  # Calico skips empty entries
                out.append(c)
        return tuple(out)

    def ip(self, d: Mapping[str, Any], key: str, version: int | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        kind = {None: "an IP address", 4: "an IPv4 address", 6: "an IPv6 address"}[version]
        if not isinstance(v, str):
            raise self.error(self.path(key), f"{describe(v)} is not {kind}")
        try:
            ip = ipaddress.ip_address(v.strip())
        except ValueError:
            raise self.error(self.path(key), f"{v!r} is not {kind}") from None
        if version is not None and ip.version != version:
            raise self.error(self.path(key), f"{v!r} is not {kind}")
        return str(ip)

    def interface(self, d: Mapping[str, Any], key: str, version: int) -> str | None:
        """An address with optional prefix length ("10.0.0.2/24" or "10.0.0.2"), as Calico's
        ParseCIDROrIP; kept with its prefix length, address canonical."""
        v = self._get(d, key)
        if v is None or v == "":
            return None
        kind = "an IPv4" if version == 4 else "an IPv6"
        if not isinstance(v, str):
            raise self.error(self.path(key), f"{describe(v)} is not {kind} address or CIDR")
        try:
            iface = ipaddress.ip_interface(v.strip())
        except ValueError:
            raise self.error(self.path(key), f"{v!r} is not {kind} address or CIDR") from None
        if iface.version != version:
            raise self.error(self.path(key), f"{v!r} is not {kind} address or CIDR")
        return f"{iface.ip}/{iface.network.prefixlen}"

    def selector(self, d: Mapping[str, Any], key: str) -> str | None:
        text = self.string(d, key)
        if text is None:
            return None
        try:
            selector.parse(text)
        except selector.SelectorError as e:
            raise self.error(self.path(key), f"{text!r} is not a valid selector: {e}") from None
        return text

    def secret(self, d: Mapping[str, Any], key: str) -> SecretKeyRef | None:
        outer = self.mapping(d, key)
        if not outer:
            return None
        r = self.sub(key)
        ref = r.mapping(outer, "secretKeyRef")
        if not ref:
            raise r.error(r.path("secretKeyRef"), "required (passwords are secret references)")
        rr = r.sub("secretKeyRef")
        name = rr.string(ref, "name")
        secret_key = rr.string(ref, "key")
        if name is None:
            raise rr.error(rr.path("name"), "required")
        if secret_key is None:
            raise rr.error(rr.path("key"), "required")
        # Read as the file NAME/KEY under the secrets directory: only names Kubernetes
        # allows, so a reference cannot point outside it ("../", "/").
        if (problem := secret_name_problem(name)) is not None:
            raise rr.error(rr.path("name"), problem)
        if (problem := secret_key_problem(secret_key)) is not None:
            raise rr.error(rr.path("key"), problem)
        return SecretKeyRef(name, secret_key)


def read_labels(r: Reader, meta: Mapping[str, Any]) -> Mapping[str, str]:
    raw = meta.get("labels")
    if raw is None:
        return NO_LABELS
    if not isinstance(raw, Mapping):
        raise r.error("metadata.labels", f"expected a mapping, found {describe(raw)}")
    out: dict[str, str] = {}
    for k, v in raw.items():
        # YAML reads `label: yes` / `label: true` as a boolean; Calico labels are strings.
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        elif isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise r.error(f"metadata.labels.{k}", f"expected a string, found {describe(v)}")
        out[str(k)] = v
    return types.MappingProxyType(out)
