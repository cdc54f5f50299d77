"""Errors of the planner."""

from __future__ import annotations


class PlanError(Exception):
    """No plan can be made for this node (its Node resource is missing, or it has no IPv4
    address and no CALICO_ROUTER_ID to take a router ID from). The daemon keeps its last
    plan and retries on the next datastore change."""
