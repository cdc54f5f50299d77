"""What the etcd store checks before it connects (the TLS files and the password file, each
error naming its file), the certificate validity reader behind the expiry check, and the one
line each gRPC/etcd failure becomes (the details strings as grpcio 1.85 and etcd 3.4.23 give
them; tests/interop/test_etcd_tls.py meets most of them for real)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from calico.errors import DatastoreConfigError
from calico.store.etcd import read_credentials
from calico.store.etcdconfig import EtcdConfig, EtcdTLS, Given, Password
from calico.store.etcdfailures import Kind, explain
from calico.store.pem import certificates, validity

# Made with `openssl ca -startdate 20200101000000Z -enddate 20200102000000Z` (UTCTime).
EXPIRED = b"""-----BEGIN CERTIFICATE-----
MIIBfjCCASWgAwIBAgIBATAKBggqhkjOPQQDAjASMRAwDgYDVQQDDAd0ZXN0IENB
MB4XDTIwMDEwMTAwMDAwMFoXDTIwMDEwMjAwMDAwMFowDzENMAsGA1UEAwwEcm9v
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFG8F+0e5Qriw2xZirhXhuf5Wyzt
5+ELnKsXrAwh+3C445LjRbBLVV/6TYDolVVAIMaq56Mdos+KMCHuzYlnjYyjbzBt
MAkGA1UdEwQCMAAwCwYDVR0PBAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0G
A1UdDgQWBBRtHH4vrfoo8HmCvllvCVjtd60lwzAfBgNVHSMEGDAWgBTPKAcdT9E/
Iw6gai0rRJRrrGgCezAKBggqhkjOPQQDAgNHADBEAiA6+TyaB77CpxQcvA+e4k+V
tgdnJbZaLmJ7D3CxkX76tQIgPh09Wf5Y5+FCbVvdXcAKjZ5Y0Dza2Wa1y7PH45AI
Ayk=
-----END CERTIFICATE-----
"""
# `openssl req -x509 -days 36500`: notAfter past 2049 is a GeneralizedTime (RFC 5280).
CENTURY = b"""-----BEGIN CERTIFICATE-----
MIIBdTCCARugAwIBAgIUT6fO+NbiwLdqxiXrDMOKimrckqQwCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEbG9uZzAgFw0yNjEyMDIwNDQ5MjBaGA8yMTI2MTEwODA0NDky
MFowDzENMAsGA1UEAwwEbG9uZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGr/
YhbxRrKITlTPS1+4xNogPXrx6qkgxWmuMerUxjHk4NE9/rq5LYybbao+0Pn7ddwU
xnvZ+LMux/gEg9CI07ajUzBRMB0GA1UdDgQWBBSbjpL7N0Js9ykpJ5dE2cDSx0bl
yzAfBgNVHSMEGDAWgBSbjpL7N0Js9ykpJ5dE2cDSx0blyzAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIB/g9/nj2iZI9joRc5VHUDiSOGCdbOvuia60
nNJreEhaAiEAndm4xOq78j9RXwWIE+47j7UuuWqyR1V4h/ddsZbmKqU=
-----END CERTIFICATE-----
"""


def test_validity_of_utctime_and_generalizedtime_certificates() -> None:
    (der,) = certificates(EXPIRED)
    span = validity(der)
    assert span.not_before == datetime(2020, 1, 1, tzinfo=UTC)
    assert span.not_after == datetime(2020, 1, 2, tzinfo=UTC)
    assert span.problem(datetime(2026, 1, 1, tzinfo=UTC)) == "expired on 2020-01-02 00:00:00 UTC"
    assert span.problem(datetime(2019, 6, 1, tzinfo=UTC)) == (
        "not valid before 2020-01-01 00:00:00 UTC")
    assert span.problem(datetime(2020, 1, 1, 12, tzinfo=UTC)) is None
    (der,) = certificates(CENTURY)
    assert validity(der).not_after == datetime(2126, 11, 8, 4, 49, 20, tzinfo=UTC)
    assert len(certificates(EXPIRED + CENTURY)) == 2


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"\x04\x00"])
def test_validity_refuses_what_is_not_a_certificate(der: bytes) -> None:
    with pytest.raises(ValueError):
        validity(der)


def test_every_truncation_of_a_certificate_is_refused() -> None:
    (der,) = certificates(EXPIRED)
    for n in range(len(der) // 3):  # the validity sits in the first third
        with pytest.raises(ValueError):
            validity(der[:n])


# --- the files, checked before connecting ----------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


def openssl(tmp: Path, *args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=tmp, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(certificate, its key, another key)."""
    for name in ("a", "b"):
        openssl(tmp_path, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")
    return tmp_path / "a.pem", tmp_path / "a.key", tmp_path / "b.key"


def tls_config(ca: Path | None, cert: Path | None, key: Path | None,
               password: Password | None = None) -> EtcdConfig:
    def g(path: Path | None, origin: str) -> Given | None:
        return Given(str(path), origin) if path is not None else None

    return EtcdConfig(
        (("127.0.0.1", 2379),),
        EtcdTLS(g(ca, "--etcd-ca-cert-file"), g(cert, "--etcd-cert-file"),
                g(key, "--etcd-key-file")),
        username=Given("calico", "--etcd-username") if password else None,
        password=password,
    )


@needs_openssl
def test_good_files_are_read(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cert, key, _ = pair
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    creds = read_credentials(tls_config(cert, cert, key, Password("--etcd-password-file",
                                                                   file=str(pw))))
    assert creds.ca_cert == cert.read_bytes() and creds.key == key.read_bytes()
    assert creds.password == "s3cret"  # the trailing newline of `echo pw > file` dropped
    assert "s3cret" not in repr(creds)


@needs_openssl
def test_each_bad_file_is_named(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cert, key, other_key = pair
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    expired = tmp_path / "expired.pem"
    expired.write_bytes(EXPIRED)
    encrypted = tmp_path / "enc.key"
    openssl(tmp_path, "pkey", "-in", str(key), "-out", str(encrypted), "-aes256",
            "-passout", "pass:x")
    missing = tmp_path / "no-such-password-file"
    cases = [
        (tls_config(tmp_path / "nope.pem", None, None),
         f"etcd CA certificate {tmp_path}/nope.pem (--etcd-ca-cert-file): No such file"),
        (tls_config(empty, None, None), "empty.pem (--etcd-ca-cert-file): the file is empty"),
        (tls_config(junk, None, None), "junk.pem (--etcd-ca-cert-file): not a certificate"),
        (tls_config(None, cert, other_key),
         "b.key (--etcd-key-file) does not go with the client certificate"),
        (tls_config(None, cert, junk), "junk.pem (--etcd-key-file): not a PEM private key"),
        (tls_config(None, expired, key),
         "expired.pem (--etcd-cert-file): expired on 2020-01-02 00:00:00 UTC"),
        (tls_config(None, cert, encrypted), "encrypted with a passphrase"),
        (tls_config(None, None, None, Password("--etcd-password-file", file=str(missing))),
         "etcd password file"),
    ]
    for config, message in cases:
        with pytest.raises(DatastoreConfigError) as info:
            read_credentials(config)
        assert message in str(info.value), (message, str(info.value))


# --- one line per failure ----------------------------------------------------------------------

CHAIN = "failed to connect to all addresses; last error: "
TLS = EtcdConfig(
    (("127.0.0.1", 2379),),
    EtcdTLS(Given("/ca.pem", "ETCD_CA_CERT_FILE"), Given("/c.pem", "ETCD_CERT_FILE"),
            Given("/c.key", "ETCD_KEY_FILE")),
    username=Given("calico", "ETCD_USERNAME"),
    password=Password("ETCD_PASSWORD", value="x"),
)
TLS_NO_CERT = EtcdConfig((("127.0.0.1", 2379),), EtcdTLS(Given("/ca.pem", "--etcd-ca-cert-file")))
PLAIN = EtcdConfig((("127.0.0.1", 2379),))


@pytest.mark.parametrize(
    ("config", "code", "details", "kind", "reason"),
    [
        (TLS, "UNAVAILABLE",
         CHAIN + "UNKNOWN: ipv4:127.0.0.1:23790: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
         "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: "
         "unable to get local issuer certificate: OK",
         Kind.TLS, "TLS: the server's certificate is not trusted by the CA certificate /ca.pem "
         "(ETCD_CA_CERT_FILE): unable to get local issuer certificate"),
        (TLS, "UNAVAILABLE",
         CHAIN + "UNAVAILABLE: ipv4:127.0.0.1:23790: Unwrap failed (TSI_DATA_CORRUPTED)",
         Kind.TLS, "TLS: the server refused the client certificate /c.pem (ETCD_CERT_FILE)"),
        (TLS_NO_CERT, "UNAVAILABLE",
         CHAIN + "UNAVAILABLE: ipv4:127.0.0.1:23790: Unwrap failed (TSI_DATA_CORRUPTED)",
         Kind.TLS, "it requires a client certificate (give --etcd-cert-file"),
        (TLS, "UNAVAILABLE",
         CHAIN + "UNAVAILABLE: ipv4:127.0.0.1:23791: Handshake read failed (Socket closed)",
         Kind.TLS, "TLS handshake failed: the server closed the connection (does it serve "
         "plaintext?"),
        (PLAIN, "UNAVAILABLE", CHAIN + "UNAVAILABLE: ipv4:127.0.0.1:23790: Socket closed",
         Kind.UNREACHABLE, "the server closed the connection (if it serves TLS, use https://"),
        (TLS, "UNAVAILABLE", CHAIN + "UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote "
         "host: Connection refused", Kind.UNREACHABLE, "connection refused"),
        (TLS, "UNAVAILABLE", CHAIN + "UNKNOWN: ipv4:127.0.0.1:53677: Custom verification check "
         "failed with error: UNAUTHENTICATED: Hostname Verification Check failed.",
         Kind.TLS, "TLS: the server's certificate is not for this endpoint (its subjectAltName"),
        (PLAIN, "UNAVAILABLE", "etcdserver: no leader", Kind.UNREACHABLE, "etcdserver: no leader"),
        (TLS, "DEADLINE_EXCEEDED", "Deadline Exceeded", Kind.UNREACHABLE, "no answer within 5 s"),
        (TLS, "INVALID_ARGUMENT",
         "etcdserver: authentication failed, invalid user ID or password",
         Kind.DENIED, "authentication failed for user 'calico': wrong user name or password"),
        (PLAIN, "INVALID_ARGUMENT", "etcdserver: user name is empty",
         Kind.DENIED, "the cluster requires authentication: give --etcd-username"),
        (TLS, "PERMISSION_DENIED", "etcdserver: permission denied",
         Kind.DENIED, "permission denied (user 'calico')"),
        (TLS, "UNAUTHENTICATED", "etcdserver: invalid auth token", Kind.TOKEN, "invalid auth"),
        (TLS, "FAILED_PRECONDITION", "etcdserver: authentication is not enabled",
         Kind.AUTH_NOT_ENABLED, "not enabled"),
        (TLS, "NOT_FOUND", "etcdserver: requested lease not found", Kind.OTHER,
         "etcdserver: requested lease not found"),
    ],
)
def test_each_failure_is_one_clear_line(
    config: EtcdConfig, code: str, details: str, kind: Kind, reason: str
) -> None:
    failure = explain(code, details, config)
    assert failure.kind is kind and reason in failure.reason, failure
    assert "\n" not in failure.reason and "OPENSSL_internal" not in failure.reason
