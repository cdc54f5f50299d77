"""The pure parts of issue 17's benchmarks: storm scenarios and the load generator's per-client
summary, the report (merging, cells, targets, chart bars), /proc parsing, the rtnetlink parser
and FIB state of the mesh benchmark, and the Calico configurations it writes for both daemons."""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fibwatch
import mesh_bench
import procstat
import report
import rr_loadgen
import rr_scenarios
from fibwatch import FibState, RouteEvent, loss_summary, route_messages

from bgpd.plan.peering import compute
from calico.file import load_text

# --- scenarios --------------------------------------------------------------------------------


def test_storm_scenarios_name_their_settled_counterparts() -> None:
    for name in ("storm-1000x4", "storm-2000x4", "storm-5000x4", "stagger-2000x4"):
        s = rr_scenarios.ALL[name]
        assert s.storm and s.mode in ("storm", "stagger")
        assert s.settled in rr_scenarios.ALL
        counterpart = rr_scenarios.ALL[s.settled]
        assert not counterpart.storm
        assert (counterpart.clients, counterpart.prefixes) == (s.clients, s.prefixes)
    assert rr_scenarios.ALL["storm-5000x4"].burst == 20
    assert rr_scenarios.ALL["stagger-2000x4"].stagger_s == 10.0
    assert set(rr_scenarios.STORM_RUN) >= {"2000x4", "storm-2000x4", "stagger-2000x4"}


# --- the load generator's per-client record ---------------------------------------------------


def test_storm_summary_of_client_times() -> None:
    times = [
        rr_loadgen.ClientTimes(0.0, 0.05, 0.05, attempts=1),
        rr_loadgen.ClientTimes(0.01, 1.01, 1.02, attempts=3, failures=2),
        rr_loadgen.ClientTimes(0.02, 0.12, 0.12, attempts=2, reconnects=1),
        rr_loadgen.ClientTimes(0.5),  # never came up
    ]
    s = rr_loadgen.storm_summary(times)
    assert s["clients_established"] == 3
    assert s["first_announce_s"] == 0.05
    assert s["last_connect_s"] == 0.5
    assert s["last_established_s"] == 1.01
    assert s["last_announce_s"] == 1.02
    assert s["session_setup_p50_ms"] == pytest.approx(100.0)
    assert s["session_setup_max_ms"] == pytest.approx(1000.0)
    assert (s["connect_failures"], s["reconnects"]) == (2, 1)


def test_storm_summary_of_nobody_and_quantiles() -> None:
    s = rr_loadgen.storm_summary([rr_loadgen.ClientTimes()])
    assert s["clients_established"] == 0
    assert s["first_announce_s"] is None and s["session_setup_p99_ms"] is None
    assert rr_loadgen.quantile([], 0.5) is None
    assert rr_loadgen.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert rr_loadgen.quantile([float(i) for i in range(100)], 0.99) == 99.0


def test_load_generator_refuses_an_unknown_mode() -> None:
    import asyncio

    async def make() -> None:
        rr_loadgen.LoadGen({"mode": "stampede", "clients": [], "monitor": "10.0.0.9"})

    with pytest.raises(ValueError, match="stampede"):
        asyncio.run(make())


# --- result files ------------------------------------------------------------------------------


def test_save_result_merges_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "results" / "rr.json"
    report.save_result("a/bgpd", {"elapsed_s": 1.0}, path)
    report.save_result("b/bgpd", {"elapsed_s": 2.0}, path)
    report.save_result("a/bgpd", {"elapsed_s": 3.0}, path)
    assert report.load_results(path) == {"a/bgpd": {"elapsed_s": 3.0}, "b/bgpd": {"elapsed_s": 2.0}}
    assert not list(tmp_path.glob("results/*.tmp"))
    assert report.load_results(tmp_path / "absent.json") == {}


# --- report cells and targets ------------------------------------------------------------------

DONE = {"from_connect_s": 2.5, "from_announce_s": 2.4, "cpu_s": 1.25, "rss_mb": 80.0, "drops": 0}
NOT_DONE = {"from_connect_s": None, "timeout_s": 300, "routes_held": 50, "routes_wanted": 200,
            "cpu_s": 99.0, "rss_mb": 10.0}  # fmt: skip


def test_storm_cell_shows_both_times_and_marks_unfinished_runs() -> None:
    assert report.storm_cell(DONE) == "2.50 s / 2.40 s, 1.25 CPU-s, 80 MB"
    assert report.storm_cell({**DONE, "drops": 3}).endswith("; 3 sessions dropped")
    assert report.storm_cell(NOT_DONE).startswith("not done after 300 s (25%)")
    assert report.storm_cell({"error": "lab failed"}) == "error: lab failed"
    assert report.storm_cell(None) == "-"


