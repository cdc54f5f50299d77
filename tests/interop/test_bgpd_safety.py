"""Safe in production (issue 18), against a real bgpd and a real BIRD in network namespaces:

- a TCP MD5 password never shows: not in the debug log, the answer to any control command,
  bgpctl's text and JSON, `bgpd plan --json`, the metrics, the status document bgpd writes to
  its datastore, nor a repr of the plan or the session settings;
- a secret reference cannot reach outside the secrets directory (`../` is refused when the
  BGPPeer is applied; a symlink out is refused when bgpd resolves it), and such a change is
  refused by `bgpctl reload` with the reason and a non-zero exit, the session untouched;
- logs: one info line for a session coming up and one for its drop, and 500 refused
  connections from an address bgpd has no peer for make one line and a count.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bgpd.cli.client import ClientError, ControlClient
from bgpd.control.handlers import COMMANDS
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.reconfig import peer_settings, plan_of, resolve_password
from bgpd.speaker.speaker import router_id_int
from calico.source import open_source
from common.ratelimit import INTERVAL
from labs.harness.bgpd_node import Bgpd, bgpctl_apply, resources
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bool(missing_programs(BirdPeer)), reason="bird2 not installed"),
]

REPO = Path(__file__).resolve().parents[2]
BGPD_V4, PEER_V4, STRANGER_V4 = "10.0.41.1", "10.0.41.2", "10.0.41.9"
BGPD_AS, PEER_AS = 64512, 65002
BLOCK = "192.168.41.0/26"
PEER_ROUTE = "10.99.41.0/24"
METRICS = f"{BGPD_V4}:9179"
SECRET_REF = {"secretKeyRef": {"name": "bgp-secrets", "key": "peer"}}


def lab_pair(lab: Lab) -> tuple[Node, Node, str]:
    """bgpd's node, the peer's, and the peer's interface."""
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    link = lab.link(a, b, BGPD_V4, PEER_V4)
    return a, b, link.b.ifname


