"""CNI 1.0 requests and answers, pure: the runtime's environment and stdin become a
`CniRequest` (or a `CniError` with the spec's code), and a `CniResult` or `CniError` becomes
the one JSON document printed on stdout.

The network configuration this plugin reads (Calico's names where Calico has them):

    {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "felix-cni",
     "datastore": "sqlite:///var/lib/calico/calico.db",
     "nodename": "node1", "mtu": 1500,
     "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "false",
              "ipv4_pools": ["10.0.0.0/16"], "ipv6_pools": []},
     "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}}}

or, for etcd, Calico's keys in place of "datastore":

     "etcd_endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
     "etcd_ca_cert_file": "/etc/calico/etcd-ca.pem",
     "etcd_cert_file": "/etc/calico/etcd-cert.pem", "etcd_key_file": "/etc/calico/etcd-key.pem"

As in Calico's plugin, a TLS file not named here comes from calico-node's variable
(ETCD_CA_CERT_FILE, ...), and the etcd user name and password come from ETCD_USERNAME and
ETCD_PASSWORD. https:// endpoints are spoken to over TLS, never plaintext.

The workload's labels (which policy selectors match) come from `args.cni.labels` (the CNI
conventions' labels) or, as Calico's plugin reads them, from
`args["org.apache.mesos"].network_info.labels.labels`; there is no Kubernetes API to ask.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.errors import DatastoreConfigError
from calico.store.etcdconfig import (
    ETCD_ENV,
    DatastoreConfig,
    EtcdSettings,
    Given,
    datastore_config,
    etcd_settings_from_env,
    is_etcd_url,
)

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CURRENT_VERSION = "1.0.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")

# Error codes of the CNI spec (SPEC.md "Error").
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
# Plugin-specific codes are 100 and up.
IPAM_FAILURE = 100
CHECK_FAILED = 101

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        self.code = code
        self.msg = msg
        self.details = details
        super().__init__(f"{msg}: {details}" if details else msg)

    def to_json(self, version: str = CURRENT_VERSION) -> str:
        doc: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return json.dumps(doc)


@dataclass(frozen=True, slots=True)
class IpamConf:
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetConf:
    cni_version: str
    name: str
    type: str
    datastore: DatastoreConfig
    nodename: str | None = None
    mtu: int = 1500
    ipam: IpamConf = field(default_factory=IpamConf)
    prev_result: Mapping[str, Any] | None = None
    # What a teardown (DEL) found wrong and did without (see parse_conf).
    ignored: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CniRequest:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    path: tuple[str, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    conf: NetConf | None = None
    cni_version: str = CURRENT_VERSION

    @property
    def k8s_namespace(self) -> str | None:
        return self.args.get("K8S_POD_NAMESPACE") or None

    @property
    def k8s_pod(self) -> str | None:
        return self.args.get("K8S_POD_NAME") or None

    @property
    def handle_id(self) -> str:
        """Calico's handle for a container: "<network name>.<container ID>"."""
        assert self.conf is not None
        return f"{self.conf.name}.{self.container_id}"


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise CniError(INVALID_CONFIG, "invalid network configuration", f"{where}: not a boolean")


def _pools(value: Any, where: str, version: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, "invalid network configuration", f"{where}: not a list")
    out = []
    for item in value:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise CniError(
                INVALID_CONFIG, "invalid network configuration", f"{where}: {item!r} is no CIDR"
            ) from None
        if net.version != version:
            raise CniError(
                INVALID_CONFIG,
                "invalid network configuration",
                f"{where}: {item} is not IPv{version}",
            )
        out.append(str(net))
    return tuple(out)


