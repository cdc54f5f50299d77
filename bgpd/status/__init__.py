"""This node's BGP status as records, and as the CalicoNodeStatus document it is reported in."""
