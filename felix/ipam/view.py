"""Stored keys -> the planner's IpamView: `build_view` lives in calico/ipam_view.py, where
bgpctl's `ipam` commands read the same view; this module keeps felix's names for it."""

from calico.ipam_view import NODES_PREFIX, POOLS_PREFIX, StoredItem, build_view

__all__ = ["NODES_PREFIX", "POOLS_PREFIX", "StoredItem", "build_view"]
