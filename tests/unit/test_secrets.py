"""Secret references stay inside the secrets directory, and their values stay out of sight:
Kubernetes' name rules at parse time and again at resolution, symlinks that leave the
directory refused, and no password in a repr or an error message."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bgpd.daemon.errors import ConfigError
from bgpd.daemon.reconfig import peer_settings, resolve_password
from bgpd.daemon.secrets import SecretError, read_secret
from bgpd.plan.peering import PeerSpec
from bgpd.session.settings import PeerSettings
from calico import ResourceError, parse_resource
from calico.k8snames import secret_key_problem, secret_name_problem
from calico.model import SecretKeyRef

PASSWORD = "pa55-w0rd-never-shown"


def peer(ref: dict[str, Any]) -> Any:
    return parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "tor"},
            "spec": {"peerIP": "10.0.0.1", "asNumber": 65000, "password": {"secretKeyRef": ref}},
        }
    )


@pytest.mark.parametrize(
    "name", ["bgp", "bgp-secrets", "a.b-c.d", "x" * 253, "0abc", "my-secrets-1"]
)
def test_kubernetes_secret_names_accepted(name: str) -> None:
    assert secret_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "..", ".", "../etc", "a/b", "/etc", "Bgp", "-bgp", "bgp-", "a..b", "x" * 254,
             "bgp\n", "a_b"],
)
def test_other_secret_names_refused(name: str) -> None:
    assert secret_name_problem(name) is not None


@pytest.mark.parametrize("key", ["a", "peer", "tls.crt", "Key_1", "-x", ".hidden", "x" * 253])
def test_kubernetes_secret_keys_accepted(key: str) -> None:
    assert secret_key_problem(key) is None


@pytest.mark.parametrize("key", ["", ".", "..", "..data", "../shadow", "a/b", "k y", "x" * 254])
def test_other_secret_keys_refused(key: str) -> None:
    assert secret_key_problem(key) is not None


def test_model_refuses_a_path_in_a_reference_naming_the_field() -> None:
    with pytest.raises(ResourceError) as e:
        peer({"name": "../../etc", "key": "shadow"})
    assert str(e.value).startswith(
        "BGPPeer 'tor': spec.password.secretKeyRef.name: '../../etc' is not a Kubernetes "
        "secret name"
    )
    with pytest.raises(ResourceError) as e:
        peer({"name": "bgp", "key": "../../../etc/shadow"})
    assert str(e.value).startswith("BGPPeer 'tor': spec.password.secretKeyRef.key: ")
    with pytest.raises(ResourceError) as e:
        parse_resource(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPConfiguration",
                "metadata": {"name": "default"},
                "spec": {"nodeMeshPassword": {"secretKeyRef": {"name": "/etc", "key": "k"}}},
            }
        )
    assert "spec.nodeMeshPassword.secretKeyRef.name: '/etc'" in str(e.value)
    assert peer({"name": "bgp", "key": "tor"}).password == SecretKeyRef("bgp", "tor")


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "bgp").mkdir(parents=True)
    (root / "bgp" / "tor").write_text(PASSWORD + "\n")
    (tmp_path / "outside").write_text("not for bgpd\n")
    return root


def test_reads_the_key_file(secrets: Path) -> None:
    assert read_secret(str(secrets), SecretKeyRef("bgp", "tor")) == PASSWORD


def test_refuses_names_the_model_would_refuse(secrets: Path) -> None:
    # A SecretKeyRef made without the model (or by an older one): checked again.
    for ref in (SecretKeyRef("..", "outside"), SecretKeyRef("bgp", "../../outside"),
                SecretKeyRef("bgp/../..", "outside")):
        with pytest.raises(SecretError, match="is not a Kubernetes secret"):
            read_secret(str(secrets), ref)


def test_symlink_inside_the_directory_is_followed(secrets: Path) -> None:
    # A mounted Secret: each key is a symlink into the ..data directory beside it.
    mounted = secrets / "mounted"
    (mounted / "..2024_01_01").mkdir(parents=True)
    (mounted / "..2024_01_01" / "tor").write_text(PASSWORD)
    os.symlink("..2024_01_01", mounted / "..data")
    os.symlink("..data/tor", mounted / "tor")
    assert read_secret(str(secrets), SecretKeyRef("mounted", "tor")) == PASSWORD


def test_symlink_leaving_the_directory_is_refused(secrets: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside", secrets / "bgp" / "escape")
    with pytest.raises(SecretError, match="outside the secrets directory"):
        read_secret(str(secrets), SecretKeyRef("bgp", "escape"))
    os.symlink(tmp_path, secrets / "up")
    with pytest.raises(SecretError, match="outside the secrets directory"):
        read_secret(str(secrets), SecretKeyRef("up", "outside"))
    os.symlink("/etc/hostname", secrets / "bgp" / "host")
    with pytest.raises(SecretError, match="outside the secrets directory"):
        read_secret(str(secrets), SecretKeyRef("bgp", "host"))


def test_the_secrets_directory_may_itself_be_a_symlink(secrets: Path, tmp_path: Path) -> None:
    os.symlink(secrets, tmp_path / "link")
    assert read_secret(str(tmp_path / "link"), SecretKeyRef("bgp", "tor")) == PASSWORD


def test_only_regular_files_are_read(secrets: Path) -> None:
    os.mkfifo(secrets / "bgp" / "fifo")  # would block a plain open()
    with pytest.raises(SecretError, match="not a regular file"):
        read_secret(str(secrets), SecretKeyRef("bgp", "fifo"))
    (secrets / "bgp" / "dir").mkdir()
    with pytest.raises(SecretError):
        read_secret(str(secrets), SecretKeyRef("bgp", "dir"))
    with pytest.raises(SecretError, match="No such file"):
        read_secret(str(secrets), SecretKeyRef("bgp", "missing"))
    (secrets / "bgp" / "empty").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(str(secrets), SecretKeyRef("bgp", "empty"))
    (secrets / "bgp" / "huge").write_bytes(b"x" * 5000)
    with pytest.raises(SecretError, match="longer than"):
        read_secret(str(secrets), SecretKeyRef("bgp", "huge"))


def _spec(ref: SecretKeyRef | None) -> PeerSpec:
    return PeerSpec(
        name="tor", peer_address="10.0.0.1", peer_port=179, peer_as=65000, local_as=64512,
        type="global", family="ipv4", password=ref,
    )


def test_password_never_in_a_repr_or_an_error(secrets: Path) -> None:
    spec = _spec(SecretKeyRef("bgp", "tor"))
    password = resolve_password(spec, str(secrets))
    assert password == PASSWORD
    settings = peer_settings(spec, 1, password)
    assert settings.password == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert PASSWORD not in repr(spec)
    # An over-long key: the error says so without the key.
    long_key = "k" * 81
    with pytest.raises(ValueError) as e:
        PeerSettings(name="x", peer_address="10.0.0.1", peer_as=1, local_as=1, router_id=1,
                     password=long_key)
    assert long_key not in str(e.value)


def test_resolution_errors_name_the_session(secrets: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"session tor: password .*needs --secrets-dir"):
        resolve_password(_spec(SecretKeyRef("bgp", "tor")), None)
    os.symlink(tmp_path / "outside", secrets / "bgp" / "escape")
    with pytest.raises(ConfigError) as e:
        resolve_password(_spec(SecretKeyRef("bgp", "escape")), str(secrets))
    assert str(e.value).startswith("session tor: password secret bgp/escape: resolves to ")
    assert "not for bgpd" not in str(e.value)