def _bad(detail: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid network configuration", detail)


def _labels(doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    args = doc.get("args")
    if args is None:
        return ()
    if not isinstance(args, dict):
        raise _bad("args must be an object")
    found: list[Any] = []
    cni = args.get("cni")
    if isinstance(cni, dict) and cni.get("labels") is not None:
        found = cni["labels"]
    mesos = args.get("org.apache.mesos")
    if not found and isinstance(mesos, dict):
        info = mesos.get("network_info") or {}
        found = ((info.get("labels") or {}).get("labels") or []) if isinstance(info, dict) else []
    if not isinstance(found, list):
        raise _bad("args.cni.labels must be a list of {key, value}")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(found):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise _bad(f"args labels[{i}] must be {{\"key\": ..., \"value\": ...}}")
        value = item.get("value", "")
        if not isinstance(value, str):
            raise _bad(f"args labels[{i}].value must be a string")
        out.append((item["key"], value))
    return tuple(out)


# Calico's older or DNS-based ways of naming etcd, which this plugin does not read.
_UNSUPPORTED_ETCD_KEYS = ("etcd_discovery_srv", "etcd_authority", "etcd_scheme")
_ETCD_FILE_KEYS = {
    "ca_cert_file": "etcd_ca_cert_file",
    "cert_file": "etcd_cert_file",
    "key_file": "etcd_key_file",
}


def _datastore(doc: Mapping[str, Any], env: Mapping[str, str]) -> DatastoreConfig:
    """The datastore the configuration names: "datastore", else Calico's etcd_* keys (each
    TLS file falling back to calico-node's variable), else ETCD_ENDPOINTS."""
    for key in _UNSUPPORTED_ETCD_KEYS:
        if doc.get(key):
            raise CniError(
                UNSUPPORTED_FIELD, "unsupported field in network configuration",
                f"{key}: not supported; name the endpoints in etcd_endpoints",
            )
    strings = {}
    for key in ("datastore", "etcd_endpoints", *_ETCD_FILE_KEYS.values()):
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{key} must be a string")
        if value and value.strip():
            strings[key] = value.strip()
    if "datastore" in strings:
        url = Given(strings["datastore"], "datastore")
    elif "etcd_endpoints" in strings:
        url = Given(strings["etcd_endpoints"], "etcd_endpoints")
    elif env.get(ETCD_ENV["endpoints"], "").strip():
        url = Given(env[ETCD_ENV["endpoints"]].strip(), ETCD_ENV["endpoints"])
    else:
        raise _bad("datastore must be sqlite:///PATH or etcd (etcd_endpoints https://HOST:PORT)")
    files = {name: Given(strings[key], key) for name, key in _ETCD_FILE_KEYS.items()
             if key in strings}
    settings = EtcdSettings(files.get("ca_cert_file"), files.get("cert_file"),
                            files.get("key_file"))
    if is_etcd_url(url.value):
        settings = settings.over(etcd_settings_from_env(env))
    elif not url.value.startswith("sqlite://"):
        raise _bad(f"datastore must be sqlite:///PATH or etcd, not {url.value!r}")
    try:
        return datastore_config(url, settings)
    except DatastoreConfigError as exc:
        raise _bad(str(exc)) from None


def _ipam(doc: Mapping[str, Any]) -> IpamConf:
    ipam_doc = doc.get("ipam") or {}
    if not isinstance(ipam_doc, dict):
        raise _bad("ipam must be an object")
    ipam_type = ipam_doc.get("type", "calico-ipam")
    if ipam_type != "calico-ipam":
        raise CniError(
            UNSUPPORTED_FIELD,
            "unsupported field in network configuration",
            f"ipam.type {ipam_type!r}: only calico-ipam is built in",
        )
    ipam = IpamConf(
        assign_ipv4=_bool(ipam_doc.get("assign_ipv4", True), "ipam.assign_ipv4"),
        assign_ipv6=_bool(ipam_doc.get("assign_ipv6", False), "ipam.assign_ipv6"),
        ipv4_pools=_pools(ipam_doc.get("ipv4_pools"), "ipam.ipv4_pools", 4),
        ipv6_pools=_pools(ipam_doc.get("ipv6_pools"), "ipam.ipv6_pools", 6),
    )
    if not ipam.assign_ipv4 and not ipam.assign_ipv6:
        raise _bad("ipam assigns neither IPv4 nor IPv6")
    return ipam


def _mtu(doc: Mapping[str, Any]) -> int:
    mtu = doc.get("mtu", 1500)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise _bad(f"mtu {mtu!r} is not between 68 and 65535")
    return mtu


def parse_conf(
    stdin: bytes, env: Mapping[str, str] | None = None, *, teardown: bool = False
) -> NetConf:
    """The network configuration. With `teardown` (DEL), the parts only ADD uses (the ipam
    section, mtu, the workload's labels in args) may be wrong or changed since the ADD:
    the problems go into `ignored` and the defaults are used, so a configuration change
    never wedges teardown; DEL releases by handle, which needs none of them."""
    try:
        doc = json.loads(stdin or b"{}")
    except ValueError as exc:
        raise CniError(
            DECODING_FAILURE, "cannot decode the network configuration", str(exc)
        ) from None
    if not isinstance(doc, dict):
        raise CniError(DECODING_FAILURE, "cannot decode the network configuration", "not an object")
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise _bad("cniVersion is required")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"config version {version}; plugin supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    name = doc.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", name):
        raise _bad("name is required (letters, digits, '_', '.', '-')")
    datastore = _datastore(doc, env or {})
    ignored: list[str] = []
    try:
        ipam = _ipam(doc)
    except CniError as exc:
        if not teardown:
            raise
        ipam = IpamConf()
        ignored.append(str(exc))
    try:
        mtu = _mtu(doc)
    except CniError as exc:
        if not teardown:
            raise
        mtu = 1500
        ignored.append(str(exc))
    nodename = doc.get("nodename")
    if nodename is not None and (not isinstance(nodename, str) or not nodename):
        raise _bad("nodename must be a non-empty string")
    prev = doc.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        if not teardown:
            raise _bad("prevResult must be an object")
        ignored.append("prevResult is not an object")
        prev = None
    try:
        labels = _labels(doc)
    except CniError as exc:  # only ADD sets the workload's labels
        if not teardown:
            raise
        labels = ()
        ignored.append(str(exc))
    return NetConf(
        cni_version=version,
        name=name,
        type=str(doc.get("type", "")),
        datastore=datastore,
        nodename=nodename,
        mtu=mtu,
        ipam=ipam,
        prev_result=prev,
        ignored=tuple(ignored),
        labels=labels,
    )


def _cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: "K1=V1;K2=V2"."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part:
            continue
        if "=" not in part:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"{part!r} is not KEY=VALUE")
        k, v = part.split("=", 1)
        out[k] = v
    return out