def test_storm_detail_says_how_long_after_the_last_join_a_stagger_finished() -> None:
    r = {**DONE, "mode": "stagger", "last_connect_s": 2.0, "clients_established": 5,
         "last_established_s": 2.1, "session_setup_p50_ms": 3.0, "session_setup_p99_ms": 9.0,
         "connect_failures": 2, "loadgen_cpu_s": 0.5}  # fmt: skip
    text = report.storm_detail(r)
    assert "done 0.50 s after the last client began" in text
    assert "2 failed attempts" in text and "generator 0.5 CPU-s" in text
    assert report.storm_detail({"error": "x"}) == "-"


def storm_records(bgpd: float, floor: float, frr: dict[str, Any]) -> dict[str, Any]:
    return {
        "storm-5000x4/bgpd": {**DONE, "from_connect_s": bgpd},
        "storm-5000x4/floor": {**DONE, "from_connect_s": floor},
        "storm-5000x4/frr": frr,
        "storm-2000x4/bgpd": {**DONE, "from_connect_s": 3.0},
        "2000x4/bgpd": {"setup_s": 1.0, "elapsed_s": 0.6},
    }


def test_storm_targets() -> None:
    lines = report.storm_targets(storm_records(3.0, 2.0, {**DONE, "from_connect_s": 20.0}))
    assert lines[0].startswith("storm-5000x4 within 2x floor: met")
    assert lines[1].startswith("storm-5000x4 under FRR/4: met")
    assert lines[2].startswith("storm-5000x4 no session dropped: met")
    # Settled 2000x4 took 1.0 + 0.6 s: 3.0 s is within twice that.
    assert lines[3].startswith("storm-2000x4 within 2x settled 2000x4 (set-up + elapsed): met")
    lines = report.storm_targets(storm_records(5.0, 2.0, {**DONE, "from_connect_s": 19.0}))
    assert "NOT met" in lines[0] and "NOT met" in lines[1]


def test_storm_target_against_an_frr_that_did_not_finish_uses_its_limit() -> None:
    lines = report.storm_targets(storm_records(3.0, 2.0, NOT_DONE))
    assert lines[1] == "storm-5000x4 under FRR/4: met (3.0 s vs FRR not done after 300 s)"
    lines = report.storm_targets(storm_records(80.0, 2.0, NOT_DONE))
    assert "NOT met" in lines[1]
    assert all(line.endswith("not measured") for line in report.storm_targets({}))


MESH50 = {
    "mesh-50/bgpd": {"converge_s": 4.0, "cpu_total_s": 4.5, "startup_cpu_max_s": 0.08,
                     "cpu_per_session_after_startup_ms": 0.3, "idle_pct_max": 0.01,
                     "restart": {"lost_routes": 0, "reconverge_s": 3.0}},
    "mesh-50/bird": {"converge_s": 5.2, "cpu_total_s": 1.0, "restart": {"lost_routes": 49}},
}  # fmt: skip


def test_mesh_targets() -> None:
    lines = report.mesh_targets(MESH50)
    assert [line.split(": ", 1)[1].split(" ")[0] for line in lines] == ["met"] * 6
    slow = {**MESH50, "mesh-50/bgpd": {**MESH50["mesh-50/bgpd"], "cpu_total_s": 5.5,
                                        "restart": {"lost_routes": 2}}}  # fmt: skip
    lines = report.mesh_targets(slow)
    assert "NOT met" in lines[1] and "NOT met" in lines[5]
    assert all(line.endswith("not measured") for line in report.mesh_targets({}))


def test_mesh_cell_of_an_unconverged_run_and_of_a_lossy_restart() -> None:
    cells = report.mesh_cell({"converge_s": None, "timeout_s": 120, "fib_held": 30,
                              "fib_wanted": 40})  # fmt: skip
    assert cells[0] == "not converged after 120 s (75%)"
    cells = report.mesh_cell({"converge_s": 5.0, "restart": {
        "lost_routes": 8, "nodes_lost": 5, "max_gap_s": 1.86, "reconverge_s": 1.9}})  # fmt: skip
    assert cells[-2] == "8 on 5 nodes, longest gap 1.9 s"
    assert cells[-1] == "1.90"
    assert report.mesh_cell({"error": "boom"})[0] == "error: boom"


# --- the chart's bars --------------------------------------------------------------------------


