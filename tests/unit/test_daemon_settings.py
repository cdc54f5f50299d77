"""Settings the daemon applies itself: logSeverityScreen as the log level (unless the command
line gave one; node.<name> over default), ADD-PATH in every session's OPEN, and the plan's
notes logged as warnings when a reload brings new ones."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bgpd.daemon.app import Daemon, log_level_for
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.reconfig import peer_settings
from bgpd.plan import compute
from bgpd.session.negotiate import build_open
from bgpd.wire.family import Family
from bgpd.wire.messages import ADD_PATH_BOTH, AddPath
from calico import load_text
from common import log as common_log


def docs(default: dict[str, Any], node: dict[str, Any] | None = None) -> str:
    out: list[dict[str, Any]] = [
        {"kind": "BGPConfiguration", "apiVersion": "projectcalico.org/v3",
         "metadata": {"name": "default"}, "spec": default},
        {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "n1"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}},
        {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "n2"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.2/24"}}},
    ]
    if node is not None:
        out.append({"kind": "BGPConfiguration", "apiVersion": "projectcalico.org/v3",
                    "metadata": {"name": "node.n1"}, "spec": node})
    return yaml.safe_dump_all(out)


@pytest.fixture(autouse=True)
def _restore_level() -> Any:
    before = common_log.current_level()
    yield
    common_log.set_level(before)


def test_log_severity_in_the_plan() -> None:
    assert compute(load_text(docs({})), "n1").log_severity == "Info"
    assert compute(load_text(docs({"logSeverityScreen": "debug"})), "n1").log_severity == "Debug"
    # node.<name> may override it (and only for that node).
    text = docs({"logSeverityScreen": "Warning"}, {"logSeverityScreen": "Error"})
    assert compute(load_text(text), "n1").log_severity == "Error"
    assert compute(load_text(text), "n2").log_severity == "Warning"
    # A node config that does not set it leaves default's in force.
    assert compute(load_text(docs({"logSeverityScreen": "Debug"}, {"listenPort": 1790})),
                   "n1").log_severity == "Debug"


@pytest.mark.parametrize(
    ("severity", "level"),
    [("Trace", "debug"), ("Debug", "debug"), ("Info", "info"), ("Warning", "warning"),
     ("Error", "error"), ("Fatal", "critical"), ("Panic", "critical"), ("None", "critical")],
)
def test_severities_map_to_levels(severity: str, level: str) -> None:
    assert log_level_for(severity) == level


def test_the_daemon_follows_log_severity_unless_told_otherwise() -> None:
    common_log.set_level("info")
    plan = compute(load_text(docs({"logSeverityScreen": "Debug"})), "n1")
    following = Daemon(DaemonOptions("n1", "file:///x.yaml", "/tmp/none.sock"), plan)
    following.follow_log_severity(plan)
    assert common_log.current_level() == "debug"
    quiet = compute(load_text(docs({"logSeverityScreen": "Error"})), "n1")
    following.follow_log_severity(quiet)
    assert common_log.current_level() == "error"
    # --log-level given: the datastore does not change it.
    common_log.set_level("warning")
    fixed = Daemon(
        DaemonOptions("n1", "file:///x.yaml", "/tmp/none.sock", log_level="warning"), plan
    )
    fixed.follow_log_severity(plan)
    assert common_log.current_level() == "warning"


def test_the_level_filters_structlog_and_stdlib_alike(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    common_log.configure_logging("info", json=True)
    log = common_log.get_logger("test.settings")
    log.debug("hidden.first")
    common_log.set_level("debug")
    log.debug("shown.now")
    logging.getLogger("test.stdlib").debug("stdlib.shown")
    common_log.set_level("error")
    log.warning("hidden.again")
    err = capsys.readouterr().err
    assert "shown.now" in err and "stdlib.shown" in err
    assert "hidden.first" not in err and "hidden.again" not in err


def test_every_session_offers_add_path_both_ways() -> None:
    plan = compute(load_text(docs({})), "n1")
    (spec,) = plan.sessions
    settings = peer_settings(spec, 1, None)
    assert settings.add_path == ((Family.IPV4_UNICAST, ADD_PATH_BOTH),)
    caps = [c for c in build_open(settings).capabilities if isinstance(c, AddPath)]
    assert caps == [AddPath(((Family.IPV4_UNICAST, ADD_PATH_BOTH),))]
