"""Where the datastore is and how to reach it, as one value (`DatastoreConfig`), built the same
way for every entry point (bgpd, bgpctl, felix, felix-cni) from a URL and the etcd settings
given as flags, calico-node's environment or Calico's CNI configuration keys.

URLs: `file:///PATH.yaml`, `sqlite:///PATH`, plaintext etcd as `etcd://HOST:PORT[,HOST:PORT]`
or `http://...`, and etcd over TLS as `https://HOST:PORT[,HOST:PORT]`. A list may also repeat
the scheme on every member, as calico-node's ETCD_ENDPOINTS does
(`https://10.0.0.1:2379,https://10.0.0.2:2379`); it may not mix schemes.

Never plaintext where TLS was asked for: TLS files with a plaintext URL are refused, not
ignored. A user name needs a password and the other way round; a client certificate needs its
key. The password is kept out of every repr; its file is read when a connection is made.

Pure: nothing here opens a file. The etcd backend (`etcd.py`) reads and checks the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from calico.errors import DatastoreConfigError

__all__ = [
    "ETCD_ENV",
    "DatastoreConfig",
    "EtcdConfig",
    "EtcdSettings",
    "EtcdTLS",
    "Given",
    "Password",
    "datastore_config",
    "etcd_settings_from_env",
    "is_etcd_url",
    "parse_endpoints",
]

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 5.0
# calico-node's names for the etcd settings (libcalico-go's apiconfig).
ETCD_ENV = {
    "endpoints": "ETCD_ENDPOINTS",
    "ca_cert_file": "ETCD_CA_CERT_FILE",
    "cert_file": "ETCD_CERT_FILE",
    "key_file": "ETCD_KEY_FILE",
    "username": "ETCD_USERNAME",
    "password": "ETCD_PASSWORD",
}
_ETCD_SCHEMES = {"etcd": False, "http": False, "https": True}


@dataclass(frozen=True, slots=True)
class Given:
    """A setting and where it came from (`--etcd-cert-file`, `ETCD_CERT_FILE`,
    `etcd_cert_file`), so an error can name what to fix."""

    value: str
    origin: str

    def __str__(self) -> str:
        return f"{self.value} ({self.origin})"


@dataclass(frozen=True, slots=True)
class Password:
    """An etcd password: the contents of `file` (read at each connection, so a rotated secret
    is picked up), or `value` as given (ETCD_PASSWORD). Never shown."""

    origin: str
    file: str | None = None
    value: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"the password file {self.file} ({self.origin})" if self.file else self.origin


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    """The etcd settings as given (any may be missing), before they are checked."""

    ca_cert_file: Given | None = None
    cert_file: Given | None = None
    key_file: Given | None = None
    username: Given | None = None
    password: Password | None = None

    def over(self, fallback: EtcdSettings) -> EtcdSettings:
        """Each setting given here, else `fallback`'s (flags over the environment)."""
        return EtcdSettings(
            self.ca_cert_file or fallback.ca_cert_file,
            self.cert_file or fallback.cert_file,
            self.key_file or fallback.key_file,
            self.username or fallback.username,
            self.password or fallback.password,
        )

    def given(self) -> list[str]:
        """Where each setting given came from."""
        files = (self.ca_cert_file, self.cert_file, self.key_file, self.username)
        origins = [g.origin for g in files if g is not None]
        return origins + ([self.password.origin] if self.password is not None else [])


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """TLS to every endpoint: the CA that signs the servers' certificates (None: the system's
    trust store), and our client certificate and key (both or neither)."""

    ca_cert: Given | None = None
    cert: Given | None = None
    key: Given | None = None


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    endpoints: tuple[tuple[str, int], ...]
    tls: EtcdTLS | None = None
    username: Given | None = None
    password: Password | None = None
    # Per call and endpoint: a connection attempt, a handshake or a request.
    timeout: float = DEFAULT_TIMEOUT

    @property
    def url(self) -> str:
        """The endpoints as one URL (never with credentials)."""
        return ("https://" if self.tls else "etcd://") + ",".join(
            endpoint_text(h, p) for h, p in self.endpoints
        )


@dataclass(frozen=True, slots=True)
class DatastoreConfig:
    """A datastore: its URL, and for etcd how to connect. `str()` is the URL, which holds no
    secret, so the value can stand wherever a URL was printed."""

    url: str
    etcd: EtcdConfig | None = None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0] if "://" in self.url else "file"

    def __str__(self) -> str:
        return self.url


def endpoint_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_etcd_url(url: str) -> bool:
    return url.split("://", 1)[0] in _ETCD_SCHEMES if "://" in url else False


