"""Test certificates made with `openssl` in a temp dir: a CA, an etcd server certificate for the
addresses a test uses, client certificates (good, expired, signed by another CA), and a
second, unrelated CA. The expired one is issued with `openssl ca -startdate/-enddate` in the
past (`openssl x509 -days` cannot go negative and faketime is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")
MISSING = "openssl not installed"

_EXTENSIONS = """\
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {san}
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""

_CA_CONFIG = """\
[ca]
default_ca = test
[test]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
certificate = {cert}
private_key = {key}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
"""


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None, MISSING
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}:\n{r.stderr}")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    other_ca: Pair
    server: Pair
    client: Pair
    expired_client: Pair
    foreign_client: Pair  # signed by other_ca, which etcd does not trust


def _key_and_csr(dir: Path, name: str, cn: str) -> tuple[Path, Path]:
    key, csr = dir / f"{name}.key", dir / f"{name}.csr"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=dir)
    return key, csr


def _ca(dir: Path, name: str) -> Pair:
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN=pybgpd test {name}", cwd=dir)
    return Pair(cert, key)


def _sign(dir: Path, ca: Pair, name: str, cn: str, section: str) -> Pair:
    key, csr = _key_and_csr(dir, name, cn)
    cert = dir / f"{name}.pem"
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(cert), "-days", "2",
             "-extfile", str(dir / "ext.cnf"), "-extensions", section, cwd=dir)
    return Pair(cert, key)


def make_pki(dir: Path, *, addresses: tuple[str, ...] = ("127.0.0.1",),
             names: tuple[str, ...] = ("localhost",)) -> Pki:
    """Everything a TLS etcd test needs; the server certificate names `addresses` and
    `names` (its subjectAltName), the client certificates the user `root`."""
    dir.mkdir(parents=True, exist_ok=True)
    san = ",".join([f"IP:{a}" for a in addresses] + [f"DNS:{n}" for n in names])
    (dir / "ext.cnf").write_text(_EXTENSIONS.format(san=san))
    ca = _ca(dir, "ca")
    other = _ca(dir, "other-ca")
    server = _sign(dir, ca, "server", "etcd", "server")
    client = _sign(dir, ca, "client", "root", "client")
    foreign = _sign(dir, other, "foreign", "root", "client")
    # The expired client: `openssl ca` takes explicit dates, in the past.
    db = dir / "ca-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").write_text("")
    (db / "serial").write_text("01\n")
    config = dir / "ca.cnf"
    config.write_text(_CA_CONFIG.format(dir=db, cert=ca.cert, key=ca.key)
                      + (dir / "ext.cnf").read_text())
    key, csr = _key_and_csr(dir, "expired", "root")
    expired = dir / "expired.pem"
    _openssl("ca", "-batch", "-config", str(config), "-in", str(csr), "-out", str(expired),
             "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
             "-extensions", "client", "-notext", cwd=dir)
    return Pki(ca, other, server, client, Pair(expired, key), foreign)
