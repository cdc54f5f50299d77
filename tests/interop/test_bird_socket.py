"""bgpd's BIRD socket against BIRD's real clients and beside real BIRDs (issue 19).

One switch: an external BIRD 2 as another Calico node of the mesh (10.0.79.12), a BIRD 2
ToR as a global peer (10.0.79.2, AS 64513), and a node-specific peer that refuses
connections (10.0.79.3). Three subjects peer with that same set, with Calico's protocol
names: bgpd (--bird-socket), a real BIRD 2 and a real BIRD 1.6 (calico-node's version,
unpacked by scripts/setup.sh under /opt/bird1.6), both configured as confd configures BIRD.

- `birdc` / `birdcl` of BIRD 2 and `birdc` of BIRD 1.6 (Debian ships no 1.6 birdcl) run every
  command against bgpd's socket and print what the socket said, as they print BIRD's.
- Calico's parser rules (labs/harness/calico_bird.py) read the three subjects' `show
  protocols` and `show status` to the same peers, states, BGP states, info, readiness and
  graceful-restart answer, and `show route ... count` to the same counts per protocol.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from labs.harness.bgpd_node import Bgpd
from labs.harness.calico_bird import (
    BgpPeer,
    bird_live,
    bird_ready,
    gr_in_progress,
    query,
    scan_bird_peers,
)
from labs.harness.calico_cluster import ASN, NodeDef, cluster_docs
from labs.harness.lab import Lab, Node
from labs.harness.needs import require
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

pytestmark = pytest.mark.interop

BIRD16 = Path("/opt/bird1.6/usr/sbin")
MESH_IP, TOR_IP, DEAD_IP = "10.0.79.12", "10.0.79.2", "10.0.79.3"
SUBJECTS = {"bgpd": "10.0.79.21", "bird2": "10.0.79.22", "bird16": "10.0.79.23"}
TOR_AS = 64513
MESH = "Mesh_" + MESH_IP.replace(".", "_")
GLOBAL = "Global_" + TOR_IP.replace(".", "_")
NODE = "Node_" + DEAD_IP.replace(".", "_")
BLOCK = "192.168.1.0/26"

COMMANDS = [
    "show status",
    "show protocols",
    "show protocols all",
    f"show protocols all {MESH}",
    'show protocols "Mesh*"',
    "show route",
    "show route all",
    "show route for 192.168.12.5",
    "show route for 10.50.1.1 all",
    f"show route protocol {MESH}",
    "show route count",
    f"show route protocol {GLOBAL} count",
    "show memory",
]

# What confd writes for a node (reference/calico.md 4.1), with the three peers.
_BIRD_CONFIG = """\
router id {me};
protocol kernel {{ {k_channel} learn; persist; scan time 2; graceful restart; }}
protocol device {{ scan time 2; }}
protocol direct {{ {d_channel} interface -"cali*", -"kube-ipvs*", "*"; }}
protocol static {{ {s_channel} route {block} blackhole; }}
template bgp bgp_template {{
  debug {{ states }}; description "Connection to BGP peer"; local as {asn}; multihop;
  {channel} graceful restart; connect delay time 2; connect retry time 5;
  error wait time 5,30;
}}
protocol bgp {mesh} from bgp_template {{ neighbor {mesh_ip} as {asn}; passive on; }}
protocol bgp {glob} from bgp_template {{ neighbor {tor_ip} as {tor_as}; }}
protocol bgp {node} from bgp_template {{ neighbor {dead_ip} as {tor_as}; }}
"""


def bird_config(me: str, version: int) -> str:
    if version == 2:
        channels = {
            "k_channel": "ipv4 { import all; export none; };",
            "d_channel": "ipv4;",
            "s_channel": "ipv4;",
            "channel": "ipv4 { gateway recursive; import all; export all; };",
        }
    else:
        channels = {"k_channel": "import all; export none;", "d_channel": "", "s_channel": "",
                    "channel": "gateway recursive; import all; export all;"}
    return _BIRD_CONFIG.format(
        me=me, block=BLOCK, asn=ASN, mesh=MESH, mesh_ip=MESH_IP, glob=GLOBAL, tor_ip=TOR_IP,
        tor_as=TOR_AS, node=NODE, dead_ip=DEAD_IP, **channels,
    )


def short_dir(lab: Lab) -> Path:
    # A unix socket path must stay under 108 bytes; pytest's tmp paths may not.
    d = Path(tempfile.mkdtemp(prefix="pyb-bird-"))
    lab.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def start_bird(lab: Lab, node: Node, me: str, version: int) -> Path:
    d = short_dir(lab)
    conf = d / "bird.conf"
    conf.write_text(bird_config(me, version))
    bird = "bird" if version == 2 else str(BIRD16 / "bird")
    node.popen([bird, "-f", "-c", str(conf), "-s", str(d / "bird.ctl"), "-P", str(d / "pid")],
               label=f"bird{version} subject")
    wait_for(lambda: (d / "bird.ctl").exists(), 15, message=f"bird{version} socket")
    return d / "bird.ctl"


def peers_of(path: Path, headings: str = "bird1") -> list[BgpPeer]:
    return scan_bird_peers(query(str(path), "show protocols"), headings=headings)


def settled(peers: list[BgpPeer]) -> bool:
    by_ip = {p.peer_ip: p for p in peers}
    return (
        len(peers) == 3
        and by_ip[MESH_IP].bgp_state == "Established"
        and by_ip[TOR_IP].bgp_state == "Established"
        and by_ip[DEAD_IP].info == "Socket: Connection refused"
    )


def compared(peers: list[BgpPeer]) -> list[tuple[str, str, str, str, str]]:
    # Since differs (each subject started on its own); a session that keeps being refused
    # is Active or Connect depending on the moment: its state, info and the rest count.
    return sorted(
        (p.peer_ip, p.peer_type, p.state, p.bgp_state if p.state == "up" else "-", p.info)
        for p in peers
    )


def count_of(path: Path, protocol: str) -> str:
    """`show route protocol P count`: the routes P contributes (BIRD 1.6's 0014 line or
    BIRD 2's per-table line)."""
    reply = query(str(path), f"show route protocol {protocol} count")
    counts = [re.search(r"(\d+) of \d+ routes", line) for line in reply[1:]]
    return next(m.group(1) for m in counts if m)


def client_view(reply: list[str]) -> str:
    """What birdc/birdcl print for reply lines (client/client.c server_got_reply)."""
    out = []
    for line in reply:
        if line.startswith(" "):
            out.append(line[1:])
        elif re.match(r"^\d{4}[ -]", line) and int(line[:4]):
            out.append(line[5:])
    return "\n".join(out) + "\n"


def masked(text: str) -> str:
    """Times and memory figures move between two asks; the rest must not."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", "<time>", text)
    text = re.sub(r"\d\d:\d\d:\d\d(\.\d+)?", "<time>", text)
    return re.sub(r"\d+(\.\d)? +([ kMG])B", "<size>", text)


# The bgpd of each world, by its BIRD socket (bgpctl speaks to its JSON socket).
BGPD: dict[str, Bgpd] = {}


@pytest.fixture
def world(lab: Lab) -> dict[str, Path]:
    if missing_programs(BirdPeer):
        pytest.skip(f"BirdPeer: missing {', '.join(missing_programs(BirdPeer))}")
    sw = lab.add_switch("sw", "10.0.79.0/24", "fd00:79::/64")
    require((BIRD16 / "bird").exists() and (BIRD16 / "birdc").exists(),
            f"BIRD 1.6 is not unpacked under {BIRD16} (scripts/setup.sh does it)")
    subjects = SUBJECTS
    nodes = {}
    for name, ip in {"mesh": MESH_IP, "tor": TOR_IP, "dead": DEAD_IP, **subjects}.items():
        nodes[name] = lab.add_node(name)
        sw.attach(nodes[name], ip)
    BirdPeer(nodes["mesh"], MESH_IP, ASN, [Neighbor(ip, ASN) for ip in subjects.values()],
             routes_v4=["192.168.12.0/26"]).start()
    BirdPeer(nodes["tor"], TOR_IP, TOR_AS, [Neighbor(ip, ASN) for ip in subjects.values()],
             routes_v4=["10.50.0.0/16", "10.60.0.0/24"]).start()
    docs = cluster_docs(
        {"bgpd": NodeDef(SUBJECTS["bgpd"], BLOCK), "mesh": NodeDef(MESH_IP)},
        mesh=True,
        peers={"tor": {"peerIP": TOR_IP, "asNumber": TOR_AS},
               "dead": {"node": "bgpd", "peerIP": DEAD_IP, "asNumber": TOR_AS}},
    )
    d = short_dir(lab)
    sockets = {"bgpd": d / "bird.ctl", "bgpd6": d / "bird6.ctl"}
    BGPD[str(sockets["bgpd"])] = Bgpd(nodes["bgpd"], "bgpd", docs, extra_args=(
        "--no-fib", "--bird-socket", str(sockets["bgpd"]), "--bird6-socket",
        str(sockets["bgpd6"]),
    )).start()
    sockets["bird2"] = start_bird(lab, nodes["bird2"], SUBJECTS["bird2"], 2)
    sockets["bird16"] = start_bird(lab, nodes["bird16"], SUBJECTS["bird16"], 16)
    for name in ("bgpd", "bird2", "bird16"):
        headings = "bird2" if name == "bird2" else "bird1"
        wait_for(lambda n=name, h=headings: settled(peers_of(sockets[n], h)), 60,
                 message=lambda n=name, h=headings: f"{n}: {peers_of(sockets[n], h)}")
        # Established is not the same as holding the peers' routes: the UPDATEs follow.
        wait_for(lambda n=name: (count_of(sockets[n], MESH), count_of(sockets[n], GLOBAL))
                 == ("1", "2"), 30, message=lambda n=name: f"{n}: the peers' routes")
    return sockets


def test_calico_reads_bgpd_as_it_reads_bird(world: dict[str, Path]) -> None:
    ours = peers_of(world["bgpd"])
    theirs = {"bird2": peers_of(world["bird2"], "bird2"), "bird16": peers_of(world["bird16"])}
    for name, peers in theirs.items():
        assert compared(ours) == compared(peers), name
        assert bird_ready(ours, False) == bird_ready(peers, False)
    assert bird_ready(ours, False) == f"BGP not established with {DEAD_IP}"
    # The IPv6 socket: no IPv6 sessions here, as bird6 would have none.
    assert peers_of(world["bgpd6"]) == []
    for name, path in world.items():
        status = query(str(path), "show status")
        assert not gr_in_progress(status), name
        assert status[-1] == "0013 Daemon is up and running", name
    for protocol in (MESH, GLOBAL):
        counts = {name: count_of(path, protocol) for name, path in world.items()
                  if name != "bgpd6"}
        assert len(set(counts.values())) == 1, (protocol, counts)


def clients() -> list[list[str]]:
    """BIRD 2's two clients (Debian's bird2 ships both) and BIRD 1.6's birdc (the world
    requires it): each must be there."""
    return [["birdc"], ["birdcl"], [str(BIRD16 / "birdc")]]


def test_birds_clients_run_every_command(world: dict[str, Path]) -> None:
    sock = str(world["bgpd"])
    for client in clients():
        for command in COMMANDS:
            got = subprocess.run([*client, "-s", sock, *command.split()], capture_output=True,
                                 text=True, timeout=20, stdin=subprocess.DEVNULL)
            assert got.returncode == 0, (client, command, got.stderr)
            expected = client_view(query(sock, command))
            assert masked(got.stdout) == masked(expected), (client, command, got.stdout)
            assert got.stdout.startswith("BIRD 1.6.8+pybgpd"), (client, command)
        # -bird-live: `birdcl -s SOCKET show status` begins with "BIRD".
        live = subprocess.run([*client, "-s", sock, "show", "status"], capture_output=True,
                              text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert bird_live(live.stdout)


def test_clients_expand_and_bgpd_refuses_changes(world: dict[str, Path]) -> None:
    sock = str(world["bgpd"])
    for client in clients():
        def run(*words: str, c: list[str] = client) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*c, "-s", sock, *words], capture_output=True, text=True,
                                  timeout=20, stdin=subprocess.DEVNULL)

        # The clients expand BIRD's abbreviations themselves, so bgpd sees full words.
        short, full = run("sh", "pro"), run("show", "protocols")
        assert masked(short.stdout) == masked(full.stdout), client
        assert MESH in full.stdout
        denied = run("disable", MESH)
        assert "Access denied" in denied.stdout, client
        restricted = run("-r", "show", "status")
        assert "Daemon is up and running" in restricted.stdout, client
        unknown = run("show", "protocols", "nosuch")
        assert "nosuch is not a protocol" in unknown.stdout, client


def test_bgpctl_show_route_for_finds_the_longest_match(world: dict[str, Path]) -> None:
    bgpd = BGPD[str(world["bgpd"])]
    for words in (["show", "route", "for", "192.168.12.5"], ["routes", "192.168.12.5"],
                  ["sh", "ro", "for", "192.168.12.5"]):
        out = bgpd.bgpctl(*words).stdout
        assert "192.168.12.0/26" in out, (words, out)
    explained = bgpd.bgpctl("explain", "192.168.12.5").stdout
    assert explained.startswith("192.168.12.0/26"), explained
    assert "No routes" in bgpd.bgpctl("show", "route", "192.168.12.5/32").stdout
