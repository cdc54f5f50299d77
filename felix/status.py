"""Felix's status report (reference/calico.md section 1): the value at
/calico/felix/v2/no-region/host/<node>/status, written under a lease so it vanishes when
felix stops renewing it, and the same value at .../last_reported_status with no lease.
Pure: the daemon supplies the times."""

from __future__ import annotations

import datetime
import json

STATUS_PREFIX = "/calico/felix/v2/no-region/host/"


def status_key(node: str) -> str:
    return f"{STATUS_PREFIX}{node}/status"


def last_reported_key(node: str) -> str:
    return f"{STATUS_PREFIX}{node}/last_reported_status"


def status_value(*, now: float, started: float, first_update: bool) -> bytes:
    """{"time": RFC 3339 (UTC, microseconds), "uptime": seconds, "first_update": bool}."""
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat().replace("+00:00", "Z")
    doc = {"time": stamp, "uptime": round(max(0.0, now - started), 3), "first_update": first_update}
    return json.dumps(doc, separators=(",", ":")).encode()


def _escape(name: str) -> str:
    """libcalico-go model.escapeName: '%' and '/' escaped inside a key segment."""
    return name.replace("%", "%25").replace("/", "%2f")


def endpoint_status_prefix(node: str) -> str:
    return f"{STATUS_PREFIX}{node}/workload/"


def endpoint_status_key(node: str, orchestrator: str, workload_id: str, endpoint_id: str) -> str:
    """Calico's WorkloadEndpointStatusKey: .../host/<node>/workload/<orchestrator>/
    <workload ID, "namespace/pod" escaped>/endpoint/<endpoint>."""
    return (
        f"{endpoint_status_prefix(node)}{_escape(orchestrator)}/{_escape(workload_id)}"
        f"/endpoint/{_escape(endpoint_id)}"
    )


def endpoint_status_value(status: str) -> bytes:
    """{"status": "up"|"down"|"error"} (model.WorkloadEndpointStatus)."""
    return json.dumps({"status": status}, separators=(",", ":")).encode()
