"""etcd over TLS with client certificates, and with etcd's user/password auth, through every
entry point (bgpd, bgpctl, felix, felix-cni), against real etcd members started with
--client-cert-auth and certificates made here with openssl (labs/harness/certs.py), and with
auth on:

- in a lab, over TLS: bgpctl applies and gets resources, `bgpd --check` reads the plan, two
  bgpd daemons form their mesh and report their status, felix (configured by calico-node's
  ETCD_* variables alone) writes its status;
- felix-cni ADD/DEL with Calico's etcd_endpoints and etcd_*_file keys naming https endpoints;
  a plaintext etcd_endpoints with TLS files, or https without a client certificate, refused
  and nothing written;
- failover across two TLS endpoints when the one in use stops (a watch and a writer);
- auth: the right credentials work (a password file, calico-node's environment), a read-only
  user is refused writes, a token etcd forgot (--auth-token-ttl 1) is renewed under a running
  bgpd, and the password shows in no log;
- each failure: a wrong CA, no client certificate, an expired one, one signed by another CA,
  a wrong password, no credentials, a refused port and a port that never answers: each tool
  exits non-zero with one line naming the problem, within a deadline (the subprocess
  timeout: a hang fails the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico import keys, resources
from calico.errors import Unavailable
from calico.ipam import handle_key
from calico.snapshot import Snapshot
from calico.store.etcdconfig import EtcdSettings, Given, datastore_config
from calico.store.kv import open_kv
from calico.watch import open_calico_source
from felix.status import status_key
from felix.workload import endpoint_name
from labs.harness.bgpd_node import Bgpd
from labs.harness.bgpd_node import resources as node_resources
from labs.harness.certs import MISSING as MISSING_OPENSSL
from labs.harness.certs import OPENSSL, Pki, make_pki
from labs.harness.etcd_server import (
    ETCD,
    ETCDCTL,
    MISSING,
    MISSING_ETCDCTL,
    EtcdMember,
    ServerTLS,
    cluster,
)
from labs.harness.etcd_server import free_port as free_tcp_port
from labs.harness.felix_node import NETWORK, Felix, container_id, run_cni
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

pytestmark = [
    pytest.mark.skipif(ETCD is None, reason=MISSING),
    pytest.mark.skipif(OPENSSL is None, reason=MISSING_OPENSSL),
]

ROOT = Path(__file__).resolve().parents[2]
# Every failure must end well within this (etcd calls time out after 5 s per endpoint).
DEADLINE = 40.0
PASSWORD = "Calico-Pw-7f3a91"  # grepped for in every output: it must never appear
ROOT_PASSWORD = "Root-Pw-c02d44"
READER_PASSWORD = "Reader-Pw-5b18e2"
POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "pods"},
    "spec": {"cidr": "10.244.0.0/24", "blockSize": 28},
}
POOL_KEY = "/calico/resources/v3/projectcalico.org/ippools/pods"


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_here(
    argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A tool in the test's namespace; TimeoutExpired (a hang) fails the test."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=DEADLINE, cwd=ROOT, input=stdin,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def tls_flags(pki: Pki, client: Any = None) -> list[str]:
    client = client or pki.client
    return ["--etcd-ca-cert-file", str(pki.ca.cert), "--etcd-cert-file", str(client.cert),
            "--etcd-key-file", str(client.key)]


def server_tls(pki: Pki, *, client_cert_auth: bool = True) -> ServerTLS:
    return ServerTLS(pki.ca.cert, pki.server.cert, pki.server.key,
                     client_cert_auth=client_cert_auth,
                     client_cert=pki.client.cert if client_cert_auth else None,
                     client_key=pki.client.key if client_cert_auth else None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_etcd(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdMember]:
    """On loopback: TLS with --client-cert-auth, trusting the test CA for clients."""
    member = EtcdMember(tmp_path_factory.mktemp("etcd-tls"), "tls", tls=server_tls(pki))
    member.start()
    yield member
    member.stop()


@pytest.fixture(scope="module")
def auth_etcd(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdMember]:
    """On loopback: server TLS, etcd's auth on; `calico` may read and write /calico/."""
    if ETCDCTL is None:
        pytest.skip(MISSING_ETCDCTL)
    member = EtcdMember(tmp_path_factory.mktemp("etcd-auth"), "auth",
                        tls=server_tls(pki, client_cert_auth=False))
    member.start()
    member.enable_auth(ROOT_PASSWORD, {"calico": (PASSWORD, "readwrite")})
    yield member
    member.stop()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


