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
    # felix's second dataplane shell beside routes_driver.py: nft transactions in a thread,
    # `nft monitor` as a subprocess.
    "felix/dataplane/nft_driver.py",
    # `felix policy show|explain`: reads the datastore once, and the kernel's counters.
    "felix/cli.py",
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


# The rooms of the house and what each may import (besides itself and the standard library).
# A room is a top-level package or one of bgpd's folders; modules directly under bgpd/
# (`bgpd/__init__.py`) belong to no room. Reading down the table is reading down the floors.
ROOMS: dict[str, set[str]] = {
    "common": set(),
    "calico": {"common"},
    "bgpd.wire": set(),
    "bgpd.bfd": {"common"},
    "bgpd.session": {"bgpd.wire", "common"},
    "bgpd.rib": {"bgpd.wire"},
    "bgpd.policy": {"bgpd.rib", "bgpd.wire", "calico"},
    "bgpd.plan": {"bgpd.policy", "bgpd.wire", "calico"},
    "bgpd.kernel": {"bgpd.rib", "bgpd.wire", "common"},
    "bgpd.status": {"calico", "common"},
    "bgpd.control": {
        "bgpd", "bgpd.status", "bgpd.policy", "bgpd.rib", "bgpd.wire", "bgpd.bfd", "common",
    },
    "bgpd.metrics": {"bgpd.control", "bgpd.status", "common"},
    "bgpd.speaker": {
        "bgpd.plan", "bgpd.policy", "bgpd.rib", "bgpd.session", "bgpd.wire", "bgpd.kernel",
        "common",
    },
    "bgpd.daemon": {
        "bgpd", "bgpd.speaker", "bgpd.bfd", "bgpd.plan", "bgpd.policy", "bgpd.rib", "bgpd.session",
        "bgpd.wire", "bgpd.kernel", "bgpd.control", "bgpd.metrics", "bgpd.status", "calico",
        "common",
    },
    "bgpd.cli": {
        "bgpd", "bgpd.daemon", "bgpd.plan", "bgpd.policy", "bgpd.control", "bgpd.status",
        "bgpd.metrics", "bgpd.session", "bgpd.bfd",
        "bgpd.wire", "calico", "common",
    },
    "felix": {"calico", "common"},
}
OURS = ("bgpd", "felix", "calico", "common")


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in OURS:
        return None
    if parts[0] == "bgpd":
        if len(parts) == 1 or parts[1] == "__init__":
            return "bgpd"
        return f"bgpd.{parts[1]}" if f"bgpd.{parts[1]}" in ROOMS else "bgpd"
    return parts[0]


def room_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in OURS:
        for path in modules(top):
            rel = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            room = room_of(rel)
            if room is None or room == "bgpd":
                continue
            found = {room_of(m) for m in imports(path)} - {None, room}
            graph.setdefault(room, set()).update(r for r in found if r is not None)
    return graph


def test_every_room_imports_only_what_it_may() -> None:
    graph = room_imports()
    assert set(graph) <= set(ROOMS), f"rooms missing from ROOMS: {set(graph) - set(ROOMS)}"
    for room, found in sorted(graph.items()):
        extra = found - ROOMS[room]
        assert not extra, f"{room} imports {sorted(extra)}, which it may not"


def test_no_folder_level_loop() -> None:
    graph = room_imports()
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        if room in path:
            raise AssertionError("rooms import each other: " + " -> ".join((*path, room)))
        if room in done:
            return
        for nxt in sorted(graph.get(room, ())):
            visit(nxt, (*path, room))
        done.add(room)

    for room in sorted(graph):
        visit(room, ())


def test_the_shared_packages_import_neither_daemon() -> None:
    for top in ("calico", "common"):
        for path in modules(top):
            ours = {m.split(".")[0] for m in imports(path)} & {"bgpd", "felix"}
            assert not ours, f"{path.relative_to(ROOT)} imports {sorted(ours)}"


def test_felix_and_bgpd_never_import_each_other() -> None:
    for path in modules("felix"):
        assert not {m for m in imports(path) if m.split(".")[0] == "bgpd"}, path
    for path in modules("bgpd"):
        assert not {m for m in imports(path) if m.split(".")[0] == "felix"}, path


def test_the_core_rooms_and_the_speaker_are_sans_io() -> None:
    """Apart from their one driver.py, the protocol rooms never touch the event loop."""
    for room in ("bgpd/wire", "bgpd/session", "bgpd/rib", "bgpd/policy", "bgpd/plan",
                 "bgpd/speaker", "bgpd/status"):
        for path in modules(room):
            if path.name == "driver.py" or path.relative_to(ROOT).as_posix() in IO_ALLOWED:
                continue
            io = {m for m in imports(path) if m.split(".")[0] in IO_MODULES}
            assert not io, f"{path.relative_to(ROOT)} imports {sorted(io)}"


def test_common_and_felix_import_nothing_of_bgpd() -> None:
    """felix and bgpd meet in the datastore and the kernel: what both need of netlink lives
    in common/, which imports neither daemon."""
    for room, banned in (("common", ("bgpd", "felix", "calico")), ("felix", ("bgpd",))):
        for path in modules(room):
            found = {m for m in imports(path) if m.split(".")[0] in banned}
            assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"
