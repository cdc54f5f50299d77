"""What a failed etcd call means, in one line a user can act on, and what to do next.

gRPC reports every connection problem as UNAVAILABLE with a chain of C-core details (an
untrusted server certificate, a client certificate the server refused, a refused port); etcd
reports wrong credentials as INVALID_ARGUMENT and a lost token as UNAUTHENTICATED. `explain`
turns (status code name, details) into a `Failure`: its kind decides between the next
endpoint (unreachable, TLS), authenticating again (a token etcd forgot: a restart, or
--auth-token-ttl), and giving up (credentials and permissions are the same on every member).
Pure; the strings matched are those of grpcio 1.x and etcd 3.4/3.5.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from calico.store.etcdconfig import ETCD_ENV, EtcdConfig

__all__ = ["Failure", "Kind", "explain"]


class Kind(enum.Enum):
    UNREACHABLE = "unreachable"  # no connection: try the next endpoint
    TLS = "tls"  # the TLS handshake failed, on either side: try the next endpoint
    TOKEN = "token"  # etcd no longer knows our auth token: authenticate again
    AUTH_NOT_ENABLED = "auth-not-enabled"  # a user name for a cluster without auth
    DENIED = "denied"  # wrong credentials, or a permission the user lacks
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    reason: str


_CHAIN_PREFIX = re.compile(r"^failed to connect to all addresses; last error: ")
_ADDRESS_PREFIX = re.compile(r"^[A-Z_]+: (ipv4|ipv6|unix|dns):\S+?: ")
_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")
_SSL_REASON = re.compile(r"OPENSSL_internal:([A-Z0-9_]+)")


def _core(details: str) -> str:
    """The C-core's last error without the address boilerplate around it."""
    text = _CHAIN_PREFIX.sub("", details.strip())
    return _ADDRESS_PREFIX.sub("", text).removesuffix(": OK")


def _who(config: EtcdConfig) -> str:
    return f"user {config.username.value!r}" if config.username else "no user name given"


def explain(code: str, details: str, config: EtcdConfig) -> Failure:
    """The meaning of a gRPC status `code` (its name, e.g. "UNAVAILABLE") and `details`."""
    if code == "DEADLINE_EXCEEDED":
        return Failure(Kind.UNREACHABLE, f"no answer within {config.timeout:g} s")
    if code == "UNAVAILABLE":
        return _connection(_core(details), config)
    if code == "UNAUTHENTICATED" and "auth token" in details:
        return Failure(Kind.TOKEN, details)
    if code == "FAILED_PRECONDITION" and "authentication is not enabled" in details:
        return Failure(Kind.AUTH_NOT_ENABLED, "authentication is not enabled on this cluster")
    if "authentication failed" in details:
        return Failure(
            Kind.DENIED,
            f"authentication failed for {_who(config)}: wrong user name or password",
        )
    if "user name is empty" in details:
        return Failure(
            Kind.DENIED,
            "the cluster requires authentication: give --etcd-username and a password "
            f"(--etcd-password-file, or {ETCD_ENV['username']} and {ETCD_ENV['password']})",
        )
    if code == "PERMISSION_DENIED":
        return Failure(Kind.DENIED, f"permission denied ({_who(config)})")
    return Failure(Kind.OTHER, details or code)


def _connection(core: str, config: EtcdConfig) -> Failure:
    tls = config.tls
    if tls is not None:
        verify = _VERIFY.search(core)
        if verify:
            trust = (
                f"the CA certificate {tls.ca_cert}"
                if tls.ca_cert
                else f"the system's CAs (give --etcd-ca-cert-file or {ETCD_ENV['ca_cert_file']})"
            )
            return Failure(
                Kind.TLS, f"TLS: the server's certificate is not trusted by {trust}: "
                f"{verify.group(1).strip()}",
            )
        if "Hostname Verification" in core:
            return Failure(
                Kind.TLS, "TLS: the server's certificate is not for this endpoint (its "
                "subjectAltName lacks the endpoint's host name or address)",
            )
        if "TSI_DATA_CORRUPTED" in core or "ALERT" in core:
            # TLS 1.3: the client's handshake is done before the server checks our
            # certificate; its alert arrives as undecryptable data.
            if tls.cert is None:
                return Failure(
                    Kind.TLS, "TLS: the server refused the connection: it requires a client "
                    f"certificate (give --etcd-cert-file and --etcd-key-file, or "
                    f"{ETCD_ENV['cert_file']} and {ETCD_ENV['key_file']})",
                )
            return Failure(
                Kind.TLS, f"TLS: the server refused the client certificate {tls.cert}: not "
                "signed by a CA it trusts, expired, or revoked",
            )
        if "Handshake read failed" in core or "Tls handshake failed" in core:
            ssl = _SSL_REASON.search(core)
            detail = ssl.group(1) if ssl else core
            if "Socket closed" in core:
                detail = "the server closed the connection (does it serve plaintext? then use "\
                    "etcd:// or http://)"
            return Failure(Kind.TLS, f"TLS handshake failed: {detail}")
    elif "Socket closed" in core:
        return Failure(
            Kind.UNREACHABLE, "the server closed the connection (if it serves TLS, use "
            "https:// with --etcd-ca-cert-file)",
        )
    if "Connection refused" in core:
        return Failure(Kind.UNREACHABLE, "connection refused")
    return Failure(Kind.UNREACHABLE, core or "unavailable")
