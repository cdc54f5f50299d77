"""bench/RESULTS.md and bench/rr_results.png from the benchmarks' JSON records.

`rr_bench.py` merges one record per scenario and daemon into bench/results/rr.json,
`mesh_bench.py` one per mesh size and daemon into bench/results/mesh.json; after each record
either of them regenerates the whole report from both files, so neither overwrites the
other's section. Everything but `write_report` and `chart` is pure: records in, text out.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rr_scenarios import ALL, QUICK, SCENARIOS, STORMS

BENCH = Path(__file__).resolve().parent
RESULTS_JSON = BENCH / "results" / "rr.json"
MESH_JSON = BENCH / "results" / "mesh.json"
RESULTS_MD = BENCH / "RESULTS.md"
CHART = BENCH / "rr_results.png"
DAEMONS = ("floor", "bgpd", "bird", "frr", "gobgp")
MESH_DAEMONS = ("bgpd", "bird")
LOWER = "lower is better"
# One colour per daemon in every panel.
COLORS = {"floor": "C7", "bgpd": "C1", "bird": "C2", "frr": "C3", "gobgp": "C4"}

Results = dict[str, Any]


# ------------------------------------------------------------------ the JSON files


def load_results(path: Path) -> Results:
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {}


def save_result(key: str, record: dict[str, Any], path: Path) -> None:
    """Merge one record into the file (a record of the same key is replaced)."""
    results = load_results(path)
    results[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    tmp.replace(path)


# ------------------------------------------------------------------ small pieces


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def _round(line: str) -> str:
    """Long floats in the check lines to 3 significant digits."""
    return re.sub(r"\d+\.\d{3,}", lambda m: f"{float(m.group()):.3g}", line)


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "?" if value is None else f"{value:{spec}}{unit}"


def _share(r: dict[str, Any]) -> str:
    held, want = r.get("routes_held", 0), r.get("routes_wanted") or 1
    return f"{100 * held / want:.0f}%"


def _error_only(r: dict[str, Any], field: str) -> bool:
    return bool(r.get("error")) and r.get(field) is None and "timeout_s" not in r


# ------------------------------------------------------------------ settled scenarios


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if _error_only(r, "elapsed_s"):
        return f"error: {r['error'][:60]}"
    rss = _fmt(r.get("rss_mb"), ".0f", " MB")
    cpu = _fmt(r.get("cpu_s"), ".2f", " CPU-s")
    if r.get("elapsed_s") is None:
        text = f"not done after {r.get('timeout_s', 0):.0f} s ({_share(r)}), {cpu}, {rss}"
    else:
        text = f"{r['elapsed_s']:.2f} s, {cpu}, {rss}"
    if "churn" in r:
        c = r["churn"]
        if "p50_ms" in c:
            text += f"; churn p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms"
            if c["arrived"] < c["announced"]:
                text += f" ({c['arrived']}/{c['announced']} arrived)"
    if r.get("drops"):
        text += f"; {r['drops']} sessions dropped"
    return text


def detail(r: dict[str, Any] | None) -> str:
    if r is None or r.get("setup_s") is None:
        return "-"
    first = r.get("first_route_s")
    return (
        f"set-up {r['setup_s']:.2f} s, first route {first:.3f} s"
        if first is not None
        else (f"set-up {r['setup_s']:.2f} s")
    )


def settled_total(r: dict[str, Any] | None) -> float | None:
    """A settled run's time from the first connection until the monitor held everything,
    without the pause between set-up and the announcements: setup_s + elapsed_s."""
    if r is None or r.get("setup_s") is None or r.get("elapsed_s") is None:
        return None
    return float(r["setup_s"]) + float(r["elapsed_s"])


def _val(results: Results, key: str, field: str) -> float | None:
    r = results.get(key)
    return None if r is None else r.get(field)


def _check(label: str, a: float | None, op: str, b: float | None, shown: str) -> str:
    if a is None or b is None:
        return f"{label}: not measured"
    ok = a <= b if op == "<=" else a < b
    return f"{label}: {'met' if ok else 'NOT met'} ({shown})"


def targets(results: Results) -> list[str]:
    """Issue 8's targets as "met"/"NOT met" lines (or "not measured")."""

    def val(s: str, d: str, field: str) -> float | None:
        return _val(results, f"{s}/{d}", field)

    check = _check
    out = []
    for s in ("100x1000", "1000x4"):
        e, be = val(s, "bgpd", "elapsed_s"), val(s, "bird", "elapsed_s")
        c, fc = val(s, "bgpd", "cpu_s"), val(s, "frr", "cpu_s")
        m = val(s, "bgpd", "rss_mb")
        out.append(check(f"{s} elapsed <= BIRD/2", e, "<=", be and be / 2, f"{e} s vs {be} s"))
        out.append(check(f"{s} CPU < 2x FRR", c, "<", fc and 2 * fc, f"{c} vs {fc} CPU-s"))
        out.append(check(f"{s} RSS < 150 MB", m, "<", 150.0 if m else None, f"{m} MB"))
    e, be = val("10x10000", "bgpd", "elapsed_s"), val("10x10000", "bird", "elapsed_s")
    out.append(check("10x10000 elapsed <= 1.5x BIRD", e, "<=", be and be * 1.5, f"{e} vs {be} s"))
    for s in ("2000x4", "5000x4"):
        e, fe = val(s, "bgpd", "elapsed_s"), val(s, "frr", "elapsed_s")
        m, fm = val(s, "bgpd", "rss_mb"), val(s, "frr", "rss_mb")
        out.append(check(f"{s} faster than FRR", e, "<", fe, f"{e} vs {fe} s"))
        out.append(check(f"{s} RSS < FRR/4", m, "<", fm and fm / 4, f"{m} vs {fm} MB"))
        drops = val(s, "bgpd", "drops")
        out.append(check(f"{s} no session dropped", drops, "<=", 0 if drops is not None else None,
                         f"{drops} dropped"))  # fmt: skip
    for s in SCENARIOS:
        e, fl = val(s, "bgpd", "elapsed_s"), val(s, "floor", "elapsed_s")
        if s != "churn":
            out.append(check(f"{s} within 10x floor", e, "<=", fl and fl * 10, f"{e} vs {fl} s"))
    churn = (results.get("churn/bgpd") or {}).get("churn") or {}
    p99 = churn.get("p99_ms")
    out.append(check("churn p99 < 50 ms", p99, "<", 50.0 if p99 is not None else None,
                     f"{p99} ms"))  # fmt: skip
    return [_round(line) for line in out]