def docs(password: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    peer: dict[str, Any] = {"peerIP": PEER_V4, "asNumber": PEER_AS}
    if password is not None:
        peer["password"] = password
    return resources(node="node1", ipv4=f"{BGPD_V4}/24", asn=BGPD_AS, mesh=False,
                     peers=[peer], pools=["192.168.0.0/16"], blocks=[BLOCK])


def since(bgpd: Bgpd) -> tuple[str, int]:
    """When the session came up, and how many times it did (`since` has whole seconds)."""
    (peer,) = bgpd.status()["peers"]
    assert peer["bgp_state"] == "Established", peer
    ups = sum(1 for e in log_events(bgpd) if e["event"] == "session established")
    return str(peer["since"]), ups


def log_events(bgpd: Bgpd) -> list[dict[str, Any]]:
    out = []
    for line in bgpd.log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def test_password_never_shown_and_references_stay_inside(lab: Lab, tmp_path: Path) -> None:
    password = f"md5-{secrets.token_hex(8)}"
    a, b, _ = lab_pair(lab)
    BirdPeer(b, "10.255.0.2", PEER_AS, [Neighbor(BGPD_V4, BGPD_AS, password=password)],
             routes_v4=[PEER_ROUTE]).start()
    url = f"sqlite://{tmp_path}/calico.db"
    bgpctl_apply(a, url, tmp_path, docs(SECRET_REF))
    bird_socket = tmp_path / "bird.ctl"
    bgpd = Bgpd(a, "node1", [], datastore=url, secrets={"bgp-secrets": {"peer": password}},
                extra_args=("--metrics-listen", METRICS, "--bird-socket", str(bird_socket)),
                ).start()  # at debug level
    bgpd.wait_established(PEER_V4)
    assert bgpd.secrets_dir is not None

    seen: dict[str, str] = {}
    # Every control command, through the socket as any client would.
    fields = {"exported": {"peer": PEER_V4}, "explain": {"prefix": BLOCK},
              "reset": {"peer": PEER_V4}, "refresh": {"peer": PEER_V4}}
    with ControlClient(str(bgpd.socket)) as client:
        for name in sorted(COMMANDS, key=lambda n: n == "reset"):  # reset last
            try:
                seen[f"control {name}"] = json.dumps(client.request(name, **fields.get(name, {})))
            except ClientError as exc:
                seen[f"control {name}"] = str(exc)
    bgpd.wait_established(PEER_V4)
    # bgpctl's commands against the daemon, as text and as JSON.
    for argv in (["status"], ["routes"], ["show", "protocols", "all"],
                 ["show", "route", "export", PEER_V4], ["explain", BLOCK], ["reload"],
                 ["check", "ready"], ["show", "bfd", "sessions"]):
        for extra in ([], ["--json"]):
            r = bgpd.bgpctl(*argv, *extra, check=False)
            seen[" ".join(["bgpctl", *argv, *extra])] = r.stdout + r.stderr
    check = ["--check", "--secrets-dir", str(bgpd.secrets_dir)]  # reads the password too
    # The BIRD socket, as birdc and calicoctl node status read it.
    for command in ("show status", "show protocols all", "show route all"):
        r = subprocess.run(["birdc", "-s", str(bird_socket), *command.split()],
                           capture_output=True, text=True, timeout=30)
        seen[f"birdc {command}"] = r.stdout + r.stderr
    assert "Established" in seen["birdc show protocols all"]
    for argv in (["plan", "--json"], ["plan"], check):
        r = subprocess.run(
            [sys.executable, "-m", "bgpd.cli.bgpd_main", *argv, "--node", "node1",
             "--datastore", url],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        assert r.returncode == 0, r.stderr
        seen[f"bgpd {' '.join(argv)}"] = r.stdout + r.stderr
    scrape = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
              f"'http://{METRICS}/metrics', timeout=10).read().decode())")
    seen["metrics"] = a.run([sys.executable, "-c", scrape]).stdout
    assert "pybgpd_peer_state" in seen["metrics"]
    # The status document bgpd writes under its lease, as read back and as stored.
    wait_for(lambda: "node1" in bgpctl_store(url, "status", "--all-nodes", "--json"), 30,
             message="node1's status document")
    seen["status document"] = bgpctl_store(url, "status", "--all-nodes", "--json")
    # The reprs of what the daemon builds from this datastore.
    seen.update(reprs(url, bgpd.secrets_dir))

    # A reference that names a path is refused when applied: nothing is written.
    f = tmp_path / "escape.yaml"
    (bad_peer,) = [d for d in docs({"secretKeyRef": {"name": "../../etc", "key": "hostname"}})
                   if d["kind"] == "BGPPeer"]
    f.write_text(json.dumps(bad_peer))
    escape = bgpctl_at(url, "apply", "-f", str(f))
    assert escape.returncode == 1
    assert "spec.password.secretKeyRef.name: '../../etc' is not a Kubernetes secret name" in (
        escape.stderr
    )
    # A symlink out of the secrets directory passes the name rules; bgpd refuses to follow
    # it: the datastore's new state is refused and so is a reload, the session stays up.
    up_since = since(bgpd)
    os.symlink("/etc/hostname", bgpd.secrets_dir / "bgp-secrets" / "escape")
    bgpctl_apply(a, url, tmp_path, docs({"secretKeyRef": {"name": "bgp-secrets",
                                                          "key": "escape"}}))
    wait_for(lambda: any(e["event"] == "new configuration refused; keeping the current plan"
                         for e in log_events(bgpd)), 30, message="the watched change refused")
    reload = bgpd.bgpctl("reload", check=False)
    assert reload.returncode == 1, reload.stdout
    assert reload.stderr.startswith("bgpctl: reload refused, keeping the running configuration:")
    assert "outside the secrets directory" in reload.stderr
    assert since(bgpd) == up_since
    seen["refused reload"] = reload.stdout + reload.stderr

    bgpd.stop()
    seen["debug log"] = bgpd.log_path.read_text(errors="replace")
    seen["datastore file"] = (tmp_path / "calico.db").read_bytes().decode(errors="replace")
    assert len(seen["debug log"].splitlines()) > 20  # debug lines were written
    leaks = [where for where, text in seen.items() if password in text]
    assert leaks == [], f"the password shows in: {leaks}"


def bgpctl_at(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def bgpctl_store(url: str, *args: str) -> str:
    r = bgpctl_at(url, *args)
    return r.stdout + r.stderr


def reprs(url: str, secrets_dir: Path) -> dict[str, str]:
    options = DaemonOptions(node="node1", datastore=url, control_socket="unused",
                            secrets_dir=str(secrets_dir))

    async def load() -> Any:
        source = open_source(url, "node1")
        try:
            return await source.load()
        finally:
            await source.close()

    snapshot = asyncio.run(load())
    plan = plan_of(snapshot, options)
    (spec,) = plan.sessions
    settings = peer_settings(spec, router_id_int(plan.router_id),
                             resolve_password(spec, str(secrets_dir)))
    assert settings.password  # resolved, only not shown
    return {"repr(snapshot)": repr(snapshot), "repr(plan)": repr(plan),
            "repr(settings)": repr(settings), "str(settings)": str(settings)}


def test_one_line_per_session_event_and_refusals_counted(lab: Lab) -> None:
    a, b, ifname = lab_pair(lab)
    stranger = b.add_address(ifname, STRANGER_V4)
    peer = BirdPeer(b, "10.255.0.2", PEER_AS, [Neighbor(BGPD_V4, BGPD_AS)],
                    routes_v4=[PEER_ROUTE]).start()
    bgpd = Bgpd(a, "node1", docs(), extra_args=("--log-level", "info")).start()
    bgpd.wait_established(PEER_V4)

    def session_lines() -> list[dict[str, Any]]:
        # The lines about sessions: the session drivers' and the speaker's.
        return [e for e in log_events(bgpd) if e.get("logger") in SESSION_LOGGERS]

    wait_for(lambda: any(e["event"] == "session established" for e in session_lines()), 10,
             message="the established line")
    up = session_lines()
    assert [(e["event"], e["address"], e["peer_as"]) for e in up] == [
        ("session established", PEER_V4, PEER_AS)
    ], up

    # The peer shuts the session down: one line, with the reason.
    peer.birdc(f"disable {peer.protocol_name(BGPD_V4)}")
    wait_for(lambda: len(session_lines()) > 1, 30, message="the session down line")
    down = session_lines()[1]
    assert (down["event"], down["reason"]) == ("session down", "Received: Administrative shutdown")

    # 500 connections from an address bgpd has no peer for.
    flood = (
        "import socket\n"
        "for _ in range(500):\n"
        "    s = socket.socket()\n"
        f"    s.bind(({stranger!r}, 0))\n"
        f"    s.connect(({BGPD_V4!r}, 179))\n"
        "    s.recv(1)\n"
        "    s.close()\n"
    )
    b.run([sys.executable, "-c", flood], timeout=120)
    bgpd.stop()  # what is owed is summarised at the end
    lines = session_lines()
    refused = [e for e in lines if e["event"] == "connection refused"]
    assert [(e["address"], e["reason"]) for e in refused] == [
        (stranger, "not a configured neighbor")
    ]
    summaries = [e for e in lines if e["event"] == "suppressed similar"]
    assert [(e["address"], e["suppressed"]) for e in summaries
            if e["kind"] == "connection refused"] == [(stranger, 499)]
    # Bounded: after the drop, bgpd's attempts fail while BIRD refuses; each error is one
    # line a minute at most (its repeats counted), and nothing else is logged about sessions.
    after = lines[2:]
    assert {e["event"] for e in after} <= {
        "session attempt failed", "suppressed similar", "connection refused"
    }, after
    failures: dict[str, list[float]] = {}
    for e in after:
        if e["event"] == "session attempt failed":
            failures.setdefault(e["error"], []).append(_seconds(e["timestamp"]))
    for error, times in failures.items():
        assert all(t2 - t1 >= INTERVAL - 1 for t1, t2 in itertools.pairwise(times)), (error, times)


SESSION_LOGGERS = ("bgpd.session", "bgpd.speaker")


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
