"""The datastore options every command line shares (bgpd, bgpd plan, bgpctl, felix): `--datastore`
and the `--etcd-*` settings, and the one rule that turns them and the environment into a
`DatastoreConfig`:

- the datastore is `--datastore`, else the tool's own variable (BGPD_DATASTORE), else
  calico-node's ETCD_ENDPOINTS, else the tool's default;
- each etcd setting is its flag, else calico-node's variable (ETCD_CA_CERT_FILE,
  ETCD_CERT_FILE, ETCD_KEY_FILE, ETCD_USERNAME, ETCD_PASSWORD); the variables count only for
  an etcd datastore, the flags are refused for any other.

The password is never a flag (a command line is visible to every user): `--etcd-password-file`
or ETCD_PASSWORD.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from calico.store.etcdconfig import (
    ETCD_ENV,
    DatastoreConfig,
    EtcdSettings,
    Given,
    Password,
    datastore_config,
    etcd_settings_from_env,
    is_etcd_url,
)

__all__ = ["add_datastore_arguments", "datastore_from_args", "without_secrets"]

_FLAGS = {
    "ca_cert_file": ("--etcd-ca-cert-file", "CA certificate that signs the etcd servers'"),
    "cert_file": ("--etcd-cert-file", "client certificate to present to etcd"),
    "key_file": ("--etcd-key-file", "private key of --etcd-cert-file"),
    "username": ("--etcd-username", "etcd user name (auth enabled)"),
}


class _PasswordFlag(argparse.Action):
    """`--etcd-password`, refused (and so never taken as an abbreviation of
    --etcd-password-file, which would print the password as a file name)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        parser.error("--etcd-password: a password on the command line is visible to every "
                     f"user; use --etcd-password-file FILE or {ETCD_ENV['password']}")


def add_datastore_arguments(
    parser: argparse.ArgumentParser, *, help: str, required: bool = False
) -> None:
    """`--datastore` (with `help`) and the etcd options, in their own help group."""
    parser.add_argument("--datastore", metavar="URL", default=None, required=required, help=help)
    group = parser.add_argument_group(
        "etcd", "TLS and authentication for an https:// or etcd:// datastore; each option "
        "defaults to calico-node's variable"
    )
    for dest, (flag, what) in _FLAGS.items():
        var = ETCD_ENV[dest]
        metavar = "NAME" if dest == "username" else "FILE"
        group.add_argument(flag, dest=f"etcd_{dest}", metavar=metavar, default=None,
                           help=f"{what} (env {var})")
    group.add_argument(
        "--etcd-password-file", dest="etcd_password_file", metavar="FILE", default=None,
        help=f"file holding the etcd password (else env {ETCD_ENV['password']})",
    )
    group.add_argument("--etcd-password", nargs="?", action=_PasswordFlag, help=argparse.SUPPRESS)


def datastore_from_args(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    url_env: str | None = None,
    default: str | None = None,
) -> DatastoreConfig | None:
    """The datastore the options and `env` name; None when none is named and there is no
    default. Raises DatastoreConfigError for settings that cannot work."""
    url = _url(args, env, url_env, default)
    if url is None:
        return None
    def flag(dest: str) -> Given | None:
        value = getattr(args, f"etcd_{dest}", None)
        return Given(value, _FLAGS[dest][0]) if value is not None else None

    password_file = getattr(args, "etcd_password_file", None)
    settings = EtcdSettings(
        flag("ca_cert_file"),
        flag("cert_file"),
        flag("key_file"),
        flag("username"),
        Password("--etcd-password-file", file=password_file) if password_file else None,
    )
    if is_etcd_url(url.value):
        settings = settings.over(etcd_settings_from_env(env))
    return datastore_config(url, settings)


def _url(
    args: argparse.Namespace, env: Mapping[str, str], url_env: str | None, default: str | None
) -> Given | None:
    if args.datastore:
        return Given(args.datastore, "--datastore")
    if url_env and env.get(url_env, "").strip():
        return Given(env[url_env].strip(), url_env)
    endpoints = ETCD_ENV["endpoints"]
    if env.get(endpoints, "").strip():
        return Given(env[endpoints].strip(), endpoints)
    if default is not None:
        return Given(default, "the default")
    return None


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the etcd password, for anything that keeps or shows an environment."""
    return {k: v for k, v in env.items() if k != ETCD_ENV["password"]}