# ------------------------------------------------------------------ storms


def storm_cell(r: dict[str, Any] | None) -> str:
    """From the first connection / from the first announcement, CPU, peak RSS, drops."""
    if r is None:
        return "-"
    if _error_only(r, "from_connect_s"):
        return f"error: {r['error'][:60]}"
    rss = _fmt(r.get("rss_mb"), ".0f", " MB")
    cpu = _fmt(r.get("cpu_s"), ".2f", " CPU-s")
    if r.get("from_connect_s") is None:
        text = f"not done after {r.get('timeout_s', 0):.0f} s ({_share(r)}), {cpu}, {rss}"
    else:
        text = (
            f"{r['from_connect_s']:.2f} s / {_fmt(r.get('from_announce_s'), '.2f', ' s')}, "
            f"{cpu}, {rss}"
        )
    if r.get("drops"):
        text += f"; {r['drops']} sessions dropped"
    return text


def storm_detail(r: dict[str, Any] | None) -> str:
    if r is None or r.get("clients_established") is None:
        return "-"
    parts = [
        f"last session up {_fmt(r.get('last_established_s'), '.2f', ' s')}",
        f"set-up p50 {_fmt(r.get('session_setup_p50_ms'), '.0f', ' ms')}, "
        f"p99 {_fmt(r.get('session_setup_p99_ms'), '.0f', ' ms')}",
    ]
    done, last = r.get("from_connect_s"), r.get("last_connect_s")
    if r.get("mode") == "stagger" and done is not None and last is not None:
        parts.append(f"done {done - last:.2f} s after the last client began")
    if r.get("connect_failures"):
        parts.append(f"{r['connect_failures']} failed attempts")
    if r.get("reconnects"):
        parts.append(f"{r['reconnects']} reconnects")
    if r.get("loadgen_cpu_s") is not None:
        parts.append(f"generator {r['loadgen_cpu_s']:.1f} CPU-s")
    return ", ".join(parts)