def _valid_ifname(name: str) -> bool:
    return (
        0 < len(name) <= 15
        and name not in (".", "..")
        and not any(c in name for c in "/:")
        and not any(c.isspace() for c in name)
    )


def parse_request(env: Mapping[str, str], stdin: bytes) -> CniRequest:
    """What the runtime asked, checked as the spec requires; raises CniError."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(
            INVALID_ENVIRONMENT, "invalid CNI_COMMAND", f"{command!r} is not one of {COMMANDS}"
        )
    if command == "VERSION":
        version = CURRENT_VERSION
        try:
            doc = json.loads(stdin or b"{}")
            if isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str):
                version = doc["cniVersion"]
        except ValueError:
            pass
        return CniRequest(command, cni_version=version)
    conf = parse_conf(stdin, env, teardown=command == "DEL")
    missing = [
        var
        for var in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_PATH")
        if not env.get(var)
        and not (var == "CNI_NETNS" and command == "DEL")
        and not (var == "CNI_PATH" and command == "DEL")
    ]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, "missing environment variables", ", ".join(missing))
    container_id = env["CNI_CONTAINERID"]
    if not _CONTAINER_ID.match(container_id):
        raise CniError(
            INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            "letters, digits, '_', '.' and '-' only, starting with a letter or digit",
        )
    ifname = env["CNI_IFNAME"]
    if not _valid_ifname(ifname):
        raise CniError(INVALID_ENVIRONMENT, "invalid CNI_IFNAME", f"{ifname!r}")
    if command == "CHECK" and conf.cni_version.startswith("0.3"):
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            "CHECK needs cniVersion 0.4.0 or later",
        )
    return CniRequest(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        args=_cni_args(env.get("CNI_ARGS", "")),
        conf=conf,
        cni_version=conf.cni_version,
    )


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str
    sandbox: str = ""


@dataclass(frozen=True, slots=True)
class IPConfig:
    address: str  # "10.0.0.5/32"
    interface: int
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class CniResult:
    interfaces: tuple[Interface, ...]
    ips: tuple[IPConfig, ...]
    routes: tuple[str, ...] = ()  # destinations, via the gateway of their family

    def to_doc(self, version: str = CURRENT_VERSION) -> dict[str, Any]:
        """The result in `version`'s layout (0.3.x and 0.4.0 add "version" to each IP)."""
        interfaces = []
        for i in self.interfaces:
            d = {"name": i.name, "mac": i.mac}
            if i.sandbox:
                d["sandbox"] = i.sandbox
            interfaces.append(d)
        ips = []
        for ip in self.ips:
            d2: dict[str, Any] = {}
            if not version.startswith("1."):
                d2["version"] = "6" if ":" in ip.address else "4"
            d2["address"] = ip.address
            if ip.gateway:
                d2["gateway"] = ip.gateway
            d2["interface"] = ip.interface
            ips.append(d2)
        return {
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": [{"dst": r} for r in self.routes],
            "dns": {},
        }

    def to_json(self, version: str = CURRENT_VERSION) -> str:
        return json.dumps(self.to_doc(version))


def version_json(version: str = CURRENT_VERSION) -> str:
    return json.dumps({"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)})


def prev_addresses(prev: Mapping[str, Any] | None) -> list[str]:
    """The addresses of a prevResult (for CHECK)."""
    if not prev:
        return []
    ips: Sequence[Any] = prev.get("ips") or ()
    return [str(ip.get("address")) for ip in ips if isinstance(ip, Mapping)]