# --- everything working over TLS, in a lab -------------------------------------------------


def ctl_bgpctl(
    ctl: Node, url: str, flags: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    return ctl.run(python("bgpd.cli.bgpctl", "--datastore", url, *flags, *args), check=False)


def test_bgpd_bgpctl_and_felix_over_tls(lab: Lab, tmp_path: Path) -> None:
    switch = lab.add_switch("sw")
    ctl = lab.add_node("ctl")
    ctl_end = switch.attach(ctl)
    ends = {n: switch.attach(lab.add_node(n[-1] + "n")) for n in ("node1", "node2")}
    ips = {n: str(e.v4) for n, e in ends.items()}
    pki = make_pki(tmp_path / "pki", addresses=(str(ctl_end.v4),))
    etcd = EtcdMember(tmp_path, host=str(ctl_end.v4), node=ctl, tls=server_tls(pki)).start()
    url = f"https://{etcd.endpoint}"
    flags = tls_flags(pki)

    docs = node_resources(
        node="node1", ipv4=ips["node1"] + "/24", mesh=True,
        other_nodes={"node2": (ips["node2"] + "/24", None)}, pools=["192.168.0.0/16"],
    )
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    r = ctl_bgpctl(ctl, url, flags, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    # Round trip: what was applied over TLS reads back over TLS.
    r = ctl_bgpctl(ctl, url, flags, "get", "nodes", "-o", "yaml")
    assert r.returncode == 0, r.stderr
    got = {d["metadata"]["name"]: d["spec"]["bgp"]["ipv4Address"]
           for d in yaml.safe_load(r.stdout)["items"]}
    assert got == {n: ips[n] + "/24" for n in ips}

    # bgpd reads its plan over TLS.
    node1 = ends["node1"].node
    r = node1.run(python("bgpd.cli.bgpd_main", "--node", "node1", "--datastore", url, *flags,
                         "--check"), check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("node node1:") and "1 sessions" in r.stdout
    r = node1.run(python("bgpd.cli.bgpd_main", "plan", "--node", "node1", "--datastore", url,
                         *flags, "--json"), check=False)
    assert r.returncode == 0, r.stderr
    assert ips["node2"] in r.stdout

    # Two daemons over TLS: the mesh comes up, and both report their status.
    daemons = {n: Bgpd(e.node, n, [], datastore=url, extra_args=("--no-fib", *flags)).start()
               for n, e in ends.items()}
    daemons["node1"].wait_established(ips["node2"])
    daemons["node2"].wait_established(ips["node1"])

    def reported() -> set[str]:
        res = ctl_bgpctl(ctl, url, flags, "status", "--all-nodes", "--json")
        return {n["node"] for n in json.loads(res.stdout)} if res.returncode == 0 else set()

    wait_for(lambda: reported() == {"node1", "node2"}, 30, message="both nodes reported")

    # felix, configured by calico-node's environment alone, writes its status over TLS.
    env = {"ETCD_ENDPOINTS": url, "ETCD_CA_CERT_FILE": str(pki.ca.cert),
           "ETCD_CERT_FILE": str(pki.client.cert), "ETCD_KEY_FILE": str(pki.client.key)}
    Felix(node1, "node1", None, env=env).start()
    status = wait_for(
        lambda: (out := etcd.etcdctl("get", status_key("node1"), "--print-value-only").stdout)
        .strip() and out,
        30, message="felix's status in etcd",
    )
    assert set(json.loads(status)) == {"time", "uptime", "first_update"}


# --- felix-cni with Calico's CNI keys ---------------------------------------------------------


def test_felix_cni_add_and_del_over_tls(lab: Lab, tmp_path: Path) -> None:
    host, pod, ctl = lab.add_node("host"), lab.add_node("pod"), lab.add_node("ctl")
    lab.link(host, ctl, "10.0.77.1/24", "10.0.77.2/24")
    pki = make_pki(tmp_path / "pki", addresses=("10.0.77.2",))
    etcd = EtcdMember(tmp_path, host="10.0.77.2", node=ctl, tls=server_tls(pki)).start()
    etcd.etcdctl("put", POOL_KEY, json.dumps(POOL))
    endpoints = f"https://{etcd.endpoint}"
    cfg: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": NETWORK, "type": "felix-cni", "nodename": "node1",
        "ipam": {"type": "calico-ipam"},
        "etcd_endpoints": endpoints,
        "etcd_ca_cert_file": str(pki.ca.cert),
        "etcd_cert_file": str(pki.client.cert),
        "etcd_key_file": str(pki.client.key),
    }
    netns = f"/var/run/netns/{pod.netns}"
    cid = container_id("tls-pod")
    handle = handle_key(f"{NETWORK}.{cid}")

    # Never plaintext: TLS files with http:// endpoints, or https:// without our client
    # certificate, are refused and write nothing.
    plain = {**cfg, "etcd_endpoints": endpoints.replace("https://", "http://")}
    code, out, _ = run_cni(host, "ADD", plain, netns=netns, container=cid)
    assert code == 1 and out is not None and out["code"] == 7, out
    assert "plaintext" in out["details"]
    no_cert = {k: v for k, v in cfg.items() if k not in ("etcd_cert_file", "etcd_key_file")}
    code, out, _ = run_cni(host, "ADD", no_cert, netns=netns, container=cid)
    assert code == 1 and out is not None and "requires a client certificate" in out["details"]
    assert etcd.etcdctl("get", handle, "--print-value-only").stdout.strip() == ""

    code, result, err = run_cni(host, "ADD", cfg, netns=netns, container=cid)
    assert code == 0 and result is not None, err
    address = result["ips"][0]["address"]
    assert address.startswith("10.244.0.")
    assert etcd.etcdctl("get", handle, "--print-value-only").stdout.strip()
    wep = keys.resource_key("WorkloadEndpoint", endpoint_name("node1", "cni", cid, "eth0"),
                            "default")
    assert address in etcd.etcdctl("get", wep, "--print-value-only").stdout
    assert address.split("/")[0] in pod.run(["ip", "-4", "-o", "addr"]).stdout

    code, _, err = run_cni(host, "DEL", cfg, netns=netns, container=cid)
    assert code == 0, err
    assert etcd.etcdctl("get", handle, "--print-value-only").stdout.strip() == ""
    assert etcd.etcdctl("get", wep, "--print-value-only").stdout.strip() == ""


# --- failover ---------------------------------------------------------------------------------


async def next_matching(
    updates: AsyncIterator[Snapshot], pred: Callable[[Snapshot], bool]
) -> Snapshot:
    async for snap in updates:
        if pred(snap):
            return snap
    raise AssertionError("updates ended")


def test_failover_across_two_tls_endpoints(pki: Pki, tmp_path: Path) -> None:
    members = cluster(tmp_path, 3, tls=server_tls(pki))
    try:
        # Two of the three members named, as a node would: the first one is used first.
        url = "https://" + ",".join(m.endpoint for m in members[:2])
        settings = EtcdSettings(Given(str(pki.ca.cert), "ca"), Given(str(pki.client.cert), "c"),
                                Given(str(pki.client.key), "k"))
        config = datastore_config(Given(url, "test"), settings)

        async def go() -> None:
            async with open_kv(config) as kv:
                node = {"apiVersion": "projectcalico.org/v3", "kind": "Node",
                        "metadata": {"name": "node1"},
                        "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}
                await resources.apply(kv, node)
                source = open_calico_source(config, node="node1")
                source.backoff = (0.2, 1.0)
                await source.load()
                updates = source.updates()
                # The watch starts at the revision after the list: nothing written later is
                # missed, however long it takes to start.
                pending = asyncio.ensure_future(
                    next_matching(updates, lambda s: "late" in s.bgp_peers))
                await asyncio.to_thread(members[0].stop)
                late = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
                        "metadata": {"name": "late"}, "spec": {"peerIP": "10.7.7.7"}}
                # The survivors may still be electing a leader ("no leader"): retry a while.
                deadline = time.monotonic() + 20
                while True:
                    try:
                        await resources.apply(kv, late)
                        break
                    except Unavailable:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
                assert kv.endpoint == members[1].endpoint  # type: ignore[attr-defined]
                snap = await asyncio.wait_for(pending, 30)
                assert "late" in snap.bgp_peers
                await updates.aclose()  # type: ignore[attr-defined]
                await source.close()

        # Two endpoints that both refuse the handshake: one line naming each.
        both = "https://" + ",".join(m.endpoint for m in members[:2])
        wrong_ca = ["--etcd-ca-cert-file", str(pki.other_ca.cert), "--etcd-cert-file",
                    str(pki.client.cert), "--etcd-key-file", str(pki.client.key)]
        r = run_here(python("bgpd.cli.bgpctl", "--datastore", both, *wrong_ca, "get", "nodes"))
        (line,) = lines(r.stderr)
        assert r.returncode == 1 and line.count("is not trusted") == 2, line
        assert members[0].endpoint in line and members[1].endpoint in line

        asyncio.run(asyncio.wait_for(go(), 90))
        # The CLI too: the first endpoint is down, the second answers.
        r = run_here(python("bgpd.cli.bgpctl", "--datastore", url, *tls_flags(pki),
                            "get", "bgppeers"))
        assert r.returncode == 0 and "late" in r.stdout, r.stderr
    finally:
        for m in members:
            m.stop()


# --- auth ---------------------------------------------------------------------------------------


def test_auth_credentials_work_and_stay_secret(lab: Lab, tmp_path: Path) -> None:
    if ETCDCTL is None:
        pytest.skip(MISSING_ETCDCTL)
    ctl, n1 = lab.add_node("ctl"), lab.add_node("n1")
    lab.link(ctl, n1, "10.0.78.2/24", "10.0.78.1/24")
    pki = make_pki(tmp_path / "pki", addresses=("10.0.78.2",))
    # A token etcd forgets after 1 s idle: the daemon's store must authenticate again.
    etcd = EtcdMember(tmp_path, host="10.0.78.2", node=ctl,
                      tls=server_tls(pki, client_cert_auth=False),
                      extra_args=("--auth-token-ttl", "1")).start()
    etcd.enable_auth(ROOT_PASSWORD, {"calico": (PASSWORD, "readwrite"),
                                     "reader": (READER_PASSWORD, "read")})
    url = f"https://{etcd.endpoint}"
    password_file = tmp_path / "etcd-password"
    password_file.write_text(PASSWORD + "\n")
    reader_file = tmp_path / "reader-password"
    reader_file.write_text(READER_PASSWORD)
    ca = ["--etcd-ca-cert-file", str(pki.ca.cert)]
    calico = [*ca, "--etcd-username", "calico", "--etcd-password-file", str(password_file)]
    reader = [*ca, "--etcd-username", "reader", "--etcd-password-file", str(reader_file)]
    docs = node_resources(node="node1", ipv4="10.0.78.1/24", mesh=True, pools=["192.168.0.0/16"])
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    outputs: list[str] = []

    r = ctl_bgpctl(ctl, url, calico, "apply", "-f", str(f))
    outputs += [r.stdout, r.stderr]
    assert r.returncode == 0, r.stderr
    # The read-only user reads, and is refused a write with one line.
    r = ctl_bgpctl(ctl, url, reader, "get", "nodes")
    assert r.returncode == 0 and "node1" in r.stdout, r.stderr
    r = ctl_bgpctl(ctl, url, reader, "apply", "-f", str(f))
    (line,) = lines(r.stderr)
    assert r.returncode == 1 and "permission denied (user 'reader')" in line, line

    # calico-node's environment alone names the datastore and the credentials.
    env = {"ETCD_ENDPOINTS": url, "ETCD_CA_CERT_FILE": str(pki.ca.cert),
           "ETCD_USERNAME": "calico", "ETCD_PASSWORD": PASSWORD}
    env_argv = ["env", *(f"{k}={v}" for k, v in env.items())]
    r = n1.run([*env_argv, *python("bgpd.cli.bgpd_main", "--node", "node1", "--check")],
               check=False)
    outputs += [r.stdout, r.stderr]
    assert r.returncode == 0 and r.stdout.startswith("node node1:"), r.stderr

    # A running bgpd (debug logs) keeps reporting although its token expires between reports.
    bgpd = Bgpd(n1, "node1", [], env=env, extra_args=("--no-fib",)).start()

    def last_updated() -> str | None:
        res = ctl_bgpctl(ctl, url, calico, "status", "--all-nodes", "--json")
        if res.returncode != 0:
            return None
        return next((n.get("last_updated") for n in json.loads(res.stdout)
                     if n["node"] == "node1"), None)

    first = wait_for(last_updated, 30, message="bgpd reported its status")
    wait_for(lambda: (now := last_updated()) is not None and now != first, 30,
             message="bgpd reported again, with a renewed token")
    # felix too, with the password from the environment.
    felix = Felix(n1, "node1", None, env=env).start()
    wait_for(lambda: etcd.etcdctl("get", status_key("node1"), "--print-value-only").stdout
             .strip(), 30, message="felix's status in etcd")
    bgpd.stop()
    felix.stop()
    log_text = bgpd.log_path.read_text(errors="replace") + felix.log_path.read_text()
    assert "invalid auth token" not in log_text
    for text in [*outputs, log_text]:
        assert PASSWORD not in text


# --- failures: one line each, a non-zero exit, within the deadline -----------------------------


@dataclass(frozen=True)
class Access:
    """How a failing case tries to reach etcd."""

    url: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    access: Callable[[Pki, EtcdMember, EtcdMember, int], Access]
    phrase: str  # what the one line must say
    cni_code: int
    unreachable: bool = False  # felix waits for an unreachable store by design


CASES: dict[str, Case] = {
    "wrong-ca": Case(
        lambda p, t, a, s: Access(f"https://{t.endpoint}", p.other_ca.cert, p.client.cert,
                                  p.client.key),
        "TLS: the server's certificate is not trusted by the CA certificate", 5),
    "no-client-cert": Case(
        lambda p, t, a, s: Access(f"https://{t.endpoint}", p.ca.cert),
        "TLS: the server refused the connection: it requires a client certificate", 5),
    "expired-cert": Case(
        lambda p, t, a, s: Access(f"https://{t.endpoint}", p.ca.cert, p.expired_client.cert,
                                  p.expired_client.key),
        "expired on 2020-01-02 00:00:00 UTC", 7),
    "foreign-cert": Case(
        lambda p, t, a, s: Access(f"https://{t.endpoint}", p.ca.cert, p.foreign_client.cert,
                                  p.foreign_client.key),
        "TLS: the server refused the client certificate", 5),
    "wrong-password": Case(
        lambda p, t, a, s: Access(f"https://{a.endpoint}", p.ca.cert, user="calico",
                                  password="not-" + PASSWORD),
        "authentication failed for user 'calico': wrong user name or password", 5),
    "no-credentials": Case(
        lambda p, t, a, s: Access(f"https://{a.endpoint}", p.ca.cert),
        "the cluster requires authentication: give --etcd-username", 5),
    "refused": Case(
        lambda p, t, a, s: Access(f"https://127.0.0.1:{free_tcp_port()}", p.ca.cert,
                                  p.client.cert, p.client.key),
        "connection refused", 11, unreachable=True),
    "silent": Case(
        lambda p, t, a, s: Access(f"https://127.0.0.1:{s}", p.ca.cert, p.client.cert,
                                  p.client.key),
        "no answer within 5 s", 11, unreachable=True),
}
TOOLS = ("bgpd", "bgpctl", "felix", "felix-cni")


def attempt(tool: str, access: Access, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`tool` against `access`: bgpd and bgpctl take flags (the password from a file), felix
    calico-node's environment, felix-cni Calico's CNI keys (user and password from the
    environment, as Calico's plugin takes them)."""
    flags = ["--datastore", access.url]
    env: dict[str, str] = {}
    for flag, var, path in (("--etcd-ca-cert-file", "ETCD_CA_CERT_FILE", access.ca),
                            ("--etcd-cert-file", "ETCD_CERT_FILE", access.cert),
                            ("--etcd-key-file", "ETCD_KEY_FILE", access.key)):
        if path is not None:
            flags += [flag, str(path)]
            env[var] = str(path)
    if access.user is not None:
        assert access.password is not None
        password_file = tmp / f"password-{time.monotonic_ns()}"
        password_file.write_text(access.password)
        flags += ["--etcd-username", access.user, "--etcd-password-file", str(password_file)]
        env.update(ETCD_USERNAME=access.user, ETCD_PASSWORD=access.password)
    if tool == "bgpd":
        return run_here(python("bgpd.cli.bgpd_main", "--node", "node1", "--check", *flags))
    if tool == "bgpctl":
        return run_here(python("bgpd.cli.bgpctl", *flags, "get", "nodes"))
    if tool == "felix":
        return run_here(python("felix.driver", "--node", "node1"),
                        env={**env, "ETCD_ENDPOINTS": access.url})
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": NETWORK, "type": "felix-cni",
                            "nodename": "node1", "ipam": {"type": "calico-ipam"},
                            "etcd_endpoints": access.url}
    for key, var in (("etcd_ca_cert_file", "ETCD_CA_CERT_FILE"),
                     ("etcd_cert_file", "ETCD_CERT_FILE"), ("etcd_key_file", "ETCD_KEY_FILE")):
        if var in env:
            conf[key] = env.pop(var)
    cni = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id("failing"),
           "CNI_NETNS": "/var/run/netns/pyb-tls-none", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin", "FELIX_CNI_LOG_LEVEL": "warning"}
    return run_here(python("felix.cni.driver"), env={**env, **cni}, stdin=json.dumps(conf))


@pytest.mark.parametrize(
    ("case", "tool"),
    # felix, as calico-felix, waits for an unreachable store: that case is tested below.
    [(c, t) for c in CASES for t in TOOLS if not (t == "felix" and CASES[c].unreachable)],
)
def test_each_failure_is_one_line_and_a_nonzero_exit(
    case: str, tool: str, pki: Pki, tls_etcd: EtcdMember, auth_etcd: EtcdMember,
    silent_port: int, tmp_path: Path,
) -> None:
    spec = CASES[case]
    access = spec.access(pki, tls_etcd, auth_etcd, silent_port)
    r = attempt(tool, access, tmp_path)
    assert r.returncode != 0
    assert PASSWORD not in r.stdout + r.stderr
    if tool == "felix-cni":
        # The CNI answer: one JSON error document on stdout.
        doc = json.loads(r.stdout)
        assert doc["code"] == spec.cni_code and spec.phrase in doc["details"], doc
        return
    (line,) = lines(r.stderr)
    assert line.startswith(f"{tool}: ") and spec.phrase in line, line
    assert r.stdout == ""


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c].unreachable])
def test_felix_waits_for_an_unreachable_store_saying_why_and_stops_when_told(
    case: str, pki: Pki, tls_etcd: EtcdMember, auth_etcd: EtcdMember, silent_port: int,
    tmp_path: Path,
) -> None:
    """A daemon outlives a datastore outage (calico-felix waits too): each retry is one log
    line with the reason and the next delay, and SIGTERM ends the wait with a clean exit."""
    access = CASES[case].access(pki, tls_etcd, auth_etcd, silent_port)
    assert access.user is None and access.ca and access.cert and access.key
    env = {"ETCD_CA_CERT_FILE": str(access.ca), "ETCD_CERT_FILE": str(access.cert),
           "ETCD_KEY_FILE": str(access.key), "ETCD_ENDPOINTS": access.url}
    log_file = tmp_path / "felix.log"
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            python("felix.driver", "--node", "node1"), stdout=out, stderr=subprocess.STDOUT,
            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        )
    try:
        def retries() -> list[dict[str, Any]]:
            found = []
            for line in log_file.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("event") == "felix.datastore_unavailable":
                        found.append(rec)
            return found

        seen = wait_for(lambda: r if len(r := retries()) >= 2 else None, DEADLINE * 2,
                        message="felix logged two retries")
        assert proc.poll() is None, "felix gave up on an outage"
        assert all(CASES[case].phrase in r["error"] for r in seen), seen
        assert seen[1]["retry_in"] > seen[0]["retry_in"]  # backs off
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