def storm_targets(results: Results) -> list[str]:
    """Issue 17's storm targets for bgpd."""
    out = []
    s = "storm-5000x4"
    e = _val(results, f"{s}/bgpd", "from_connect_s")
    fl = _val(results, f"{s}/floor", "from_connect_s")
    out.append(_check(f"{s} within 2x floor", e, "<=", fl and 2 * fl, f"{e} vs {fl} s"))
    frr = results.get(f"{s}/frr") or {}
    fe = frr.get("from_connect_s")
    if fe is None and frr.get("timeout_s"):
        # FRR did not finish: its time is above the limit, so a quarter of the limit bounds it.
        limit = float(frr["timeout_s"])
        out.append(_check(f"{s} under FRR/4", e, "<", limit / 4,
                          f"{e} s vs FRR not done after {limit:.0f} s"))  # fmt: skip
    else:
        out.append(_check(f"{s} under FRR/4", e, "<", fe and fe / 4, f"{e} vs {fe} s"))
    drops = _val(results, f"{s}/bgpd", "drops")
    out.append(_check(f"{s} no session dropped", drops, "<=", 0 if drops is not None else None,
                      f"{drops} dropped"))  # fmt: skip
    s = "storm-2000x4"
    e = _val(results, f"{s}/bgpd", "from_connect_s")
    settled = settled_total(results.get("2000x4/bgpd"))
    out.append(_check(f"{s} within 2x settled 2000x4 (set-up + elapsed)", e, "<=",
                      settled and 2 * settled, f"{e} vs {settled} s"))  # fmt: skip
    return [_round(line) for line in out]


# ------------------------------------------------------------------ mesh


def mesh_cell(r: dict[str, Any]) -> list[str]:
    """The mesh table's columns for one record."""
    if _error_only(r, "converge_s"):
        return [f"error: {r['error'][:60]}"] + ["-"] * 8
    if r.get("converge_s") is None:
        held, want = r.get("fib_held", 0), r.get("fib_wanted") or 1
        conv = f"not converged after {r.get('timeout_s', 0):.0f} s ({100 * held / want:.0f}%)"
    else:
        conv = f"{r['converge_s']:.2f}"
    startup = (
        f"{_fmt(r.get('startup_cpu_p50_s'), '.3f')} / {_fmt(r.get('startup_cpu_max_s'), '.3f')}"
        f" CPU-s in {_fmt(r.get('startup_p50_s'), '.2f')} / {_fmt(r.get('startup_max_s'), '.2f')} s"
    )
    per_session = (
        f"{_fmt(r.get('cpu_per_session_ms'), '.2f')} "
        f"({_fmt(r.get('cpu_per_session_after_startup_ms'), '.2f')})"
    )
    rss = f"{_fmt(r.get('rss_p50_mb'), '.1f')} / {_fmt(r.get('rss_max_mb'), '.1f')}"
    idle = f"{_fmt(r.get('idle_pct_mean'), '.3f')} / {_fmt(r.get('idle_pct_max'), '.3f')}"
    restart = r.get("restart") or {}
    if not restart:
        lost = reconv = "-"
    elif restart.get("error"):
        lost, reconv = f"error: {restart['error'][:40]}", "-"
    else:
        lost = str(restart.get("lost_routes", "?"))
        if restart.get("lost_routes"):
            lost += (
                f" on {restart.get('nodes_lost', '?')} nodes, longest gap "
                f"{_fmt(restart.get('max_gap_s'), '.1f', ' s')}"
            )
        if restart.get("overflows"):
            lost += f" ({restart['overflows']} netlink overflows: losses may be missed)"
        reconv = (
            f"{restart['reconverge_s']:.2f}"
            if restart.get("reconverge_s") is not None
            else f"not after {restart.get('timeout_s', 0):.0f} s"
        )
    return [conv, _fmt(r.get("cpu_total_s"), ".2f"), per_session, startup, rss, idle, lost,
            reconv]  # fmt: skip


def _mesh_keys(mesh: Results) -> list[tuple[int, str, str]]:
    found = []
    for key in mesh:
        m = re.fullmatch(r"mesh-(\d+)/(\w+)", key)
        if m:
            found.append((int(m.group(1)), m.group(2), key))
    order = {d: i for i, d in enumerate(MESH_DAEMONS)}
    return sorted(found, key=lambda t: (t[0], order.get(t[1], 99), t[1]))