def parse_endpoints(url: str) -> tuple[bool, list[tuple[str, int]]]:
    """(TLS?, [(host, port)]) of an etcd URL list: `etcd://h1:2379,h2`, `https://h1,h2:2380`
    or `https://h1:2379,https://h2:2379`. The port defaults to 2379; an IPv6 host is written in
    brackets."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _ETCD_SCHEMES:
        raise DatastoreConfigError(
            f"not an etcd URL: {url!r} (use https://HOST:PORT[,HOST:PORT] or etcd://HOST:PORT)"
        )
    endpoints: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in url.split(","))):
        if "://" in part:
            own = part.split("://", 1)[0]
            if _ETCD_SCHEMES.get(own) != _ETCD_SCHEMES[scheme]:
                raise DatastoreConfigError(
                    f"{url!r} mixes TLS and plaintext endpoints ({scheme}:// and {own}://)"
                )
            part = part.split("://", 1)[1]
        part = part.rstrip("/")
        if part:
            endpoints.append(_endpoint(url, part))
    if not endpoints:
        raise DatastoreConfigError(f"no endpoints in {url!r}")
    return _ETCD_SCHEMES[scheme], endpoints


def _endpoint(url: str, part: str) -> tuple[str, int]:
    host, port = part, DEFAULT_PORT
    if part.startswith("["):
        end = part.find("]")
        if end < 0:
            raise DatastoreConfigError(f"unclosed '[' in {url!r}")
        host, tail = part[1:end], part[end + 1 :]
        if tail.startswith(":"):
            port = _port(url, tail[1:])
        elif tail:
            raise DatastoreConfigError(f"bad endpoint {part!r} in {url!r}")
    elif part.count(":") == 1:
        host, port_text = part.split(":")
        port = _port(url, port_text)
    if not host or "/" in host or "@" in host:
        raise DatastoreConfigError(f"bad endpoint {part!r} in {url!r} (want HOST:PORT)")
    return host, port


def _port(url: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatastoreConfigError(f"bad port {text!r} in {url!r}")
    return int(text)


def datastore_config(
    url: Given, settings: EtcdSettings = EtcdSettings(), *, timeout: float = DEFAULT_TIMEOUT
) -> DatastoreConfig:
    """The datastore `url` names, with the etcd `settings` (already merged by precedence by
    the caller). Raises DatastoreConfigError for settings that cannot work together."""
    if not is_etcd_url(url.value):
        if settings.given():
            raise DatastoreConfigError(
                f"{', '.join(settings.given())}: only for an etcd datastore, and {url} is not one"
            )
        return DatastoreConfig(url.value)
    tls, endpoints = parse_endpoints(url.value)
    ca, cert, key = settings.ca_cert_file, settings.cert_file, settings.key_file
    files = [f for f in (ca, cert, key) if f is not None]
    if files and not tls:
        # Calico's CNI plugin used to drop the scheme and talk plaintext here: refuse instead.
        raise DatastoreConfigError(
            f"{files[0].origin} is set but {url} is plaintext: use https:// endpoints "
            "(refusing to talk plaintext to a cluster configured for TLS)"
        )
    if cert is None and key is not None:
        raise DatastoreConfigError(f"{key.origin} is set without the client certificate")
    if cert is not None and key is None:
        raise DatastoreConfigError(f"{cert.origin} is set without the client key")
    username, password = settings.username, settings.password
    if username is not None and not username.value:
        username = None
    if username is not None and password is None:
        raise DatastoreConfigError(
            f"{username.origin} is set without a password (--etcd-password-file or "
            f"{ETCD_ENV['password']})"
        )
    if password is not None and username is None:
        raise DatastoreConfigError(f"{password.origin} is set without a user name")
    etcd = EtcdConfig(
        endpoints=tuple(endpoints),
        tls=EtcdTLS(ca, cert, key) if tls else None,
        username=username,
        password=password,
        timeout=timeout,
    )
    return DatastoreConfig(etcd.url, etcd)


def etcd_settings_from_env(env: Mapping[str, str]) -> EtcdSettings:
    """calico-node's ETCD_* settings in `env`. Empty values count as unset: Calico's manifests
    leave them empty when unused."""

    def given(name: str) -> Given | None:
        var = ETCD_ENV[name]
        value = env.get(var, "").strip()
        return Given(value, var) if value else None

    var = ETCD_ENV["password"]
    return EtcdSettings(
        given("ca_cert_file"),
        given("cert_file"),
        given("key_file"),
        given("username"),
        Password(var, value=env[var]) if env.get(var) else None,
    )