def test_unfinished_runs_are_marks_not_bars_at_the_limit() -> None:
    assert report.bar_for(DONE, "from_connect_s") == report.Bar(2.5)
    bar = report.bar_for(NOT_DONE, "from_connect_s")
    assert bar.value is None and bar.mark == "not done (300 s limit)"
    assert report.bar_for({"error": "x"}, "from_connect_s") == report.Bar(None, "error")
    assert report.bar_for(None, "elapsed_s") == report.Bar(None)


def test_panels_have_a_storm_panel_and_say_lower_is_better() -> None:
    rr = {
        "1000x4/bgpd": {"elapsed_s": 0.3},
        "storm-1000x4/bgpd": {**DONE},
        "storm-1000x4/bird": {**NOT_DONE},
    }
    found = report.panels(rr, MESH50)
    titles = [p.title for p in found]
    assert titles[0].startswith("settled") and titles[1].startswith("storm")
    assert any(t.startswith("mesh") for t in titles)
    storm = found[1]
    assert storm.groups == ["storm-1000x4"]
    assert storm.series["bgpd"] == [report.Bar(2.5)]
    assert storm.series["bird"][0].value is None and storm.series["bird"][0].mark
    assert all("lower is better" in p.ylabel for p in found)


# --- the whole document ------------------------------------------------------------------------


def test_render_markdown_has_storm_and_mesh_sections_and_one_runs_list() -> None:
    machine = {"nproc": 2, "cpu": "x", "memory_gb": 1.0, "kernel": "k", "python": "3.11",
               "versions": {"bgpd": "pybgpd 0"}}  # fmt: skip
    rr = {
        "2000x4/bgpd": {"setup_s": 1.0, "elapsed_s": 0.6, "cpu_s": 0.6, "rss_mb": 60.0,
                        "machine": machine, "date": "2026-01-01T00:00:00+00:00"},
        "storm-2000x4/bgpd": {**DONE, "machine": machine, "date": "2026-01-01T00:01:00+00:00"},
    }  # fmt: skip
    mesh = {k: {**v, "machine": machine, "date": "2026-01-01T00:02:00+00:00"}
            for k, v in MESH50.items()}  # fmt: skip
    text = report.render_markdown(rr, mesh)
    assert "## Storms" in text and "| storm-2000x4 |" in text
    assert "## Node-to-node mesh" in text and "| 50 | bgpd |" in text and "| 50 | bird |" in text
    assert text.index("| 50 | bgpd |") < text.index("| 50 | bird |")
    # storm/settled: 2.5 s over 1.0 + 0.6 s.
    row = next(line for line in text.splitlines() if line.startswith("| storm-2000x4 |"))
    assert row.rstrip(" |").endswith("1.56")
    assert text.count("## Runs") == 1 and text.count("- 2 CPUs") == 1
    assert "mesh-50/bird" in text and "storm-2000x4/bgpd" in text
    assert "lower is better" in text


def test_render_markdown_without_storms_or_mesh_has_neither_section() -> None:
    text = report.render_markdown({"1000x4/bgpd": {"elapsed_s": 0.3, "setup_s": 0.6}}, {})
    assert "## Storms" not in text and "## Node-to-node mesh" not in text
    assert "| 1000x4 |" in text


# --- /proc parsing -----------------------------------------------------------------------------


def test_stat_fields_skip_a_command_name_with_spaces_and_parentheses() -> None:
    text = "4242 (bgpd (x) y) S 1 4242 4242 0 -1 0 0 0 0 0 150 25 0 0 20 0 1 0\n"
    fields = procstat.stat_fields(text)
    assert fields[0] == "S" and fields[1] == "1"
    assert (int(fields[11]), int(fields[12])) == (150, 25)


def test_status_and_schedstat_fields() -> None:
    status = "Name:\tbgpd\nVmHWM:\t  35000 kB\nVmRSS:\t  34000 kB\n"
    assert procstat.status_kb(status, "VmRSS:") == 34000
    assert procstat.status_kb(status, "VmSwap:") == 0
    assert procstat.schedstat_ns("208085383 8515464394 607\n") == 208085383


def test_listening_ports_from_proc_net_tcp() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 00000000:00B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
        "   1: 0100000A:9C40 0200000A:00B3 01 00000000:00000000 00:00000000 00000000     0\n"
    )
    assert procstat.listening_ports(text) == {179}
    six = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A\n"
    )
    assert procstat.listening_ports(six) == {22}


def test_cpu_of_this_process_is_readable() -> None:
    import os

    assert procstat.cpu_seconds([os.getpid()]) > 0
    assert procstat.run_ns(os.getpid()) > 0
    assert procstat.cpu_seconds([2**22 + 12345]) == 0  # no such process