def mesh_targets(mesh: Results) -> list[str]:
    """Issue 17's mesh targets for bgpd at N = 50."""
    b, bird = mesh.get("mesh-50/bgpd") or {}, mesh.get("mesh-50/bird") or {}
    e, be = b.get("converge_s"), bird.get("converge_s")
    c, bc = b.get("cpu_total_s"), bird.get("cpu_total_s")
    s, per = b.get("startup_cpu_max_s"), b.get("cpu_per_session_after_startup_ms")
    idle = b.get("idle_pct_max")
    lost = (b.get("restart") or {}).get("lost_routes")
    out = [
        _check("mesh 50 converges faster than BIRD", e, "<", be, f"{e} vs {be} s"),
        _check("mesh 50 total CPU <= 5x BIRD", c, "<=", bc and 5 * bc, f"{c} vs {bc} CPU-s"),
        _check("mesh 50 start-up < 0.1 CPU-s per process (max)", s, "<",
               0.1 if s is not None else None, f"{s} CPU-s"),
        _check("mesh 50 < 0.5 ms CPU per session (after start-up)", per, "<",
               0.5 if per is not None else None, f"{per} ms"),
        _check("mesh 50 idle < 0.05% of a core per node (max)", idle, "<",
               0.05 if idle is not None else None, f"{idle}%"),
        _check("mesh 50 no route lost while one node restarts", lost, "<=",
               0 if lost is not None else None, f"{lost} lost"),
    ]  # fmt: skip
    return [_round(line) for line in out]


def mesh_lines(mesh: Results) -> list[str]:
    keys = _mesh_keys(mesh)
    if not keys:
        return []
    lines = [
        "## Node-to-node mesh (`bench/mesh_bench.py`)",
        "",
        "N nodes on one bridge, each in its own namespace, every node peering with every other",
        "(bgpd: Calico's default mesh from one shared resource file; BIRD 2: Calico's bird.cfg",
        "with a kernel protocol). Converged: from starting the daemons until every node's FIB",
        "holds every other node's block. CPU: all daemons until then. Per session: that CPU",
        "over N(N-1) (in brackets: without the daemons' start-up CPU). Start-up: CPU used and",
        "time taken until the process listened on port 179, median / max over the processes.",
        "Idle: % of one core per node over a quiet window after convergence, mean / max.",
        "Restart: one node stopped (SIGTERM) and started again while every FIB is watched",
        "through netlink; lost = (node, block) routes that left a FIB meanwhile; re-converged =",
        "from the stop until the node has all its sessions and every FIB everything again.",
        f"All times in seconds; {LOWER} everywhere.",
        "",
        "| N | daemon | converged (s) | CPU total (CPU-s) | CPU per session (ms) "
        "| start-up (median / max) | RSS per node (MB, median / max) "
        "| idle (% core, mean / max) | restart: routes lost | restart: re-converged (s) |",
        "|---" * 10 + "|",
    ]
    for n, daemon, key in keys:
        lines.append(f"| {n} | {daemon} | " + " | ".join(mesh_cell(mesh[key])) + " |")
    lines += ["", "Issue 17's mesh targets for bgpd, checked on these records:", ""]
    lines += [f"- {text}" for text in mesh_targets(mesh)]
    return lines


# ------------------------------------------------------------------ the document


def _settled_names(results: Results) -> list[str]:
    names = [s for s, sc in {**SCENARIOS, **QUICK}.items() if not sc.storm]
    return [s for s in names if any(k.startswith(f"{s}/") for k in results)]


def _storm_names(results: Results) -> list[str]:
    names = [s for s, sc in {**STORMS, **QUICK}.items() if sc.storm]
    return [s for s in names if any(k.startswith(f"{s}/") for k in results)]


def _daemons(results: Results) -> list[str]:
    return [d for d in DAEMONS if any(k.endswith(f"/{d}") for k in results)]


def rr_lines(results: Results) -> list[str]:
    scenarios = _settled_names(results)
    daemons = _daemons(results)
    lines = [
        "# Route-reflector benchmark results",
        "",
        "Generated by `bench/rr_bench.py` (see bench/README.md) from `bench/results/rr.json`;",
        "each cell is elapsed (first announcement until the monitor holds all M x N routes), the",
        "daemon's CPU seconds in that time, and its peak RSS (VmHWM; FRR: its bgpd process).",
        "The machine may be shared with other jobs (figures vary by +-30% between runs); each",
        "run below names its 1-minute load average at the start where it was recorded.",
        f"Times, CPU and memory: {LOWER}.",
        "",
        "| scenario | " + " | ".join(daemons) + " | bgpd/BIRD elapsed | bgpd/FRR elapsed "
        "| bgpd/FRR CPU | bgpd/FRR RSS |",
        "|---" * (len(daemons) + 5) + "|",
    ]
    for s in scenarios:
        row = [cell(results.get(f"{s}/{d}")) for d in daemons]

        def get(d: str, field: str, s: str = s) -> float | None:
            return _val(results, f"{s}/{d}", field)

        lines.append(
            f"| {s} | " + " | ".join(row) + " | "
            + " | ".join((
                ratio(get("bgpd", "elapsed_s"), get("bird", "elapsed_s")),
                ratio(get("bgpd", "elapsed_s"), get("frr", "elapsed_s")),
                ratio(get("bgpd", "cpu_s"), get("frr", "cpu_s")),
                ratio(get("bgpd", "rss_mb"), get("frr", "rss_mb")),
            )) + " |"
        )  # fmt: skip
    lines += ["", "Session set-up (all M+1 sessions Established) and first-route time:", ""]
    lines.append("| scenario | " + " | ".join(daemons) + " |")
    lines.append("|---" * (len(daemons) + 1) + "|")
    for s in scenarios:
        lines.append(
            f"| {s} | " + " | ".join(detail(results.get(f"{s}/{d}")) for d in daemons) + " |"
        )
    lines += ["", "Issue 8's targets for bgpd, checked on these records:", ""]
    lines += [f"- {text}" for text in targets(results)]
    storms = _storm_names(results)
    if storms:
        lines += storm_lines(results, storms, daemons)
    return lines


