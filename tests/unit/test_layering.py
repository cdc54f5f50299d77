"""The rooms keep to their walls (STYLE.md): the codec imports nothing of ours, the session
machine only the codec, and only the thin drivers touch asyncio, sockets or netlink."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {"asyncio", "socket", "pyroute2", "aetcd", "selectors", "ssl"}
# The thin shells: drivers (any room's driver.py, common/netlink's included), the control
# edge, the daemon and the CLIs.
IO_ALLOWED = {
    "bgpd/session/driver.py",
    "calico/store/etcd.py",
    # The embedded store runs its blocking sqlite3 calls in threads and polls for watches.
    "calico/store/sqlite.py",
    # Calico's datastore as a source: merges watch streams, debounces, backs off in outages.
    "calico/watch.py",
    # A file datastore as a source: polls the file for changes.
    "calico/filewatch.py",
    # Writes this node's BGP status every few seconds under a lease it keeps alive.
    "bgpd/status/reporter.py",
    "bgpd/control/server.py",
    # The daemon's shells: wiring and lifecycle, reconfiguration, systemd and the lag probe.
    "bgpd/daemon/app.py",
    "bgpd/daemon/reconfig.py",
    "bgpd/daemon/service.py",
    # systemd's notify protocol: one AF_UNIX datagram per message to $NOTIFY_SOCKET.
    "common/sdnotify.py",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


def test_wire_imports_nothing_of_ours() -> None:
    for path in modules("bgpd/wire"):
        ours = {m for m in imports(path) if m.split(".")[0] == "bgpd"}
        assert all(m.startswith("bgpd.wire") for m in ours), (path, ours)


def test_session_imports_only_wire() -> None:
    for path in modules("bgpd/session"):
        ours = {m for m in imports(path) if m.split(".")[0] == "bgpd"}
        allowed = ("bgpd.wire", "bgpd.session")
        assert all(m.startswith(allowed) for m in ours), (path, ours)


def test_bfd_imports_only_itself() -> None:
    # BFD is its own room: the daemon wires it to sessions, BFD never reaches out.
    for path in modules("bgpd/bfd"):
        ours = {m for m in imports(path) if m.split(".")[0] == "bgpd"}
        assert all(m.startswith("bgpd.bfd") for m in ours), (path, ours)


def test_only_drivers_do_io() -> None:
    for path in modules("bgpd") + modules("felix") + modules("calico") + modules("common"):
        rel = path.relative_to(ROOT).as_posix()
        # Any room's driver.py is its thin asyncio shell (STYLE.md).
        if rel in IO_ALLOWED or rel.startswith("bgpd/cli/") or path.name == "driver.py":
            continue
        io = {m for m in imports(path) if m.split(".")[0] in IO_MODULES}
        assert not io, f"{rel} imports {sorted(io)}: I/O belongs in a driver"


def test_core_rooms_never_import_the_daemon() -> None:
    for room in ("bgpd/wire", "bgpd/session", "bgpd/rib", "bgpd/policy", "bgpd/plan",
                 "bgpd/speaker", "calico"):
        for path in modules(room):
            assert not {m for m in imports(path) if m.startswith(("bgpd.daemon", "bgpd.cli"))}


def test_status_is_on_the_ground_floor() -> None:
    # The records and their codec are read by control, the CLI, metrics and the daemon alike,
    # so bgpd/status may import only the standard library, calico/, common/ and itself.
    for path in modules("bgpd/status"):
        for m in imports(path):
            top = m.split(".")[0]
            if top in sys.stdlib_module_names or top in ("calico", "common", "__future__"):
                continue
            assert m.startswith("bgpd.status"), f"{path.relative_to(ROOT)} imports {m}"


def test_metrics_reads_records_not_the_control_api() -> None:
    for path in modules("bgpd/metrics"):
        assert not {m for m in imports(path) if m.startswith("bgpd.control")}, path


def test_common_and_felix_import_nothing_of_bgpd() -> None:
    """felix and bgpd meet in the datastore and the kernel: what both need of netlink lives
    in common/, which imports neither daemon."""
    for room, banned in (("common", ("bgpd", "felix", "calico")), ("felix", ("bgpd",))):
        for path in modules(room):
            found = {m for m in imports(path) if m.split(".")[0] in banned}
            assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"