# --- rtnetlink messages ------------------------------------------------------------------------


def rta(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def route_msg(kind: int, prefix: str, seq: int = 0, table: int = 254, priority: int = 0,
              family: int = socket.AF_INET) -> bytes:  # fmt: skip
    net, plen = prefix.split("/")
    body = struct.pack("=BBBBBBBBI", family, int(plen), 0, 0, table if table < 256 else 252,
                       186, 0, 1, 0)  # fmt: skip
    body += rta(fibwatch.RTA_TABLE, struct.pack("=I", table))
    body += rta(fibwatch.RTA_DST, socket.inet_aton(net))
    if priority:
        body += rta(fibwatch.RTA_PRIORITY, struct.pack("=I", priority))
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def done_msg(seq: int) -> bytes:
    return struct.pack("=IHHII", 20, fibwatch.NLMSG_DONE, 2, seq, 0) + b"\0" * 4


def test_route_messages_parse_new_del_and_dump_end() -> None:
    data = (
        route_msg(fibwatch.RTM_NEWROUTE, "192.168.2.0/26", seq=7)
        + route_msg(fibwatch.RTM_DELROUTE, "192.168.3.0/26", priority=1024)
        + route_msg(fibwatch.RTM_NEWROUTE, "10.1.0.0/16", table=1000)
        + route_msg(fibwatch.RTM_NEWROUTE, "192.168.9.0/26", family=socket.AF_INET6)
        + done_msg(7)
    )
    events = route_messages(data)
    assert events == [
        RouteEvent("new", 7, "192.168.2.0/26", 254, (0, 0)),
        RouteEvent("del", 0, "192.168.3.0/26", 254, (0, 1024)),
        RouteEvent("new", 0, "10.1.0.0/16", 1000, (0, 0)),
        RouteEvent("done", 7),
    ]
    assert route_messages(data[:30]) == []  # a cut message is left alone


def test_dump_request_is_a_get_route_dump() -> None:
    raw = fibwatch.dump_request(5)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", raw)
    assert (length, kind, seq) == (len(raw), fibwatch.RTM_GETROUTE, 5)
    assert flags & fibwatch.NLM_F_DUMP == fibwatch.NLM_F_DUMP
    assert raw[16] == socket.AF_INET


# --- FIB state ---------------------------------------------------------------------------------

A, B = "192.168.1.0/26", "192.168.2.0/26"


def new(prefix: str, priority: int = 0) -> RouteEvent:
    return RouteEvent("new", 0, prefix, 254, (0, priority))


def delete(prefix: str, priority: int = 0) -> RouteEvent:
    return RouteEvent("del", 0, prefix, 254, (0, priority))


def test_fib_state_tracks_what_is_missing() -> None:
    state = FibState({"n1": {B}, "n2": {A}})
    assert state.missing == {("n1", B), ("n2", A)} and state.held_count == 0
    state.apply("n1", new(B), 1.0)
    state.apply("n2", new(A), 1.0)
    state.apply("n2", RouteEvent("new", 0, A, 10, (0, 0)), 1.0)  # another table: ignored
    state.apply("n2", new("10.0.0.0/24"), 1.0)  # not a block: ignored
    assert not state.missing and state.held_count == state.wanted_count == 2
    # Its own block on a node is not wanted there: no loss when it goes.
    state.track_losses()
    state.apply("n1", new(A), 2.0)
    state.apply("n1", delete(A), 2.5)
    assert state.losses == []


def test_fib_state_records_losses_only_while_tracking() -> None:
    state = FibState({"n1": {B}, "n2": {A}})
    state.apply("n1", new(B), 1.0)
    state.apply("n1", delete(B), 1.5)  # before tracking: missing again, but no loss
    assert ("n1", B) in state.missing and state.losses == []
    state.apply("n1", new(B), 2.0)
    state.track_losses()
    state.apply("n1", delete(B), 3.0)
    state.apply("n1", new(B), 3.25)
    assert [(x.node, x.prefix, x.since, x.until) for x in state.losses] == [("n1", B, 3.0, 3.25)]


def test_a_second_route_for_the_prefix_keeps_it_held() -> None:
    state = FibState({"n1": {B}})
    state.track_losses()
    state.apply("n1", new(B, 0), 1.0)
    state.apply("n1", new(B, 1024), 1.1)
    state.apply("n1", delete(B, 0), 1.2)  # the other one is still there
    assert state.holds("n1", B) and state.losses == []
    state.apply("n1", new(B, 1024), 1.3)  # a replace (same key): no change
    state.apply("n1", delete(B, 1024), 1.4)
    assert not state.holds("n1", B) and len(state.losses) == 1


def test_fib_state_replace_after_an_overflow() -> None:
    state = FibState({"n1": {A, B}})
    state.apply("n1", new(A), 1.0)
    state.apply("n1", new(B), 1.0)
    state.track_losses()
    state.replace("n1", {A: {(0, 0)}}, 5.0)  # the dump no longer has B
    assert state.missing == {("n1", B)}
    assert [(x.prefix, x.since) for x in state.losses] == [(B, 5.0)]


def test_loss_summary() -> None:
    state = FibState({"n1": {B}, "n2": {A, B}, "n3": {A}})
    for node, prefixes in state.wanted.items():
        for p in prefixes:
            state.apply(node, new(p), 0.0)
    state.track_losses()
    state.apply("n1", delete(B), 1.0)
    state.apply("n2", delete(B), 1.0)
    state.apply("n1", new(B), 2.5)
    state.apply("n3", delete(A), 1.5)
    s = loss_summary(state.losses, 4.0, restarted_block=B)
    assert s["lost_routes"] == 3 and s["nodes_lost"] == 3
    assert s["restarted_block_lost_on"] == 2
    assert s["still_missing"] == 2
    assert s["max_gap_s"] == pytest.approx(3.0)  # n2's B, open since 1.0
    assert loss_summary([], 4.0, B)["max_gap_s"] is None


# --- the mesh's configurations -----------------------------------------------------------------


def test_calico_docs_give_bgpd_a_full_mesh_with_its_block() -> None:
    docs = mesh_bench.calico_docs(12)
    snapshot = load_text(yaml.safe_dump_all(docs, sort_keys=False))
    plan = compute(snapshot, "n10")
    assert plan.node_ipv4 == "10.0.0.10"
    assert sorted(s.peer_address for s in plan.sessions) == sorted(
        mesh_bench.node_ip(i) for i in range(1, 13) if i != 10
    )
    assert [o.prefix for o in plan.originate] == ["192.168.10.0/26"]


def bird_passive_peers(text: str) -> set[str]:
    found = set()
    for block in re.findall(r"protocol bgp Mesh_\S+ from bgp_template \{(.*?)\n\}", text, re.S):
        if "passive on;" in block:
            found.add(re.search(r"neighbor (\S+) as", block).group(1))  # type: ignore[union-attr]
    return found


def test_bird_config_is_calicos_mesh_with_the_same_passive_ends_as_bgpd() -> None:
    text = mesh_bench.calico_bird_config(10, 12, Path("/tmp/bird.log"))
    assert text.count("protocol bgp Mesh_") == 11
    assert "protocol bgp Mesh_10_0_0_10 " not in text
    assert "route 192.168.10.0/26 blackhole;" in text
    assert "export filter calico_kernel_programming;" in text and "persist;" in text
    assert "debug { states };" in text
    # String order, as Calico compares: "10.0.0.9" > "10.0.0.10", so .10 listens to .9.
    passive = bird_passive_peers(text)
    assert "10.0.0.9" in passive and "10.0.0.11" in passive and "10.0.0.1" not in passive
    snapshot = load_text(yaml.safe_dump_all(mesh_bench.calico_docs(12), sort_keys=False))
    plan = compute(snapshot, "n10")
    assert passive == {s.peer_address for s in plan.sessions if s.passive}
    quiet = mesh_bench.calico_bird_config(10, 12, Path("/tmp/bird.log"), "warning")
    assert "debug" not in quiet and "{ warning, error, fatal, bug }" in quiet


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed")
def test_bird_accepts_the_calico_mesh_config(tmp_path: Path) -> None:
    path = tmp_path / "bird.conf"
    path.write_text(mesh_bench.calico_bird_config(2, 4, tmp_path / "bird.log"))
    check = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_per_session_cpu_and_summaries() -> None:
    got = mesh_bench.per_session_ms(4.9, 2.45, 50)
    assert got["cpu_per_session_ms"] == pytest.approx(2.0)
    assert got["cpu_per_session_after_startup_ms"] == pytest.approx(1.0)
    assert mesh_bench.per_session_ms(None, 1.0, 5)["cpu_per_session_ms"] is None
    assert mesh_bench.per_session_ms(1.0, None, 5)["cpu_per_session_after_startup_ms"] is None
    assert mesh_bench.summary([3.0, 1.0, 2.0]) == (2.0, 3.0)
    assert mesh_bench.summary([]) == (None, None)
    assert json.dumps(mesh_bench.summary([1.0]))  # plain floats for the JSON
