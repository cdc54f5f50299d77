"""What a bgpd process loads: each command imports what it uses and no more (issue 17).

`bgpd --version` loads no event loop, codec or resource model; `bgpd --check` of a file
datastore no etcd client, Prometheus client, TLS, drivers or speaker; a running daemon with a
file datastore and no FIB no etcd client, Prometheus client, BFD stack, OpenSSL, netlink or
status reporter; one with a sqlite datastore no YAML parser. Each runs in a subprocess, which
reports its `sys.modules`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from bgpd_pair import _free_port

ROOT = Path(__file__).resolve().parents[2]

# Prints the modules loaded when the process exits, whatever made it exit.
RUN = textwrap.dedent(
    """
    import atexit, json, sys
    atexit.register(lambda: print(json.dumps(sorted(sys.modules)), flush=True))
    from bgpd.cli.bgpd_main import main
    sys.exit(main(sys.argv[1:]))
    """
)

NEVER = {"aetcd", "grpc", "prometheus_client"}


def config(tmp_path: Path, port: int = 179) -> Path:
    path = tmp_path / "calico.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: projectcalico.org/v3
            kind: BGPConfiguration
            metadata: {{name: default}}
            spec: {{asNumber: 64512, listenPort: {port}}}
            ---
            apiVersion: projectcalico.org/v3
            kind: Node
            metadata: {{name: node1}}
            spec: {{bgp: {{ipv4Address: 127.0.0.1/8}}}}
            ---
            apiVersion: projectcalico.org/v3
            kind: Node
            metadata: {{name: node2}}
            spec: {{bgp: {{ipv4Address: 127.0.0.2/8}}}}
            """
        )
    )
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def modules_of(*argv: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, timeout=60,
        env=_env(), cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def loaded(mods: set[str], *names: str) -> set[str]:
    """Those of `names` (packages with their submodules) that are in `mods`."""
    return {m for m in mods for n in names if m == n or m.startswith(n + ".")}


def test_version_loads_no_event_loop_codec_or_model() -> None:
    mods = modules_of("--version")
    assert not loaded(
        mods, *NEVER, "asyncio", "ssl", "structlog", "yaml", "bgpd.wire", "calico.model",
        "bgpd.daemon",
    )


def test_check_of_a_file_loads_no_store_client_tls_or_drivers(tmp_path: Path) -> None:
    mods = modules_of(
        "--node", "node1", "--datastore", f"file://{config(tmp_path)}", "--check",
        "--control-socket", str(tmp_path / "bgpd.sock"),
    )
    assert "bgpd.daemon.plancheck" in mods  # it did check the plan
    assert not loaded(
        mods, *NEVER, "ssl", "hashlib", "bgpd.session.driver", "bgpd.speaker",
        "bgpd.daemon.app", "bgpd.kernel", "bgpd.bfd.driver",
    )


def test_plan_of_a_file_loads_no_event_loop_drivers(tmp_path: Path) -> None:
    mods = modules_of("plan", "--node", "node1", "--datastore", f"file://{config(tmp_path)}")
    assert "bgpd.plan.render" in mods
    assert not loaded(mods, *NEVER, "ssl", "bgpd.session.driver", "bgpd.daemon.app")


def daemon_modules(tmp_path: Path, datastore: str) -> set[str]:
    """The modules of a daemon (--no-fib) once it has started, and stopped."""
    argv = [
        "--node", "node1", "--datastore", datastore,
        "--control-socket", str(tmp_path / "bgpd.sock"), "--no-fib",
        "--listen-address", "127.0.0.1", "--log-level", "info",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(), cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # ends when the daemon exits
            seen.append(line)
            if "bgpd started" in line:
                proc.send_signal(signal.SIGTERM)
                break
        else:
            raise AssertionError("".join(seen))
        out, _err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    mods = set(json.loads(out.strip().splitlines()[-1]))
    assert "bgpd.daemon.app" in mods and "asyncio" in mods  # it did run
    return mods


DAEMON_NEVER = (
    *NEVER, "ssl", "_ssl", "hashlib", "ctypes", "colorama", "bgpd.bfd.driver",
    "bgpd.metrics.collector", "bgpd.metrics.driver", "bgpd.kernel.driver",
    "bgpd.control.birdsock.driver",
)  # fmt: skip


def test_a_file_datastore_daemon_loads_only_what_it_runs(tmp_path: Path) -> None:
    mods = daemon_modules(tmp_path, f"file://{config(tmp_path, _free_port())}")
    assert not loaded(
        mods, *DAEMON_NEVER, "bgpd.status.reporter", "calico.store.sqlite", "calico.watch"
    )


def test_a_sqlite_datastore_daemon_loads_no_yaml(tmp_path: Path) -> None:
    db = tmp_path / "calico.db"
    applied = subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", f"sqlite://{db}", "apply",
         "-f", str(config(tmp_path, _free_port()))],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    mods = daemon_modules(tmp_path, f"sqlite://{db}")
    assert "calico.store.sqlite" in mods and "bgpd.status.reporter" in mods
    assert not loaded(mods, *DAEMON_NEVER, "yaml", "calico.file", "calico.filewatch")
