"""The datastore settings as one value: etcd URLs (https vs plaintext, ETCD_ENDPOINTS lists),
the rules that refuse settings which cannot work (never plaintext when TLS files are given),
flags over calico-node's environment, Calico's CNI keys, and the password kept out of every
repr, error and log."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from typing import Any

import pytest

from calico.datastore_args import add_datastore_arguments, datastore_from_args, without_secrets
from calico.errors import DatastoreConfigError, Unavailable
from calico.store.etcdconfig import (
    DatastoreConfig,
    EtcdSettings,
    Given,
    Password,
    datastore_config,
    etcd_settings_from_env,
    parse_endpoints,
)
from felix.cni.request import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError, parse_request

SECRET = "Hunter2-unit-test-pw"


def given(url: str) -> Given:
    return Given(url, "--datastore")


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "tls", "endpoints"),
    [
        ("etcd://10.0.0.1:2379", False, [("10.0.0.1", 2379)]),
        ("http://a,b:2380", False, [("a", 2379), ("b", 2380)]),
        ("https://a:2379,b:2379", True, [("a", 2379), ("b", 2379)]),
        # calico-node's ETCD_ENDPOINTS: a list of URLs, each with its scheme.
        ("https://10.0.0.1:2379,https://10.0.0.2:2379/", True,
         [("10.0.0.1", 2379), ("10.0.0.2", 2379)]),
        ("https://[fd00::1]:2379,[fd00::2]", True, [("fd00::1", 2379), ("fd00::2", 2379)]),
    ],
)
def test_etcd_urls(url: str, tls: bool, endpoints: list[tuple[str, int]]) -> None:
    assert parse_endpoints(url) == (tls, endpoints)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://a:2379,http://b:2379", "mixes TLS and plaintext"),
        ("http://a,https://b", "mixes TLS and plaintext"),
        ("https://a:99999", "bad port"),
        ("https://", "no endpoints"),
        ("https://user@a:2379", "bad endpoint"),
        ("https://a:2379/v3/path", "bad port"),
        ("zk://a", "not an etcd URL"),
    ],
)
def test_bad_etcd_urls(url: str, error: str) -> None:
    with pytest.raises(DatastoreConfigError, match=error):
        parse_endpoints(url)


def test_the_url_shown_is_the_canonical_one() -> None:
    config = datastore_config(given("https://a,https://[fd00::1]:2380"))
    assert config.url == str(config) == "https://a:2379,[fd00::1]:2380"
    assert datastore_config(given("http://a:1")).url == "etcd://a:1"
    assert datastore_config(given("sqlite:///x.db")) == DatastoreConfig("sqlite:///x.db")


# --- the rules ---------------------------------------------------------------------------


CA, CERT, KEY = Given("/ca.pem", "--etcd-ca-cert-file"), Given("/c.pem", "--etcd-cert-file"), \
    Given("/c.key", "--etcd-key-file")
USER = Given("calico", "--etcd-username")
PW = Password("ETCD_PASSWORD", value=SECRET)


def test_https_with_every_setting() -> None:
    config = datastore_config(given("https://a:2379"), EtcdSettings(CA, CERT, KEY, USER, PW))
    assert config.etcd is not None and config.etcd.tls is not None
    assert (config.etcd.tls.ca_cert, config.etcd.tls.cert, config.etcd.tls.key) == (CA, CERT, KEY)
    assert config.etcd.username == USER and config.etcd.password == PW
    # A CA alone is TLS without a client certificate; nothing at all trusts the system's CAs.
    assert datastore_config(given("https://a"), EtcdSettings(CA)).etcd.tls.cert is None  # type: ignore[union-attr]
    bare = datastore_config(given("https://a")).etcd
    assert bare is not None and bare.tls is not None and bare.tls.ca_cert is None


@pytest.mark.parametrize("url", ["http://a:2379", "etcd://a:2379"])
@pytest.mark.parametrize("setting", ["ca", "cert"])
def test_never_plaintext_when_tls_files_are_given(url: str, setting: str) -> None:
    settings = EtcdSettings(CA) if setting == "ca" else EtcdSettings(cert_file=CERT, key_file=KEY)
    with pytest.raises(DatastoreConfigError, match="is plaintext: use https://"):
        datastore_config(given(url), settings)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (EtcdSettings(cert_file=CERT), "--etcd-cert-file is set without the client key"),
        (EtcdSettings(key_file=KEY), "--etcd-key-file is set without the client certificate"),
        (EtcdSettings(username=USER), "--etcd-username is set without a password"),
        (EtcdSettings(password=PW), "ETCD_PASSWORD is set without a user name"),
    ],
)
def test_settings_that_cannot_work(settings: EtcdSettings, error: str) -> None:
    with pytest.raises(DatastoreConfigError, match=error):
        datastore_config(given("https://a"), settings)


def test_etcd_settings_for_another_store_are_refused() -> None:
    with pytest.raises(DatastoreConfigError, match="only for an etcd datastore"):
        datastore_config(given("sqlite:///x.db"), EtcdSettings(CA))


# --- flags and the environment ------------------------------------------------------------


def from_args(argv: list[str], env: dict[str, str], **kw: Any) -> DatastoreConfig | None:
    parser = argparse.ArgumentParser()
    add_datastore_arguments(parser, help="the datastore")
    return datastore_from_args(parser.parse_args(argv), env, **kw)


NODE_ENV = {
    "ETCD_ENDPOINTS": "https://10.0.0.1:2379,https://10.0.0.2:2379",
    "ETCD_CA_CERT_FILE": "/calico-secrets/etcd-ca",
    "ETCD_CERT_FILE": "/calico-secrets/etcd-cert",
    "ETCD_KEY_FILE": "/calico-secrets/etcd-key",
    "ETCD_USERNAME": "calico",
    "ETCD_PASSWORD": SECRET,
}


def test_calico_nodes_environment_names_the_datastore() -> None:
    config = from_args([], NODE_ENV)
    assert config is not None and config.etcd is not None and config.etcd.tls is not None
    assert config.url == "https://10.0.0.1:2379,10.0.0.2:2379"
    assert config.etcd.tls.cert == Given("/calico-secrets/etcd-cert", "ETCD_CERT_FILE")
    assert config.etcd.password == Password("ETCD_PASSWORD", value=SECRET)


def test_flags_win_over_the_environment() -> None:
    config = from_args(
        ["--datastore", "https://x:1", "--etcd-cert-file", "/mine.pem", "--etcd-key-file",
         "/mine.key", "--etcd-password-file", "/pw"],
        NODE_ENV,
    )
    assert config is not None and config.etcd is not None and config.etcd.tls is not None
    assert config.url == "https://x:1"
    assert config.etcd.tls.cert == Given("/mine.pem", "--etcd-cert-file")
    assert config.etcd.tls.ca_cert == Given("/calico-secrets/etcd-ca", "ETCD_CA_CERT_FILE")
    assert config.etcd.password == Password("--etcd-password-file", file="/pw")
    assert config.etcd.username == Given("calico", "ETCD_USERNAME")


def test_the_tools_own_variable_comes_before_etcd_endpoints() -> None:
    env = {**NODE_ENV, "BGPD_DATASTORE": "sqlite:///var/lib/x.db"}
    config = from_args([], env, url_env="BGPD_DATASTORE")
    # The ETCD_* variables belong to etcd: a sqlite datastore ignores them.
    assert config == DatastoreConfig("sqlite:///var/lib/x.db")
    assert from_args([], {}, default="sqlite:///d.db") == DatastoreConfig("sqlite:///d.db")
    assert from_args([], {}) is None


def test_empty_variables_count_as_unset() -> None:
    # Calico's manifests set the TLS variables to "" when etcd is plaintext.
    env = {"ETCD_ENDPOINTS": "http://10.0.0.1:2379", "ETCD_CA_CERT_FILE": "",
           "ETCD_CERT_FILE": " ", "ETCD_KEY_FILE": "", "ETCD_USERNAME": "", "ETCD_PASSWORD": ""}
    config = from_args([], env)
    assert config is not None and config.etcd is not None and config.etcd.tls is None
    assert etcd_settings_from_env(env) == EtcdSettings()


def test_plaintext_endpoints_with_tls_variables_are_refused() -> None:
    with pytest.raises(DatastoreConfigError, match="ETCD_CA_CERT_FILE is set but"):
        from_args(["--datastore", "etcd://10.0.0.1:2379"], NODE_ENV)


def test_etcd_flags_for_sqlite_are_refused() -> None:
    with pytest.raises(DatastoreConfigError, match="--etcd-ca-cert-file: only for an etcd"):
        from_args(["--datastore", "sqlite:///x.db", "--etcd-ca-cert-file", "/ca"], {})


def test_the_password_is_never_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_datastore_arguments(parser, help="the datastore")
    # Not even as an abbreviation of --etcd-password-file (which would echo it as a path).
    for argv in (["--etcd-password", SECRET], [f"--etcd-password={SECRET}"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert "--etcd-password-file FILE or ETCD_PASSWORD" in err and SECRET not in err
    with pytest.raises(SystemExit):
        parser.parse_args(["--etcd-pass", SECRET])  # ambiguous, so refused
    assert SECRET not in capsys.readouterr().err


# --- Calico's CNI configuration ----------------------------------------------------------


CNI_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/p",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
CNI_CONF: dict[str, Any] = {
    "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico", "nodename": "node1",
    "etcd_endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
    "etcd_ca_cert_file": "/etc/cni/net.d/calico-tls/etcd-ca",
    "etcd_cert_file": "/etc/cni/net.d/calico-tls/etcd-cert",
    "etcd_key_file": "/etc/cni/net.d/calico-tls/etcd-key",
}


def cni(conf: dict[str, Any], env: dict[str, str] | None = None) -> DatastoreConfig:
    request = parse_request({**CNI_ENV, **(env or {})}, json.dumps(conf).encode())
    assert request.conf is not None
    return request.conf.datastore


def cni_error(conf: dict[str, Any], env: dict[str, str] | None = None) -> CniError:
    with pytest.raises(CniError) as info:
        cni(conf, env)
    return info.value


def test_cni_https_endpoints_and_tls_keys() -> None:
    config = cni(CNI_CONF)
    assert config.url == "https://10.0.0.1:2379,10.0.0.2:2379"
    assert config.etcd is not None and config.etcd.tls is not None
    assert config.etcd.tls.key == Given("/etc/cni/net.d/calico-tls/etcd-key", "etcd_key_file")


def test_cni_never_talks_plaintext_to_a_tls_cluster() -> None:
    # The old plugin rewrote https:// to etcd:// and dropped etcd_ca_cert_file.
    err = cni_error({**CNI_CONF, "etcd_endpoints": "http://10.0.0.1:2379"})
    assert err.code == INVALID_CONFIG and "is plaintext: use https://" in err.details


def test_cni_keys_over_the_environment() -> None:
    conf = {k: v for k, v in CNI_CONF.items() if k != "etcd_ca_cert_file"}
    config = cni(conf, NODE_ENV)
    assert config.etcd is not None and config.etcd.tls is not None
    assert config.etcd.tls.ca_cert == Given("/calico-secrets/etcd-ca", "ETCD_CA_CERT_FILE")
    assert config.etcd.tls.cert == Given("/etc/cni/net.d/calico-tls/etcd-cert", "etcd_cert_file")
    assert config.etcd.username == Given("calico", "ETCD_USERNAME")
    # No endpoints in the configuration: calico-node's ETCD_ENDPOINTS.
    bare = {k: v for k, v in CNI_CONF.items() if not k.startswith("etcd_")}
    assert cni(bare, NODE_ENV).url == "https://10.0.0.1:2379,10.0.0.2:2379"


@pytest.mark.parametrize("key", ["etcd_discovery_srv", "etcd_authority", "etcd_scheme"])
def test_cni_etcd_keys_not_read_are_refused(key: str) -> None:
    err = cni_error({**CNI_CONF, key: "x"})
    assert err.code == UNSUPPORTED_FIELD and key in err.details


def test_cni_sqlite_ignores_etcd_variables() -> None:
    assert cni({"cniVersion": "1.0.0", "name": "n", "datastore": "sqlite:///x.db"},
               NODE_ENV) == DatastoreConfig("sqlite:///x.db")


# --- the password stays secret --------------------------------------------------------------


def test_the_password_is_in_no_repr_str_or_json() -> None:
    config = cni(CNI_CONF, NODE_ENV)
    request = parse_request({**CNI_ENV, **NODE_ENV}, json.dumps(CNI_CONF).encode())
    assert config.etcd is not None and config.etcd.password is not None
    assert config.etcd.password.value == SECRET  # it is there, to be used
    texts = [repr(config), str(config), repr(config.etcd), repr(config.etcd.password),
             str(config.etcd.password), repr(request), repr(request.conf), config.etcd.url]
    assert all(SECRET not in t for t in texts), [t for t in texts if SECRET in t]
    assert SECRET not in json.dumps(without_secrets(NODE_ENV))
    assert without_secrets(NODE_ENV).keys() == NODE_ENV.keys() - {"ETCD_PASSWORD"}


def test_the_password_is_in_no_error_or_log(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from calico.store.kv import open_kv
    from common.log import configure_logging

    configure_logging("debug")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: refused
    config = datastore_config(Given(f"etcd://127.0.0.1:{port}", "--datastore"),
                              EtcdSettings(username=USER, password=PW))

    async def go() -> str:
        kv = open_kv(config)
        try:
            await kv.get("/calico/x")
        except Unavailable as exc:
            return str(exc)
        finally:
            await kv.close()
        raise AssertionError("a closed port answered")

    message = asyncio.run(go())
    captured = capsys.readouterr()
    assert "connection refused" in message
    assert SECRET not in message + captured.out + captured.err