def storm_lines(results: Results, storms: list[str], daemons: list[str]) -> list[str]:
    lines = [
        "",
        "## Storms: every client announces as soon as its own session is up",
        "",
        "As after a reflector restart: the monitor connects first, then the clients (storm: 20",
        "connection attempts in flight; stagger: spread over 10 s) and each writes its routes the",
        "moment its own session is Established, while the others are still connecting. Each",
        "cell: from the first connection / from the first announcement until the monitor holds",
        "all M x N routes, the daemon's CPU seconds from the first connection, its peak RSS.",
        "bgpd storm/settled divides the storm's time from the first connection by the settled",
        "run's set-up + elapsed (same M x N, same file; storms only: a stagger takes its 10 s",
        f"by design). {LOWER.capitalize()}.",
        "",
        "| scenario | " + " | ".join(daemons) + " | bgpd/floor | bgpd/FRR | bgpd storm/settled |",
        "|---" * (len(daemons) + 4) + "|",
    ]
    for s in storms:
        row = [storm_cell(results.get(f"{s}/{d}")) for d in daemons]
        settled = ALL[s].settled
        e = _val(results, f"{s}/bgpd", "from_connect_s")
        lines.append(
            f"| {s} | " + " | ".join(row) + " | "
            + " | ".join((
                ratio(e, _val(results, f"{s}/floor", "from_connect_s")),
                ratio(e, _val(results, f"{s}/frr", "from_connect_s")),
                ratio(e, settled_total(results.get(f"{settled}/bgpd")))
                if settled and ALL[s].mode == "storm" else "-",
            )) + " |"
        )  # fmt: skip
    lines += ["", "Storm sessions (times after the first connection):", ""]
    lines.append("| scenario | " + " | ".join(daemons) + " |")
    lines.append("|---" * (len(daemons) + 1) + "|")
    for s in storms:
        lines.append(
            f"| {s} | " + " | ".join(storm_detail(results.get(f"{s}/{d}")) for d in daemons)
            + " |"
        )  # fmt: skip
    lines += ["", "Issue 17's storm targets for bgpd, checked on these records:", ""]
    lines += [f"- {text}" for text in storm_targets(results)]
    return lines


def run_lines(*record_sets: Results) -> list[str]:
    lines = ["## Runs", ""]
    runs: dict[str, list[tuple[str, str]]] = {}
    for results in record_sets:
        for key, r in sorted(results.items()):
            m = r.get("machine", {})
            desc = (
                f"{m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gb')} GB, kernel "
                f"{m.get('kernel')}, Python {m.get('python')}; "
                + ", ".join(f"{k}: {v}" for k, v in m.get("versions", {}).items())
            )
            load = f" (load average {r['load']} at its start)" if "load" in r else ""
            runs.setdefault(desc, []).append((r.get("date", "?"), key + load))
    for desc, dated in runs.items():
        lines.append(f"- {desc}")
        for date, key in sorted(dated):
            lines.append(f"  - {date.replace('T', ' ')}: {key}")
    return lines


def render_markdown(rr: Results, mesh: Results, chart_name: str = CHART.name) -> str:
    lines = rr_lines(rr)
    lines += ["", f"![elapsed per scenario ({LOWER})]({chart_name})", ""]
    mesh_part = mesh_lines(mesh)
    if mesh_part:
        lines += [*mesh_part, ""]
    lines += run_lines(rr, mesh)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the chart


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar's worth of a chart: a value to draw, or a mark saying why there is none."""

    value: float | None
    mark: str = ""  # "not done (limit 300 s)", "error"; empty when drawn or absent


def bar_for(r: dict[str, Any] | None, field: str, limit_field: str = "timeout_s") -> Bar:
    """A run that did not finish is a mark, never a bar at the time limit."""
    if r is None:
        return Bar(None)
    value = r.get(field)
    if value is not None:
        return Bar(float(value))
    if r.get(limit_field):
        return Bar(None, f"not done ({float(r[limit_field]):.0f} s limit)")
    if r.get("error"):
        return Bar(None, "error")
    return Bar(None)


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    ylabel: str
    groups: list[str]
    series: dict[str, list[Bar]]  # daemon -> one Bar per group
    log: bool = True  # a log scale; else linear with each bar's value written on it


def panels(rr: Results, mesh: Results) -> list[Panel]:
    out = []
    daemons = _daemons(rr)
    settled = [s for s in _settled_names(rr) if not s.startswith("churn")]
    if settled:
        out.append(Panel(
            "settled: M clients x N prefixes", f"s, first announcement to all held ({LOWER})",
            settled,
            {d: [bar_for(rr.get(f"{s}/{d}"), "elapsed_s") for s in settled] for d in daemons},
        ))  # fmt: skip
    storms = _storm_names(rr)
    if storms:
        out.append(Panel(
            "storm: announce when up", f"s, first connection to all held ({LOWER})",
            storms,
            {d: [bar_for(rr.get(f"{s}/{d}"), "from_connect_s") for s in storms] for d in daemons},
        ))  # fmt: skip
    keys = _mesh_keys(mesh)
    if keys:
        sizes = sorted({n for n, _, _ in keys})
        names = [d for d in MESH_DAEMONS if any(d == k[1] for k in keys)]
        groups = [f"N={n}" for n in sizes]
        for field, title, label in (
            ("converge_s", "mesh: start to every FIB full", f"seconds ({LOWER})"),
            ("cpu_total_s", "mesh: CPU of all daemons until then", f"CPU-s ({LOWER})"),
        ):
            out.append(Panel(title, label, groups, {
                d: [bar_for(mesh.get(f"mesh-{n}/{d}"), field) for n in sizes] for d in names
            }, log=False))  # fmt: skip
    return out


def chart(rr: Results, mesh: Results, path: Path = CHART) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install .[bench]): no chart", file=sys.stderr)
        return
    found = panels(rr, mesh)
    if not found:
        return
    cols = 2 if len(found) > 1 else 1
    rows = (len(found) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, found, strict=False):
        _draw(ax, panel)
    for ax in list(axes.flat)[len(found) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw(ax: Any, panel: Panel) -> None:
    from matplotlib.patches import Patch

    names = list(panel.series)
    width = 0.8 / max(1, len(names))
    drawn = False
    for i, name in enumerate(names):
        xs = [k + i * width for k in range(len(panel.groups))]
        bars = panel.series[name]
        color = COLORS.get(name, f"C{i}")
        shown = [(x, b.value) for x, b in zip(xs, bars, strict=True) if b.value is not None]
        ax.bar([x for x, _ in shown], [v for _, v in shown], width, color=color)
        drawn = drawn or any(v > 0 for _, v in shown)
        if not panel.log:
            for x, v in shown:
                ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
        for x, b in zip(xs, bars, strict=True):
            if b.mark:
                # Not a bar: a label at the foot of the axis where the bar would stand.
                ax.text(x, 0.02, b.mark, transform=ax.get_xaxis_transform(), rotation=90,
                        ha="center", va="bottom", fontsize=7, color=color)  # fmt: skip
    if drawn and panel.log:
        ax.set_yscale("log")
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(panel.groups))])
    ax.set_xticklabels(panel.groups, fontsize=8)
    ax.set_title(panel.title, fontsize=10)
    handles = [Patch(color=COLORS.get(n, f"C{i}"), label=n) for i, n in enumerate(names)]
    ax.legend(handles=handles, fontsize=8)


def write_report(
    rr_path: Path = RESULTS_JSON,
    mesh_path: Path = MESH_JSON,
    md_path: Path = RESULTS_MD,
    chart_path: Path = CHART,
) -> None:
    rr, mesh = load_results(rr_path), load_results(mesh_path)
    md_path.write_text(render_markdown(rr, mesh, chart_path.name))
    chart(rr, mesh, chart_path)
